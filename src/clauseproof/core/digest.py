"""Content digests: row count plus the sum of md5-derived integers over canonical row text.

The canonical text of a row is its columns as the server prints them, joined by a tab.  Each
row contributes the first 60 bits of the md5 of that text; the digest is ``(count, sum)``.
A changed, missing or duplicated row changes the sum (unlike XOR of CRC32, which misses a
duplicated pair), and the same digest can be computed in SQL on the server and in Python from
the generated file, so a load can be checked against the data that was sent.
"""

from __future__ import annotations

import hashlib
import operator
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

try:  # CPython's builtin md5 is ~2x faster than OpenSSL 3's for short inputs.
    from _md5 import md5 as _md5
except ImportError:  # pragma: no cover - CPython builds without it
    _md5 = hashlib.md5

Dialect = Literal["postgresql", "mysql", "clickhouse"]  # ClickHouse: the sync checker only
_DIGEST = operator.methodcaller("digest")


@dataclass(frozen=True)
class Digest:
    """Row count and content sum of a set of rows."""

    count: int
    total: int

    def __str__(self) -> str:
        return f"{self.count} rows, sum {self.total:x}"


def digest_lines(text: bytes) -> Digest:
    """Digest of newline-terminated rows of canonical text."""
    lines = text.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        return Digest(0, 0)
    raw = b"".join(map(_DIGEST, map(_md5, lines)))
    words = np.frombuffer(raw, dtype=">u8")[::2] >> np.uint64(4)
    hi = int((words >> np.uint64(32)).sum(dtype=np.uint64))
    lo = int((words & np.uint64(0xFFFFFFFF)).sum(dtype=np.uint64))
    return Digest(len(lines), (hi << 32) + lo)


def combine(parts: list[Digest]) -> Digest:
    """Digest of the union of disjoint row sets."""
    return Digest(sum(p.count for p in parts), sum(p.total for p in parts))


def digest_sql(dialect: Dialect, table: str, columns: tuple[str, ...]) -> str:
    """SQL returning ``(count, sum)`` of the canonical rows of ``table``.

    PostgreSQL needs ``DateStyle = ISO`` in the session for timestamps to print canonically.
    """
    if dialect == "postgresql":
        row = "concat_ws(E'\\t', " + ", ".join(columns) + ")"
        return (
            f"SELECT count(*), coalesce(sum(('x' || substr(md5({row}), 1, 15))::bit(60)::bigint), 0)::text FROM {table}"
        )
    row = "CONCAT_WS(CHAR(9), " + ", ".join(columns) + ")"
    return (
        f"SELECT COUNT(*), CAST(COALESCE(SUM(CAST(CONV(LEFT(MD5({row}), 15), 16, 10) AS UNSIGNED)), 0) AS CHAR) "
        f"FROM {table}"
    )


# -- chunked digests of whole tables ------------------------------------------------------------
NULL_MARK = "\x01N"
DEFAULT_CHUNK_WIDTH = 100_000


@dataclass(frozen=True)
class TableDigest:
    """Per key-range digests of one table (a single chunk when it has no integer key)."""

    table: str
    key: str | None
    chunk_width: int
    chunks: dict[int, Digest]

    @property
    def total(self) -> Digest:
        return combine(list(self.chunks.values()))

    def key_range(self, chunk: int) -> str:
        if self.key is None:
            return "the whole table (no integer key)"
        return f"{self.key} in [{chunk * self.chunk_width}, {(chunk + 1) * self.chunk_width})"


def _row_text(dialect: Dialect, columns: list[str], nullable: set[str]) -> str:
    """Canonical row text; only nullable columns pay for the NULL marker."""
    if dialect == "postgresql":
        parts = [f"coalesce({c}::text, E'\\x01N')" if c in nullable else c for c in columns]
        return "concat_ws(E'\\t', " + ", ".join(parts) + ")"
    parts = [f"IFNULL({c}, CONCAT(CHAR(1), 'N'))" if c in nullable else c for c in columns]
    return "CONCAT_WS(CHAR(9), " + ", ".join(parts) + ")"


def chunked_digest_sql(
    dialect: Dialect,
    table: str,
    columns: list[str],
    key: str | None,
    width: int,
    nullable: set[str] | None = None,
    where: str = "",
) -> str:
    """SQL returning ``(chunk, count, sum)`` per key range of ``width`` keys (floor division)."""
    row = _row_text(dialect, columns, set(columns) if nullable is None else nullable)
    cond = f" WHERE {where}" if where else ""
    if dialect == "postgresql":
        chunk = f"({key} / {width} - ({key} % {width} < 0)::int)" if key else "0"
        return (
            f"SELECT {chunk} AS chunk, count(*), "
            f"sum(('x' || substr(md5({row}), 1, 15))::bit(60)::bigint)::text FROM {table}{cond} GROUP BY 1"
        )
    chunk = f"({key} DIV {width} - ({key} % {width} < 0))" if key else "0"
    return (
        f"SELECT {chunk} AS chunk, COUNT(*), "
        f"CAST(SUM(CAST(CONV(LEFT(MD5({row}), 15), 16, 10) AS UNSIGNED)) AS CHAR) FROM {table}{cond} GROUP BY 1"
    )


