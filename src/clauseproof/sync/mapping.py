"""The declared mapping between a source table and its synchronised copy, and the canonical text of a row.

Two engines print the same value differently (``1.50`` and ``1.5000``, a timestamp in two time zones,
``t`` and ``1``), so a naive comparison finds differences that are not there.  Each mapped column
declares a *kind* and how its values are compared; both sides then compute the same canonical text
inside their own database:

==============  ===========================================================================================
kind            canonical text (identical on PostgreSQL and the MySQL family)
==============  ===========================================================================================
``int``         the integer
``bool``        ``1`` / ``0``
``decimal``     the value rounded half away from zero to ``scale`` decimal places, printed at that scale
``float``       rounded to ``scale`` decimal places for the chunk checksum; rows in a differing chunk are then
                compared on their raw values within ``tolerance`` (default ``10**-scale``), so a value on a
                rounding boundary is never reported as a difference and a real one always is
``text``        ``<length in characters>:<UTF-8 text>`` (length-prefixed, so a tab inside a value cannot make
                two rows look alike); ``rtrim`` drops trailing spaces (CHAR padding), ``empty_is_null``
                reads an empty string as NULL
``bytes``       lower-case hex
``date``        ``YYYY-MM-DD``
``timestamp``   wall-clock time in the side's stated UTC offset (``source_tz`` / ``target_tz``, ``+08:00``)
``timestamptz`` an absolute instant (PostgreSQL ``timestamptz``, MariaDB ``TIMESTAMP`` read in UTC)
==============  ===========================================================================================

Timestamps become an integer count of ``10**-precision`` s since 1970-01-01 UTC, rounded half away
from zero in integer arithmetic on both sides (no floating point, no time-zone tables needed).
NULL is a marker distinct from every text, the empty string included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from clauseproof.core.digest import Dialect
from clauseproof.core.errors import ClauseproofError

KINDS = ("int", "bool", "decimal", "float", "text", "bytes", "date", "timestamp", "timestamptz")
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


def quote(dialect: Dialect, name: str) -> str:
    """An identifier quoted for ``dialect``; names are checked, never interpolated raw."""
    if not _IDENT.match(name):
        raise ClauseproofError(
            f"{name!r} is not a plain identifier",
            checked="column and table names of the sync mapping",
            fix="use names of letters, digits, _ and $ (starting with a letter or _)",
        )
    return f'"{name}"' if dialect == "postgresql" else f"`{name}`"


def offset_us(tz: str) -> int:
    """Microseconds east of UTC of an offset written ``+HH:MM``."""
    m = _OFFSET.match(tz)
    if not m:
        raise ClauseproofError(
            f"time zone {tz!r} of a timestamp column is not an offset",
            checked="source_tz / target_tz of the sync mapping",
            fix="write the offset of the column's wall-clock time, e.g. +08:00 or +00:00",
        )
    sign = 1 if m.group(1) == "+" else -1
    return sign * (int(m.group(2)) * 3600 + int(m.group(3)) * 60) * 1_000_000


@dataclass(frozen=True)
class ColumnMap:
    """One column of the source and its counterpart on the target, with how their values compare."""

    source: str
    target: str = ""  # the same name when empty
    kind: str = "text"
    scale: int = 6  # decimal: places compared; float: places of the checksum's rounding
    tolerance: float | None = None  # float: largest absolute difference taken as equal (10**-scale)
    precision: int = 6  # timestamps: fractional digits of a second compared
    source_tz: str = "+00:00"  # timestamp: the UTC offset of the source's wall-clock values
    target_tz: str = "+00:00"
    rtrim: bool = False
    empty_is_null: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ClauseproofError(
                f"column {self.source}: kind {self.kind!r} is not one the checker knows",
                checked="the kind of each mapped column",
                fix="use one of " + ", ".join(KINDS),
            )
        if not 0 <= self.precision <= 6:
            raise ClauseproofError(f"column {self.source}: precision {self.precision} is outside 0..6")
        if not 0 <= self.scale <= 30:
            raise ClauseproofError(f"column {self.source}: scale {self.scale} is outside 0..30")
        offset_us(self.source_tz), offset_us(self.target_tz)

    @property
    def target_name(self) -> str:
        return self.target or self.source

    @property
    def float_tolerance(self) -> float:
        return self.tolerance if self.tolerance is not None else 10.0**-self.scale

    def describe(self) -> str:
        """How this column is compared, in words (for the evidence)."""
        name = self.source if self.target_name == self.source else f"{self.source} → {self.target_name}"
        how = {
            "decimal": f"decimal at {self.scale} places",
            "float": f"float within {self.float_tolerance:g}",
            "timestamp": f"wall clock {self.source_tz} → {self.target_tz}, in UTC at 10^-{self.precision} s",
            "timestamptz": f"instant in UTC at 10^-{self.precision} s",
        }.get(self.kind, self.kind)
        extra = [w for w, on in (("trailing spaces ignored", self.rtrim), ("'' = NULL", self.empty_is_null)) if on]
        return f"{name}: {how}" + (f" ({', '.join(extra)})" if extra else "")


@dataclass(frozen=True)
class TableMap:
    """A source table, its copy on the target, the key, and the mapped columns.

    An integer ``key`` cuts the table into key ranges (read through the key's index).  A key of another kind
    (text, a UUID, a date) or a composite one (``keys``) cuts it by a 32-bit hash of the key's canonical text
    instead: both engines compute the same hash whatever their collations, at the price of reading the whole
    table for each narrowing step (:attr:`hashed`).

    ``source_where`` selects the source rows the sync is declared to copy (a row filter);
    ``target_where`` restricts the target's rows compared (a shared table, say).  ``exact_columns``:
    the target table must hold the mapped columns and no other (a column filter)."""

    source_table: str
    target_table: str
    key: str  # source name of the key column (it must be among ``columns``); the first of ``keys`` when composite
    columns: tuple[ColumnMap, ...]
    source_schema: str = ""
    target_schema: str = ""
    source_where: str = ""
    target_where: str = ""
    exact_columns: bool = False
    label: str = field(default="")
    keys: tuple[str, ...] = ()  # source names of a composite key's columns, in order

    def __post_init__(self) -> None:
        kinds = {c.source: c.kind for c in self.columns}
        for k in self.key_names:
            if k not in kinds:
                raise ClauseproofError(
                    f"table {self.source_table}: the key {k!r} is not among the mapped columns",
                    fix="map the key column too",
                )
        if self.keys and self.keys[0] != self.key:
            raise ClauseproofError(f"table {self.source_table}: key {self.key!r} is not the first of keys {self.keys}")

    @property
    def key_names(self) -> tuple[str, ...]:
        return self.keys or (self.key,)

    @property
    def hashed(self) -> bool:
        """Cut by a hash of the key (a composite key, or one that is not an integer) rather than by key ranges."""
        return len(self.key_names) > 1 or self.key_column().kind != "int"

    @property
    def name(self) -> str:
        return self.label or (
            self.source_table if self.source_table == self.target_table else f"{self.source_table}→{self.target_table}"
        )

    def key_column(self) -> ColumnMap:
        return next(c for c in self.columns if c.source == self.key)

    def qualified(self, side: str, dialect: Dialect) -> str:
        schema, table = (
            (self.source_schema, self.source_table) if side == "source" else (self.target_schema, self.target_table)
        )
        return (quote(dialect, schema) + "." if schema else "") + quote(dialect, table)


def canonical(dialect: Dialect, col: ColumnMap, side: str) -> str:
    """SQL for the canonical text of ``col`` on one side; NULL becomes the NULL marker."""
    c = quote(dialect, col.source if side == "source" else col.target_name)
    if dialect == "clickhouse":
        return _canonical_clickhouse(c, col, side)
    pg = dialect == "postgresql"
    k = col.kind
    if k == "int":
        e = f"{c}::text" if pg else f"CAST({c} AS CHAR)"
    elif k == "bool":
        e = f"{c}::int::text" if pg else f"CAST(({c} <> 0) AS CHAR)"
    elif k in ("decimal", "float"):
        e = f"round({c}::numeric, {col.scale})::text" if pg else f"CAST(CAST({c} AS DECIMAL(65, {col.scale})) AS CHAR)"
    elif k == "text":
        v = f"{c}::text" if pg else f"CONVERT({c} USING utf8mb4)"
        if col.rtrim:
            v = f"rtrim({v})" if pg else f"RTRIM({v})"
        if col.empty_is_null:
            v = f"nullif({v}, '')" if pg else f"NULLIF({v}, '')"
        e = f"length({v}) || ':' || {v}" if pg else f"CONCAT(CHAR_LENGTH({v}), ':', {v})"
    elif k == "bytes":
        e = f"encode({c}, 'hex')" if pg else f"LOWER(HEX({c}))"
    elif k == "date":
        e = f"to_char({c}, 'YYYY-MM-DD')" if pg else f"DATE_FORMAT({c}, '%Y-%m-%d')"
    else:  # timestamps: integer microseconds since the epoch in UTC, then rounded to the precision
        us = epoch_us(dialect, col, side)
        d = 10 ** (6 - col.precision)
        if d == 1:
            e = f"{us}::text" if pg else f"CAST({us} AS CHAR)"
        elif pg:
            e = f"(sign({us}) * ((abs({us}) + {d // 2}) / {d}))::bigint::text"
        else:
            e = f"CAST(SIGN({us}) * ((ABS({us}) + {d // 2}) DIV {d}) AS CHAR)"
    return f"coalesce({e}, E'\\x01N')" if pg else f"IFNULL({e}, CONCAT(CHAR(1 USING utf8mb4), 'N'))"


def _canonical_clickhouse(c: str, col: ColumnMap, side: str) -> str:
    """ClickHouse's canonical text of a column, character for character what PostgreSQL's and MariaDB's give."""
    k = col.kind
    if k == "int":
        e = f"toString({c})"
    elif k == "bool":
        e = f"toString(toUInt8({c} != 0))"
    elif k == "decimal":  # rounded half away from zero at the declared scale, trailing zeros kept ("12.50")
        e = f"toString(toDecimal128(round({c}, {col.scale}), {col.scale}))"
    elif k == "float":  # a float to Decimal truncates its binary value: round as an integer of 10^-scale units
        n, unit = f"toInt64(round(toFloat64({c}) * 1e{col.scale}))", 10**col.scale
        whole = f"concat(if({n} < 0, '-', ''), toString(intDiv(abs({n}), {unit})))"
        frac = f"substring(toString(toUInt64({unit} + abs({n}) % {unit})), 2)"
        e = f"concat({whole}, '.', {frac})" if col.scale else f"toString({n})"
    elif k == "text":
        v = f"toString({c})"
        if col.rtrim:
            v = f"replaceRegexpOne({v}, ' +$', '')"
        if col.empty_is_null:
            v = f"nullIf({v}, '')"
        e = f"concat(toString(lengthUTF8({v})), ':', {v})"
    elif k == "bytes":
        e = f"lower(hex({c}))"
    elif k == "date":
        e = f"toString({c})"
    else:  # DateTime: seconds since the epoch (no zone of its own); 18.16 holds no fraction of a second
        us = epoch_us("clickhouse", col, side)
        d = 10 ** (6 - col.precision)
        e = f"toString({us})" if d == 1 else f"toString(intDiv({us} + if({us} < 0, -{d // 2}, {d // 2}), {d}))"
    return f"ifNull({e}, '\\x01N')"


def epoch_us(dialect: Dialect, col: ColumnMap, side: str) -> str:
    """SQL of a timestamp column as integer microseconds since the epoch in UTC (a wall-clock column read in its
    declared zone)."""
    c = quote(dialect, col.source if side == "source" else col.target_name)
    shift = 0 if col.kind == "timestamptz" else offset_us(col.source_tz if side == "source" else col.target_tz)
    if dialect == "clickhouse":  # DateTime: seconds since the epoch
        return f"(toInt64({c}) * 1000000 - {shift})"
    if dialect == "postgresql":
        return f"((extract(epoch from {c}) * 1000000)::bigint - {shift})"
    return f"(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {c}) - {shift})"


def now_us(dialect: Dialect) -> str:
    """SQL of the server's clock as integer microseconds since the epoch (UTC)."""
    if dialect == "clickhouse":
        return "SELECT toUnixTimestamp64Micro(now64(6))"
    if dialect == "postgresql":
        return "SELECT (extract(epoch from clock_timestamp()) * 1000000)::bigint"
    return "SELECT CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)"


def key_hash(dialect: Dialect, exprs: list[str]) -> str:
    """SQL of a key's 32-bit hash (0 … 2^32 - 1): the first 8 hex digits of the md5 of its canonical columns joined
    by tabs — the same number on every engine for the same key."""
    if dialect == "clickhouse":
        joined = "arrayStringConcat([" + ", ".join(exprs) + "], '\\t')"
        return f"toInt64(bitShiftRight(reinterpretAsUInt64(reverse(substring(MD5({joined}), 1, 8))), 32))"
    if dialect == "postgresql":
        return "('x' || substr(md5(concat_ws(E'\\t', " + ", ".join(exprs) + ")), 1, 8))::bit(32)::bigint"
    return "CAST(CONV(LEFT(MD5(CONCAT_WS(CHAR(9), " + ", ".join(exprs) + ")), 8), 16, 10) AS SIGNED)"


def row_hash(dialect: Dialect, exprs: list[str]) -> str:
    """SQL of a row's 60-bit checksum: the first 15 hex digits of the md5 of its canonical columns joined by tabs."""
    if dialect == "clickhouse":  # the md5's first 8 bytes as a big-endian integer, shifted to its first 60 bits
        joined = "arrayStringConcat([" + ", ".join(exprs) + "], '\\t')"
        return f"bitShiftRight(reinterpretAsUInt64(reverse(substring(MD5({joined}), 1, 8))), 4)"
    if dialect == "postgresql":
        return "('x' || substr(md5(concat_ws(E'\\t', " + ", ".join(exprs) + ")), 1, 15))::bit(60)::bigint"
    return "CAST(CONV(LEFT(MD5(CONCAT_WS(CHAR(9), " + ", ".join(exprs) + ")), 15), 16, 10) AS UNSIGNED)"


def key_text(canon: list[Any], tm: TableMap) -> str:
    """A hashed key as a reader knows it: each column's canonical text without the checker's length prefix (text)
    or NULL marker, joined by ", "."""
    kinds = {c.source: c.kind for c in tm.columns}
    out = []
    for k, v in zip(tm.key_names, canon, strict=True):
        v = "" if v is None else str(v)
        if v in ("\x01N", "\\x01N"):
            out.append("NULL")
        elif kinds[k] == "text":
            out.append(v.split(":", 1)[1] if ":" in v else v)
        else:
            out.append(v)
    return ", ".join(out)
