"""BZ-SYNC-3: are two tables on two (possibly different) engines the same rows, after a declared mapping?

How it works (the method of TiDB's sync-diff-inspector and of reladiff):

1. both sides report their row count, rows without a key, and the key's range (``条数一致性``);
2. the key range is cut into chunks; each side computes, inside its own database and in one
   ``GROUP BY`` pass, every chunk's row count and the sum of a 60-bit md5 of each row's canonical
   text (``mapping.canonical``: values normalised by the declared column kinds);
3. a chunk whose (count, sum) differ is cut into sub-ranges and checksummed again, recursively,
   until a range holds few rows; those rows are fetched from both sides and compared value by value
   (floats within their tolerance), which names every differing key: *missing* on the target,
   *extra* on the target, *duplicated* (a key more often on one side), *changed* (with the columns),
   and *moved* (a missing key whose values turn up under an extra key).

The two sides run concurrently, one connection each, so the check takes as long as the slower
side (``jobs``: an integer key's range in parts checked at once, each on connections of its own, for
servers with cores to spare).  A settle window (:mod:`clauseproof.sync.settle`) leaves out keys
changed within the replication lag.  A sum of 60-bit digests changes with any changed, missing,
extra or duplicated row (unlike an XOR, which a duplicated pair cancels).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from clauseproof.core.digest import Dialect
from clauseproof.core.errors import ClauseproofError, first_line
from clauseproof.sync import settle as settling
from clauseproof.sync.mapping import TableMap, canonical, epoch_us, key_hash, key_text, quote, row_hash
from clauseproof.sync.outcome import RowDiff, TableCheck
from clauseproof.sync.settle import Both, Settle

__all__ = ["Checker", "RowDiff", "Settle", "Side", "TableCheck"]

CHUNKS = 64  # first cut of the key range
SPLIT = 16  # sub-ranges per differing range
FETCH_ROWS = 1000  # a range with at most this many rows on each side is compared row by row
MAX_LISTED = 1000  # differing keys listed in full (all are counted up to this bound; the check then stops)
HASH_BATCH = 64  # differing hash buckets fetched in one query (each such query reads the whole table)
#: parts of the key range checksummed one after the other, each's differences named before the next, when a listener
#: is told differences as they are found (the first one then comes sooner: on 2M rows against MariaDB, a mid-table row
#: after 4.4 s, not 6.9 s, one near the start after 1.7 s); without one, one pass (the waves can cost an equal check
#: up to 20 %)
WAVES = 8


@dataclass
class Side:
    """One side of a comparison: how to open a connection (each check opens its own) and the dialect."""

    name: str
    dialect: Dialect
    connect: Callable[[], Any]

    @contextlib.contextmanager
    def session(self) -> Iterator[Any]:
        conn = self.connect()
        try:
            cur = conn.cursor()
            if self.dialect == "postgresql":  # canonical forms need UTC and ISO dates; few groups: hash them
                cur.execute("SET TimeZone = 'UTC'")
                cur.execute("SET DateStyle = 'ISO'")
                cur.execute("SET enable_sort = off")
            elif self.dialect == "mysql":
                cur.execute("SET time_zone = '+00:00'")
            # ClickHouse: its canonical forms depend on no session setting (DateTime read as epoch seconds)
            cur.close()
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.close()


class _Sql:
    """The SQL of one side of one mapped table."""

    def __init__(self, tm: TableMap, side: str, dialect: Dialect) -> None:
        self.dialect, self.side = dialect, side
        self.table = tm.qualified(side, dialect)
        key = tm.key_column()
        by = {c.source: c for c in tm.columns}
        # an integer key is cut by its own ranges; any other key by a hash of its canonical text (no index helps it)
        self.key = (
            key_hash(dialect, [canonical(dialect, by[k], side) for k in tm.key_names])
            if tm.hashed
            else quote(dialect, key.source if side == "source" else key.target_name)
        )
        self.where = tm.source_where if side == "source" else tm.target_where
        self.exprs = [canonical(dialect, c, side) for c in tm.columns]
        self.floats = [
            quote(dialect, c.source if side == "source" else c.target_name) for c in tm.columns if c.kind == "float"
        ]
        self.hash = row_hash(dialect, self.exprs)

    def cond(self, lo: int | None = None, hi: int | None = None) -> str:
        parts = [f"({self.where})"] if self.where else []
        if lo is not None:
            parts.append(f"{self.key} >= {lo}")
        if hi is not None:
            parts.append(f"{self.key} < {hi}")
        return (" WHERE " + " AND ".join(parts)) if parts else ""

    def bounds(self) -> str:
        return f"SELECT count(*), count({self.key}), min({self.key}), max({self.key}) FROM {self.table}{self.cond()}"

    def chunks(self, base: int, width: int, lo: int | None, hi: int | None) -> str:
        if self.dialect == "clickhouse":  # no GROUP BY position; its sum of UInt64 wraps (compared mod 2^64)
            return (
                f"SELECT intDiv({self.key} - {base}, {width}) AS cp_chunk, count(), toString(sum({self.hash})) "
                f"FROM {self.table}{self.cond(lo, hi)} GROUP BY cp_chunk"
            )
        div = "/" if self.dialect == "postgresql" else "DIV"
        total = f"sum({self.hash})::text" if self.dialect == "postgresql" else f"CAST(SUM({self.hash}) AS CHAR)"
        return (
            f"SELECT ({self.key} - {base}) {div} {width}, count(*), {total} FROM {self.table}"
            f"{self.cond(lo, hi)} GROUP BY 1"
        )

    def young(self, tm: TableMap, column: str, side: str, cutoff: int, limit: int) -> str:
        """The keys (as :meth:`rows` gives them) whose ``column`` is at or after ``cutoff`` (µs since the epoch),
        with that time; ``limit`` rows at most."""
        col = next(c for c in tm.columns if c.source == column)
        by = {c.source: c for c in tm.columns}
        t = epoch_us(self.dialect, col, side)
        keys = [canonical(self.dialect, by[k], side) for k in tm.key_names] if tm.hashed else [self.key]
        where = self.cond()
        return (
            f"SELECT {', '.join(keys)}, {t} FROM {self.table}{where}{' AND ' if where else ' WHERE '}{t} >= {cutoff} "
            f"LIMIT {limit}"
        )

    def rows(self, ranges: list[tuple[int, int]]) -> str:
        cols = ", ".join([self.key, *self.exprs, *self.floats])
        if len(ranges) == 1:
            return f"SELECT {cols} FROM {self.table}{self.cond(*ranges[0])} ORDER BY {self.key}"
        any_of = " OR ".join(f"({self.key} >= {a} AND {self.key} < {b})" for a, b in ranges)
        where = self.cond()
        return f"SELECT {cols} FROM {self.table}{where}{' AND ' if where else ' WHERE '}({any_of})"


def _columns(side: Side, conn: Any, tm: TableMap, which: str) -> list[str] | None:
    schema = tm.source_schema if which == "source" else tm.target_schema
    table = tm.source_table if which == "source" else tm.target_table
    cur = conn.cursor()
    if side.dialect == "clickhouse":  # names already checked as plain identifiers (mapping.quote)
        db = f"'{schema}'" if schema else "currentDatabase()"
        cur.execute(f"SELECT name FROM system.columns WHERE database = {db} AND table = '{table}'")
    elif schema:
        sql = "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
        cur.execute(sql + " ORDER BY ordinal_position", (schema, table))
    elif side.dialect == "postgresql":
        sql = "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND "
        cur.execute(sql + "table_name = %s ORDER BY ordinal_position", (table,))
    else:
        sql = "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() AND "
        cur.execute(sql + "table_name = %s ORDER BY ordinal_position", (table,))
    names = [str(r[0]) for r in cur.fetchall()]
    cur.close()
    return names or None


class Checker:
    """Compares mapped tables between a source and a target side (a new pair of sessions per check)."""

    def __init__(
        self,
        source: Side,
        target: Side,
        *,
        chunks: int = CHUNKS,
        split: int = SPLIT,
        fetch_rows: int = FETCH_ROWS,
        max_listed: int = MAX_LISTED,
        waves: int | None = None,
        jobs: int = 1,
    ) -> None:
        self.source, self.target = source, target
        self.n_chunks, self.split, self.fetch_rows, self.max_listed = chunks, split, fetch_rows, max_listed
        self.waves = waves  # None: WAVES when check() has an on_diff listener, else 1
        #: parts of an integer key's range checked at once, each on a pair of sessions of its own: for servers with
        #: cores to spare (on a 2-core machine holding both servers it gains nothing); a hashed key is one pass
        self.jobs = jobs

    def check(
        self, tm: TableMap, on_diff: Callable[[RowDiff], None] | None = None, settle: Settle | None = None
    ) -> TableCheck:
        """Compare ``tm``'s two tables.  ``on_diff`` is told each differing key as soon as it is named (the key
        range is gone through in ``waves`` parts, each one's differing ranges narrowed down to their rows before
        the next part is checksummed, so the first difference is named after the part of the table before it, not
        after a whole first pass); a missing and an extra key found to be one moved row are told as they were
        found, and joined in the result.  ``settle``: keys still inside the replication lag are not judged
        (:class:`Settle`)."""
        t0 = time.perf_counter()
        result = TableCheck(table=tm.name)
        sqls = _Sql(tm, "source", self.source.dialect), _Sql(tm, "target", self.target.dialect)
        busy = {self.source.name: 0.0, self.target.name: 0.0}
        with self.source.session() as sc, self.target.session() as tc, ThreadPoolExecutor(2) as pool:
            both = self._both(sc, tc, pool, tm, sqls, busy, result)
            src_cols = _columns(self.source, sc, tm, "source")
            dst_cols = _columns(self.target, tc, tm, "target")
            for side, cols, name in (("source", src_cols, tm.source_table), ("target", dst_cols, tm.target_table)):
                if cols is None:
                    raise ClauseproofError(
                        f"the {side} has no table {name} (or it has no columns the checker may see)",
                        checked="information_schema.columns on the " + side,
                        fix="create the table, or correct the mapping's table and schema names",
                    )
            assert src_cols is not None and dst_cols is not None
            result.missing_columns = [c.target_name for c in tm.columns if c.target_name not in dst_cols]
            if tm.exact_columns:
                mapped = {c.target_name for c in tm.columns}
                result.extra_columns = [c for c in dst_cols if c not in mapped]
            if result.missing_columns:  # the checksums cannot be computed; the difference is plain
                result.seconds = time.perf_counter() - t0
                return result

            if settle is not None:
                settling.start(both, tm, settle, result)
            (s_b,), (t_b,) = both(lambda q: q.bounds())
            result.source_rows, result.target_rows = int(s_b[0]), int(t_b[0])
            result.source_null_keys = result.source_rows - int(s_b[1])
            result.target_null_keys = result.target_rows - int(t_b[1])
            keys = [int(v) for v in (s_b[2], s_b[3], t_b[2], t_b[3]) if v is not None]
            if keys and tm.hashed:
                self._by_hash(both, tm, result, t0, on_diff)
            elif keys:
                lo, hi = min(keys), max(keys) + 1
                width = max(1, math.ceil((hi - lo) / self.n_chunks))
                result.chunks = math.ceil((hi - lo) / width)
                jobs = max(1, min(self.jobs, result.chunks))
                waves = max(1, math.ceil((self.waves or (WAVES if on_diff is not None else 1)) / jobs))

                def walk(both: Both, c0: int, c1: int) -> None:
                    """Chunks [c0, c1): checksummed in ``waves`` parts, each's differing ranges narrowed to rows."""
                    per_wave = math.ceil((c1 - c0) / waves)
                    for first in range(c0, c1, per_wave):
                        if result.truncated:
                            break
                        end = min(first + per_wave, c1)
                        todo = self._differing(both, lo, width, lo + first * width, min(lo + end * width, hi))
                        while todo and not result.truncated:
                            a, b, n = todo.pop(0)
                            if n <= self.fetch_rows or b - a <= self.split:
                                self._rows(both, tm, [(a, b)], result, t0, on_diff)
                            else:
                                w = max(1, math.ceil((b - a) / self.split))
                                todo[:0] = self._differing(both, a, w, a, b)

                if jobs == 1:
                    walk(both, 0, result.chunks)
                else:  # the key range in ``jobs`` parts, each on a pair of sessions of its own, all at once
                    cuts = [round(i * result.chunks / jobs) for i in range(jobs + 1)]
                    result.jobs = jobs

                    def part(c0: int, c1: int) -> None:
                        with self.source.session() as s2, self.target.session() as t2, ThreadPoolExecutor(2) as p2:
                            walk(self._both(s2, t2, p2, tm, sqls, busy, result), c0, c1)

                    with ThreadPoolExecutor(jobs) as parts:
                        for f in [parts.submit(part, a, b) for a, b in itertools.pairwise(cuts)]:
                            f.result()
                    result.diffs.sort(key=lambda d: (isinstance(d.key, str), d.key))
            if settle is not None:  # rows changed while the check ran are younger than the cut-off too
                settling.young(both, tm, settle, result)
                result.young_diffs += [d for d in result.diffs if d.key in result.young_keys]
                result.diffs = [d for d in result.diffs if d.key not in result.young_keys]
            result.diffs = _moves(result.diffs, tm)
            result.side_seconds = busy
        result.seconds = time.perf_counter() - t0
        return result

    def _both(
        self,
        sc: Any,
        tc: Any,
        pool: ThreadPoolExecutor,
        tm: TableMap,
        sqls: tuple[_Sql, _Sql],
        busy: dict[str, float],
        result: TableCheck,
    ) -> Both:
        """A query made by ``make`` for each side, run on both sessions at once; each side's busy time counted."""

        def run(side: Side, conn: Any, sql: str) -> list[Any]:
            s = time.perf_counter()
            try:
                cur = conn.cursor()
                cur.execute(sql)
                rows = list(cur.fetchall())
                cur.close()
            except Exception as exc:
                raise ClauseproofError(
                    f"the {side.name} ({side.dialect}) could not run the checker's query for {tm.name}: "
                    f"{first_line(exc)}",
                    checked=sql[:300],
                    fix="check the table and column names and kinds of the mapping",
                ) from None
            with result.lock:
                busy[side.name] += time.perf_counter() - s
            return rows

        def both(make: Callable[[_Sql], str]) -> tuple[list[Any], list[Any]]:
            a = pool.submit(run, self.source, sc, make(sqls[0]))
            b = pool.submit(run, self.target, tc, make(sqls[1]))
            with result.lock:
                result.queries += 1
            return a.result(), b.result()

        return both

    def _differing(
        self, both: Callable[..., tuple[list[Any], list[Any]]], base: int, width: int, lo: int | None, hi: int | None
    ) -> list[tuple[int, int, int]]:
        """Ranges [a, b) whose checksums differ, with the larger side's row count, in key order."""
        s_rows, t_rows = both(lambda q: q.chunks(base, width, lo, hi))
        # rows without a key form a group of their own here; they are counted (and reported) apart
        # sums compared modulo 2^64: ClickHouse's wraps there, the others' are exact
        s = {int(c): (int(n), int(tot or 0) % 2**64) for c, n, tot in s_rows if c is not None}
        t = {int(c): (int(n), int(tot or 0) % 2**64) for c, n, tot in t_rows if c is not None}
        out = []
        for c in sorted(set(s) | set(t)):
            x, y = s.get(c, (0, 0)), t.get(c, (0, 0))
            if x != y:
                a = base + c * width
                b = a + width if hi is None else min(a + width, hi)
                out.append((a, b, max(x[0], y[0])))
        return out

    def _by_hash(
        self,
        both: Callable[..., tuple[list[Any], list[Any]]],
        tm: TableMap,
        result: TableCheck,
        t0: float,
        on_diff: Callable[[RowDiff], None] | None,
    ) -> None:
        """A key that is not one integer: the hash range 0 … 2^32 cut into buckets of about half ``fetch_rows`` rows,
        checksummed in one pass; the rows of differing buckets fetched ``HASH_BATCH`` buckets per query."""
        n = max(self.n_chunks, math.ceil(2 * max(result.source_rows, result.target_rows) / self.fetch_rows))
        width = math.ceil(2**32 / n)
        result.chunks = math.ceil(2**32 / width)
        todo = self._differing(both, 0, width, None, None)
        for i in range(0, len(todo), HASH_BATCH):
            if result.truncated:
                break
            self._rows(both, tm, [(a, b) for a, b, _ in todo[i : i + HASH_BATCH]], result, t0, on_diff)

    def _rows(
        self,
        both: Callable[..., tuple[list[Any], list[Any]]],
        tm: TableMap,
        ranges: list[tuple[int, int]],
        result: TableCheck,
        t0: float,
        on_diff: Callable[[RowDiff], None] | None = None,
    ) -> None:
        """Compare the rows of the key (or key hash) ranges value by value and add every differing key to
        ``result``."""
        s_rows, t_rows = both(lambda q: q.rows(ranges))
        with result.lock:
            result.rows_fetched += len(s_rows) + len(t_rows)
        ncols = len(tm.columns)
        names = [c.source for c in tm.columns]
        floats = [i for i, c in enumerate(tm.columns) if c.kind == "float"]
        tol = {i: tm.columns[i].float_tolerance for i in floats}

        key_at = [names.index(k) for k in tm.key_names]

        def group(rows: list[Any]) -> dict[int | str, list[tuple[Any, ...]]]:
            out: dict[int | str, list[tuple[Any, ...]]] = {}
            for r in rows:
                canon = [v.decode() if isinstance(v, bytes) else v for v in r[1 : 1 + ncols]]
                key = key_text([canon[i] for i in key_at], tm) if tm.hashed else int(r[0])
                for j, i in enumerate(floats):  # compare floats on their raw values
                    canon[i] = r[1 + ncols + j]
                out.setdefault(key, []).append(tuple(canon))
            return out

        src, dst = group(s_rows), group(t_rows)
        found: list[RowDiff] = []
        for key in sorted(set(src) | set(dst), key=lambda k: (isinstance(k, str), k)):
            a, b = src.get(key, []), dst.get(key, [])
            if not b:
                found.append(RowDiff(key, "missing", source=a[0]))
            elif not a:
                found.append(RowDiff(key, "extra", target=b[0]))
            elif len(a) != len(b):
                times = f"{len(a)} : {len(b)}"  # on the source : on the target
                found.append(RowDiff(key, "duplicated", source=a[0], target=b[0], detail=times))
            else:
                for x, y in zip(sorted(a, key=repr), sorted(b, key=repr), strict=True):
                    cols = tuple(names[i] for i in range(ncols) if not _same(x[i], y[i], tol.get(i)))
                    if cols:
                        found.append(RowDiff(key, "changed", cols, x, y))
                        break
        with result.lock:  # parts of the key range may be checked at once (``jobs``)
            if result.young_keys:  # inside the settle window: counted apart, never told as differences
                result.young_diffs += [d for d in found if d.key in result.young_keys]
                found = [d for d in found if d.key not in result.young_keys]
            if found and result.first_diff_s is None:
                result.first_diff_s = time.perf_counter() - t0
            room = max(0, self.max_listed - len(result.diffs))
            result.diffs.extend(found[:room])
            if len(found) > room:
                result.truncated = True
            if on_diff is not None:
                for d in found[:room]:
                    on_diff(d)