@dataclass(frozen=True)
class TableLayout:
    """Columns in order, the nullable ones, and a single integer primary-key column if there is one."""

    columns: list[str]
    nullable: set[str]
    key: str | None


def table_layout(conn: Any, dialect: Dialect, schema: str) -> dict[str, TableLayout]:
    """Base tables of ``schema`` (a MySQL database) and their layout."""
    cur = conn.cursor()
    cur.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
        "AND table_type = 'BASE TABLE' ORDER BY table_name",
        (schema,),
    )
    tables = [r[0] for r in cur.fetchall()]
    out: dict[str, TableLayout] = {}
    for t in tables:
        cur.execute(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (schema, t),
        )
        cols = cur.fetchall()
        if dialect == "postgresql":
            cur.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indisprimary AND i.indrelid = %s::regclass",
                (f'"{schema}"."{t}"',),
            )
        else:
            cur.execute(
                "SELECT column_name FROM information_schema.key_column_usage WHERE table_schema = %s "
                "AND table_name = %s AND constraint_name = 'PRIMARY'",
                (schema, t),
            )
        pk = [r[0] for r in cur.fetchall()]
        types = {c: str(dt).lower() for c, dt, _ in cols}
        key = pk[0] if len(pk) == 1 and types.get(pk[0], "") in ("bigint", "integer", "int", "smallint") else None
        out[t] = TableLayout(columns=[c for c, _, _ in cols], nullable={c for c, _, n in cols if n == "YES"}, key=key)
    cur.close()
    return out


def digest_tables(
    conn: Any,
    dialect: Dialect,
    schema: str,
    width: int = DEFAULT_CHUNK_WIDTH,
    *,
    connect: Callable[[], Any] | None = None,
    workers: int = 1,
) -> dict[str, TableDigest]:
    """Chunked digests of every base table of ``schema``, computed on the server.

    With ``connect`` and ``workers`` > 1, each keyed table's key range is split over that many
    connections (one server process each); partial chunks are merged by chunk id.
    """
    result: dict[str, TableDigest] = {}
    for table, layout in table_layout(conn, dialect, schema).items():
        qualified = f'"{schema}"."{table}"' if dialect == "postgresql" else f"`{schema}`.`{table}`"
        wheres = [""]
        if layout.key and connect is not None and workers > 1:
            cur = conn.cursor()
            cur.execute(f"SELECT min({layout.key}), max({layout.key}) FROM {qualified}")
            lo, hi = cur.fetchone()
            cur.close()
            if lo is not None and hi > lo:
                bounds = [int(lo) + (int(hi) - int(lo) + 1) * i // workers for i in range(workers)] + [int(hi) + 1]
                wheres = [f"{layout.key} >= {bounds[i]} AND {layout.key} < {bounds[i + 1]}" for i in range(workers)]
        sqls = [
            chunked_digest_sql(dialect, qualified, layout.columns, layout.key, width, layout.nullable, w)
            for w in wheres
        ]
        parts = _run_parallel(conn, dialect, sqls, connect)
        chunks: dict[int, Digest] = {}
        for rows in parts:
            for c, n, total in rows:
                prev = chunks.get(int(c), Digest(0, 0))
                chunks[int(c)] = Digest(prev.count + int(n), prev.total + int(total or 0))
        result[table] = TableDigest(table=table, key=layout.key, chunk_width=width, chunks=chunks)
    return result


def _run_parallel(conn: Any, dialect: Dialect, sqls: list[str], connect: Callable[[], Any] | None) -> list[Any]:
    """Run each SQL on its own connection (the first on ``conn``), in threads; hash aggregation on PostgreSQL."""
    results: list[Any] = [None] * len(sqls)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        c = conn if i == 0 else connect()  # type: ignore[misc]
        try:
            cur = c.cursor()
            if dialect == "postgresql":  # the planner cannot know there are few chunks; sorting 10^7 rows is slow
                cur.execute("SET enable_sort = off")
            cur.execute(sqls[i])
            results[i] = cur.fetchall()
            if dialect == "postgresql":
                cur.execute("RESET enable_sort")
            cur.close()
        except BaseException as exc:
            errors.append(exc)
        finally:
            if i:
                c.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(1, len(sqls))]
    for t in threads:
        t.start()
    work(0)
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def compare_digests(before: dict[str, TableDigest], after: dict[str, TableDigest]) -> list[str]:
    """Every difference, naming the table and key range; empty when equal."""
    problems: list[str] = []
    for table in sorted(set(before) | set(after)):
        if table not in after:
            problems.append(f"table {table} is missing after restore")
            continue
        if table not in before:
            problems.append(f"table {table} exists after restore but not before")
            continue
        b, a = before[table], after[table]
        for chunk in sorted(set(b.chunks) | set(a.chunks)):
            x, y = b.chunks.get(chunk, Digest(0, 0)), a.chunks.get(chunk, Digest(0, 0))
            if x != y:
                problems.append(
                    f"table {table}, {b.key_range(chunk)}: before {x.count} rows (sum {x.total:x}), "
                    f"after {y.count} rows (sum {y.total:x})"
                )
    return problems


def summary(digests: dict[str, TableDigest]) -> dict[str, str]:
    """Per-table totals for the evidence."""
    return {t: str(d.total) for t, d in digests.items()}
