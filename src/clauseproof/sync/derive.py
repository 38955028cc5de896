"""A default mapping read from both catalogs, for comparing two tables nobody wrote a mapping for.

Each side's ``information_schema.columns`` gives its columns' types; columns are paired by name (case
aside).  A pair's kind follows both types (:data:`clauseproof.sync.mapping.KINDS`), and where the two sides
keep different precisions (``numeric(12,4)`` against ``decimal(12,2)``, ``timestamp(6)`` against
``datetime(0)``) the pair is compared at the coarser of the two — the precision both sides can hold, so a
copy that rounds as its type must is not called different; what was chosen is said per column.  The key is
the source's primary key (else the target's), composite or not, of any comparable kind (a key that is not one
integer is compared by hash buckets: :attr:`clauseproof.sync.mapping.TableMap.hashed`).

What cannot be paired is said, never dropped silently: a column on one side only, or two types with no
common kind (a date against an integer), are listed as not compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clauseproof.core.errors import ClauseproofError, first_line
from clauseproof.sync.checker import Side
from clauseproof.sync.mapping import ColumnMap, TableMap


@dataclass(frozen=True)
class _Col:
    name: str
    kind: str  # a mapping kind, or "" when the type has none
    type: str  # as the catalog names it
    scale: int | None = None  # decimal places (numeric) or fractional digits of a second (timestamps)
    rtrim: bool = False


@dataclass
class Derived:
    """The mapping, and what a reader must know about it."""

    mapping: TableMap
    #: per compared column: how (its kind and precision, and why when the sides differ)
    how: list[str] = field(default_factory=list)
    #: columns not compared, with why
    not_compared: list[str] = field(default_factory=list)


_PG_KINDS = {
    "smallint": "int", "integer": "int", "bigint": "int",
    "boolean": "bool",
    "numeric": "decimal",
    "real": "float", "double precision": "float",
    "text": "text", "character varying": "text", "character": "text", "uuid": "text", "name": "text",
    "bytea": "bytes",
    "date": "date",
    "timestamp without time zone": "timestamp", "timestamp with time zone": "timestamptz",
}  # fmt: skip
_MY_KINDS = {
    "tinyint": "int", "smallint": "int", "mediumint": "int", "int": "int", "integer": "int", "bigint": "int",
    "decimal": "decimal", "numeric": "decimal",
    "float": "float", "double": "float",
    "char": "text", "varchar": "text", "tinytext": "text", "text": "text", "mediumtext": "text",
    "longtext": "text", "enum": "text", "set": "text",
    "binary": "bytes", "varbinary": "bytes", "tinyblob": "bytes", "blob": "bytes", "mediumblob": "bytes",
    "longblob": "bytes",
    "date": "date",
    "datetime": "timestamp", "timestamp": "timestamptz",
}  # fmt: skip
#: places a float is checksummed at when neither side says more (rows are then compared within 10^-places)
FLOAT_PLACES = 6
#: ... and when one side keeps single precision (PostgreSQL real, MySQL FLOAT: about 7 significant digits)
SINGLE_PLACES = 3
#: places an unconstrained ``numeric`` is compared at
NUMERIC_PLACES = 10


def _catalog(side: Side, conn: Any, schema: str, table: str) -> tuple[list[_Col], list[str]]:
    """(columns, primary key columns) of one side's table, from its information_schema."""
    here = "current_schema()" if side.dialect == "postgresql" else "DATABASE()"
    cur = conn.cursor()
    try:
        cur.execute(
            "SELECT column_name, data_type, numeric_scale, datetime_precision, "
            + ("data_type" if side.dialect == "postgresql" else "column_type")
            + f" FROM information_schema.columns WHERE table_schema = COALESCE(%s, {here}) AND table_name = %s"
            " ORDER BY ordinal_position",
            (schema or None, table),
        )
        rows = list(cur.fetchall())
        cur.execute(
            "SELECT k.column_name FROM information_schema.table_constraints t"
            " JOIN information_schema.key_column_usage k ON k.constraint_name = t.constraint_name"
            " AND k.table_schema = t.table_schema AND k.table_name = t.table_name"
            f" WHERE t.constraint_type = 'PRIMARY KEY' AND t.table_schema = COALESCE(%s, {here})"
            " AND t.table_name = %s ORDER BY k.ordinal_position",
            (schema or None, table),
        )
        key = [str(r[0]) for r in cur.fetchall()]
    except Exception as exc:
        raise ClauseproofError(
            f"the {side.name} ({side.dialect}) could not read its catalog for {table}: {first_line(exc)}",
            checked="information_schema.columns and its key constraints",
            fix="check the table's name and that the user may read its definition",
        ) from None
    finally:
        cur.close()
    if not rows:
        raise ClauseproofError(
            f"the {side.name} ({side.dialect}) has no table {(schema + '.') if schema else ''}{table}",
            checked="information_schema.columns of the connection's "
            + ("schema" if side.dialect == "postgresql" else "database"),
            fix="name the table (and its schema) as the server knows it",
        )
    return [_col(side.dialect, *r) for r in rows], key


def _col(dialect: str, name: Any, data_type: Any, scale: Any, dt_precision: Any, full: Any) -> _Col:
    t, full = str(data_type).lower(), str(full or "").lower()
    if dialect == "postgresql":
        kind, shown = _PG_KINDS.get(t, ""), t
    else:
        kind, shown = ("bool" if full.startswith("tinyint(1)") else _MY_KINDS.get(t, "")), full or t
    if kind == "decimal":
        places = int(scale) if scale is not None else None
        return _Col(str(name), kind, shown + (f" ({places} places)" if dialect == "postgresql" else ""), places)
    if kind in ("timestamp", "timestamptz"):
        return _Col(str(name), kind, shown, int(dt_precision) if dt_precision is not None else 6)
    return _Col(str(name), kind, shown, rtrim=t in ("character", "char"))