def _moves(diffs: list[RowDiff], tm: TableMap) -> list[RowDiff]:
    """A missing key whose values (all but the key; floats at their checksum's rounding) turn up under an extra
    key is one row that moved."""
    names = [c.source for c in tm.columns]
    key_at = {names.index(k) for k in tm.key_names}
    scale = {i: c.scale for i, c in enumerate(tm.columns) if c.kind == "float"}

    def rest(values: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(
            round(float(v), scale[i]) if i in scale and v is not None else v
            for i, v in enumerate(values)
            if i not in key_at
        )

    extras = {rest(d.target): d for d in diffs if d.kind == "extra" and d.target}
    moved_to: set[int | str] = set()
    out: list[RowDiff] = []
    for d in diffs:
        hit = extras.pop(rest(d.source), None) if d.kind == "missing" and d.source else None
        if hit is not None:
            moved_to.add(hit.key)
            out.append(RowDiff(d.key, "moved", source=d.source, target=hit.target, detail=f"to key {hit.key}"))
        else:
            out.append(d)
    return [d for d in out if not (d.kind == "extra" and d.key in moved_to)]


def _same(x: Any, y: Any, tolerance: float | None) -> bool:
    if tolerance is None or x is None or y is None:
        return bool(x == y)
    return abs(float(x) - float(y)) <= tolerance * (1 + 1e-9)