def _pair(s: _Col, t: _Col) -> tuple[ColumnMap | None, str]:
    """The column map of a pair, and how it is compared (or, with no map, why not)."""
    kinds = {s.kind, t.kind}
    target = t.name if t.name != s.name else ""
    said = f"{s.name} ({s.type} → {t.type})"
    if "" in kinds:
        unknown = s.type if not s.kind else t.type
        return None, f"{said}: the checker has no comparison for {unknown}"
    if kinds == {"timestamp", "timestamptz"}:
        kind, note = "timestamp", "; an instant against a wall-clock time: the wall clock taken as UTC (+00:00)"
    elif len(kinds) == 1:
        kind, note = s.kind, ""
    elif kinds <= {"int", "bool"}:
        kind, note = "bool", ""
    elif kinds <= {"int", "decimal"}:
        kind, note = "decimal", ""
    elif kinds <= {"int", "decimal", "float"}:
        kind, note = "float", ""
    else:
        return None, f"{said}: {s.kind} against {t.kind} has no common comparison"
    if kind == "decimal":  # an integer holds its value at any number of places: only a decimal's scale counts
        scales = [c.scale for c in (s, t) if c.kind == "decimal" and c.scale is not None]
        places = min(scales) if scales else NUMERIC_PLACES
        why = f" (the coarser of {scales[0]} and {scales[1]})" if len(set(scales)) > 1 else ""
        return ColumnMap(s.name, target, "decimal", scale=places), f"{said}: decimal at {places} places{why}{note}"
    if kind == "float":
        single = any(c.type.split("(")[0] in ("real", "float") for c in (s, t))
        known = [c.scale for c in (s, t) if c.kind == "decimal" and c.scale is not None]
        places = min([SINGLE_PLACES if single else FLOAT_PLACES, *known])
        if single:
            note += "; single precision on one side (about 7 significant digits: large values need a coarser tolerance)"
        return ColumnMap(s.name, target, "float", scale=places), f"{said}: float within 10^-{places}{note}"
    if kind in ("timestamp", "timestamptz"):
        digits = min(c.scale if c.scale is not None else 6 for c in (s, t))
        coarser = f" (the coarser of {s.scale} and {t.scale})" if s.scale != t.scale else ""
        return (
            ColumnMap(s.name, target, kind, precision=min(digits, 6)),
            f"{said}: {kind} at 10^-{min(digits, 6)} s{coarser}{note}",
        )
    rtrim = s.rtrim or t.rtrim
    return (
        ColumnMap(s.name, target, kind, rtrim=rtrim),
        f"{said}: {kind}" + (" (trailing spaces ignored: a CHAR column pads)" if rtrim else ""),
    )


def derive(
    source: Side,
    target: Side,
    table: str,
    *,
    target_table: str = "",
    source_schema: str = "",
    target_schema: str = "",
    key: str = "",
) -> Derived:
    """The default mapping of ``table`` (on the target ``target_table``, the same name when empty)."""
    target_table = target_table or table
    for side in (source, target):
        if side.dialect not in ("postgresql", "mysql"):
            raise ClauseproofError(
                f"the {side.name} is {side.dialect}: a mapping is derived from PostgreSQL's and the MySQL family's "
                "catalogs only",
                fix="write the mapping (clauseproof.sync.mapping.TableMap) for this engine",
            )
    with source.session() as sc, target.session() as tc:
        s_cols, s_key = _catalog(source, sc, source_schema, table)
        t_cols, t_key = _catalog(target, tc, target_schema, target_table)
    by_name = {c.name.lower(): c for c in t_cols}
    columns: list[ColumnMap] = []
    how: list[str] = []
    not_compared: list[str] = []
    for s in s_cols:
        t = by_name.pop(s.name.lower(), None)
        if t is None:
            not_compared.append(f"{s.name}: on the source only")
            continue
        cm, said = _pair(s, t)
        (how if cm else not_compared).append(said)
        if cm:
            columns.append(cm)
    not_compared += [f"{t.name}: on the target only" for t in by_name.values()]
    chosen = [k.strip() for k in key.split(",")] if key else _key(s_key, t_key, table)
    mapped = {c.source.lower(): c for c in columns}
    for k in chosen:
        if k.lower() not in mapped:
            raise ClauseproofError(
                f"the key {k!r} of {table} is not a column both sides hold with a comparable type",
                checked="the columns paired by name: " + (", ".join(c.source for c in columns) or "none"),
                fix="name the columns that identify each row with --key (a,b for a composite key)",
            )
    names = tuple(mapped[k.lower()].source for k in chosen)
    tm = TableMap(table, target_table, names[0], tuple(columns), source_schema, target_schema,
                  keys=names if len(names) > 1 else ())  # fmt: skip
    if tm.hashed:
        how.append(f"key {', '.join(names)}: not one integer, so the table is cut by a hash of the key (each "
                   "narrowing step reads the whole table)")  # fmt: skip
    return Derived(tm, how, not_compared)


def _key(source_key: list[str], target_key: list[str], table: str) -> list[str]:
    """The source's primary key, else the target's."""
    if source_key or target_key:
        return source_key or target_key
    raise ClauseproofError(
        f"{table} has no primary key on either side",
        checked="the primary key constraints of both tables",
        fix="name the columns that identify each row with --key (a,b for a composite key)",
    )
