"""BZ-SYNC-3's checker across engines: each normalisation trap (a naive comparison finds a false difference,
the declared mapping does not) and each real difference (changed, missing, extra, duplicated, moved) found."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from clauseproof.core.errors import ClauseproofError
from clauseproof.sync.checker import Checker, Side
from clauseproof.sync.flow import Markers
from clauseproof.sync.mapping import ColumnMap, TableMap
from clauseproof.sync.seeded import MAPPING, MY_DDL, ROWS, load, seed
from clauseproof.targets.single.mariadb import EmbeddedMariaDB
from clauseproof.targets.single.postgres import EmbeddedPostgres


@pytest.fixture(scope="module")
def sides(pg_server: EmbeddedPostgres, mariadb_server: EmbeddedMariaDB) -> Iterator[tuple[Side, Side]]:
    with contextlib.closing(pg_server.connect()) as pg, contextlib.closing(mariadb_server.connect()) as my:
        load(pg, my, ROWS)
    yield (
        Side("source", "postgresql", pg_server.connect),
        Side("target", "mysql", mariadb_server.connect),
    )


def check(sides: tuple[Side, Side], tm: TableMap = MAPPING, **kw: Any) -> Any:
    return Checker(*sides, **kw).check(tm)


def my_exec(sides: tuple[Side, Side], *sql: str) -> None:
    with contextlib.closing(sides[1].connect()) as conn:
        cur = conn.cursor()
        for s in sql:
            cur.execute(s)


@contextlib.contextmanager
def target_copy(sides: tuple[Side, Side], pk: bool = True) -> Iterator[TableMap]:
    """A copy of the target table to change; the mapping pointed at it."""
    name = "people_copy"
    my_exec(
        sides,
        f"DROP TABLE IF EXISTS {name}",
        MY_DDL.format(name=name, pk="PRIMARY KEY" if pk else ""),
        f"INSERT INTO {name} SELECT * FROM people",
    )
    try:
        yield replace(MAPPING, target_table=name)
    finally:
        my_exec(sides, f"DROP TABLE IF EXISTS {name}")


def test_declared_mapping_makes_two_engines_equal(sides: tuple[Side, Side]) -> None:
    r = check(sides)
    assert r.equal, r.summary()
    assert (r.source_rows, r.target_rows) == (ROWS, ROWS)
    assert r.chunks > 1 and not r.diffs


def test_bisection_narrows_to_the_one_changed_row(sides: tuple[Side, Side]) -> None:
    with target_copy(sides) as tm:
        my_exec(sides, "UPDATE people_copy SET amount = amount + 0.01 WHERE id = 1234")
        r = check(sides, tm, chunks=4, split=4, fetch_rows=20)
    assert [(d.key, d.kind, d.columns) for d in r.diffs] == [(1234, "changed", ("amount",))], r.diffs[:2]
    assert r.queries > 4 and r.rows_fetched <= 60  # narrowed down, not fetched wholesale


# -- each normalisation: the naive comparison finds a false difference; the declared one does not, and a real
#    difference in that column is still found
TRAPS = {
    "amount": (ColumnMap("amount", kind="text"), "UPDATE {t} SET amount = amount + 0.01 WHERE id = 77"),
    "seen": (
        ColumnMap("seen", kind="timestamp"),  # both taken as UTC wall clock: 8 hours apart
        "UPDATE {t} SET seen = seen + INTERVAL 1 MICROSECOND WHERE id = 77",
    ),
    "name": (ColumnMap("name", kind="text"), "UPDATE {t} SET name = 'name 78' WHERE id = 77"),
    "nick": (ColumnMap("nick", kind="text"), "UPDATE {t} SET nick = 'nick' WHERE id = 77"),
    "score": (
        ColumnMap("score", kind="float", scale=15, tolerance=0.0),
        "UPDATE {t} SET score = score + 1e-6 WHERE id = 77",
    ),
    "flag": (ColumnMap("flag", kind="text"), "UPDATE {t} SET flag = 1 - flag WHERE id = 77"),
}


@pytest.mark.parametrize("column", sorted(TRAPS))
def test_normalisation_trap(sides: tuple[Side, Side], column: str) -> None:
    naive_col, real_change = TRAPS[column]
    naive = replace(MAPPING, columns=tuple(naive_col if c.source == column else c for c in MAPPING.columns))
    r = check(sides, naive)
    assert not r.equal and r.diffs, f"the naive comparison of {column} should differ"
    assert all(d.kind == "changed" and d.columns == (column,) for d in r.diffs), r.summary()
    with target_copy(sides) as tm:
        assert check(sides, tm).equal
        my_exec(sides, real_change.format(t="people_copy"))
        r = check(sides, tm)
    assert not r.equal, f"a real change of {column} was not found"
    assert [(d.kind, d.columns) for d in r.diffs] == [("changed", (column,))], r.summary()


def test_encoding_trap(sides: tuple[Side, Side]) -> None:
    # naive: the md5 of the column as stored (latin1 bytes on the target, UTF-8 on the source) differs for every
    # non-ASCII city; the checker compares characters (UTF-8 on both sides) and still finds a changed letter
    src, dst = sides
    with contextlib.closing(src.connect()) as pg, contextlib.closing(dst.connect()) as my:
        a = dict(pg.execute("SELECT id, md5(city) FROM people WHERE city IS NOT NULL").fetchall())
        cur = my.cursor()
        cur.execute("SELECT id, MD5(CAST(city AS BINARY)) FROM people WHERE city IS NOT NULL")
        b = dict(cur.fetchall())
    assert sum(a[k] != b[k] for k in a) > ROWS // 2
    with target_copy(sides) as tm:
        my_exec(sides, "UPDATE people_copy SET city = 'Zurich' WHERE id = 71")  # a city without its accent
        r = check(sides, tm)
    assert [(d.key, d.kind, d.columns) for d in r.diffs] == [(71, "changed", ("city",))], r.summary()


def test_null_is_not_empty_unless_declared(sides: tuple[Side, Side]) -> None:
    strict = replace(
        MAPPING, columns=tuple(replace(c, empty_is_null=False) if c.source == "nick" else c for c in MAPPING.columns)
    )
    r = check(sides, strict)
    assert {d.columns for d in r.diffs} == {("nick",)} and len(r.diffs) == ROWS // 3


def test_every_seeded_difference_is_named_and_no_other(sides: tuple[Side, Side]) -> None:
    with contextlib.closing(sides[1].connect()) as my:
        want = seed(my, ROWS)
    try:
        r = check(sides, replace(MAPPING, target_table="people_seeded"))
    finally:
        my_exec(sides, "DROP TABLE IF EXISTS people_seeded")
    assert {(d.key, d.kind) for d in r.diffs} == want, r.summary(20)
    assert not r.counts_equal


def test_a_composite_key_is_compared_by_hash_buckets(sides: tuple[Side, Side]) -> None:
    """A key that is not one integer (here id and name, whose text the two engines collate differently) is cut by
    a hash of its canonical text: the same nine seeded differences are named, in three queries a side."""
    by_two = replace(MAPPING, keys=("id", "name"))
    assert by_two.hashed and not MAPPING.hashed
    with contextlib.closing(sides[1].connect()) as my:
        want = seed(my, ROWS)
    try:
        equal = check(sides, by_two)
        r = check(sides, replace(by_two, target_table="people_seeded"))
    finally:
        my_exec(sides, "DROP TABLE IF EXISTS people_seeded")
    assert equal.equal, equal.summary()
    assert {(int(str(d.key).split(", ")[0]), d.kind) for d in r.diffs} == want, r.summary(20)
    assert r.queries == 3 and r.rows_fetched < 2 * ROWS  # bounds, one pass of buckets, one fetch of nine buckets


def test_parts_checked_at_once_name_the_same_differences(sides: tuple[Side, Side]) -> None:
    """``jobs``: the key range in parts, each on sessions of its own — every seeded difference named, no other, in
    key order, whichever part finds it first; the count of sessions is in the evidence."""
    with target_copy(sides) as tm:
        my_exec(sides, "UPDATE people_copy SET amount = amount + 0.01 WHERE id IN (3, 1234, 2999)",
                "DELETE FROM people_copy WHERE id = 2500")  # fmt: skip
        one = check(sides, tm, chunks=8, split=4, fetch_rows=20)
        told: list[Any] = []
        three = Checker(*sides, chunks=8, split=4, fetch_rows=20, jobs=3).check(tm, on_diff=told.append)
    want = [(3, "changed"), (1234, "changed"), (2500, "missing"), (2999, "changed")]
    assert [(d.key, d.kind) for d in one.diffs] == want == [(d.key, d.kind) for d in three.diffs]
    assert sorted((d.key, d.kind) for d in told) == want and three.evidence()["parts_at_once"] == 3
    assert (three.source_rows, three.target_rows) == (one.source_rows, one.target_rows) and not three.equal


def test_missing_extra_duplicated_and_moved_rows_are_named(sides: tuple[Side, Side]) -> None:
    with target_copy(sides, pk=False) as tm:
        my_exec(
            sides,
            "DELETE FROM people_copy WHERE id = 10",  # missing
            "INSERT INTO people_copy SELECT flag, born, 5000, score, nick, city, name, seen, amount "
            "FROM people WHERE id = 20",  # extra (a copy of row 20 under a new key)
            "INSERT INTO people_copy SELECT * FROM people WHERE id = 30",  # duplicated
            "UPDATE people_copy SET id = 4000 WHERE id = 40",  # moved to another key
            "UPDATE people_copy SET id = NULL WHERE id = 50",  # a row that lost its key
        )
        r = check(sides, tm, fetch_rows=5000)
    found = {(d.key, d.kind) for d in r.diffs}
    assert {(10, "missing"), (5000, "extra"), (30, "duplicated"), (50, "missing")} <= found, r.summary()
    assert (40, "moved") in found and next(d for d in r.diffs if d.kind == "moved").detail == "to key 4000"
    assert r.target_null_keys == 1 and r.target_rows == ROWS + 1 and not r.equal
    assert "1 duplicated" in r.summary() and "1 moved" in r.summary()


def test_row_filter_and_exact_columns(sides: tuple[Side, Side]) -> None:
    # the target holding only the rows of a filter: equal only when the same filter selects the source's rows
    with target_copy(sides) as tm:
        my_exec(sides, "DELETE FROM people_copy WHERE id % 2 = 1")
        assert not check(sides, tm).equal
        filtered = replace(tm, source_where="id % 2 = 0")
        assert check(sides, filtered).equal
        my_exec(sides, "INSERT INTO people_copy SELECT * FROM people WHERE id = 11")  # a row outside the filter
        r = check(sides, filtered)
        assert [(d.key, d.kind) for d in r.diffs] == [(11, "extra")]
    # a column the mapping leaves out: the target holds it (a column filter that filtered nothing)
    fewer = replace(MAPPING, columns=tuple(c for c in MAPPING.columns if c.source != "born"), exact_columns=True)
    r = check(sides, fewer)
    assert r.extra_columns == ["born"] and not r.equal


def test_bad_mapping_is_a_clear_error(sides: tuple[Side, Side]) -> None:
    with pytest.raises(ClauseproofError, match="not among the mapped columns"):
        replace(MAPPING, key="ghost")
    with pytest.raises(ClauseproofError, match="offset"):
        ColumnMap("seen", kind="timestamp", target_tz="Asia/Shanghai")
    with pytest.raises(ClauseproofError, match="no table nosuch"):
        check(sides, replace(MAPPING, target_table="nosuch"))
    r = check(sides, replace(MAPPING, columns=(*MAPPING.columns, ColumnMap("ghost", kind="int"))))
    assert r.missing_columns == ["ghost"] and not r.equal


class _Cursor:
    def __init__(self, log: list[tuple[float, Any]]) -> None:
        self.log = log

    def execute(self, sql: str, params: Any = None) -> None:
        if sql.startswith("INSERT"):
            self.log.append((time.monotonic(), params[0]))

    def fetchall(self) -> list[Any]:
        return []


class _Conn:
    """A PyMySQL-shaped connection that records the markers inserted."""

    def __init__(self, log: list[tuple[float, Any]]) -> None:
        self.log = log

    def cursor(self) -> _Cursor:
        return _Cursor(self.log)

    def close(self) -> None:
        pass


def test_markers_stopped_after_a_pause_write_nothing_more() -> None:
    """The outage case pauses the markers, sends a barrier, waits, then stops them: a writer behind its schedule
    must not take stop()'s wake-up for a resume and insert one more marker, which could never arrive (a spurious
    "never arrived")."""
    log: list[tuple[float, Any]] = []
    m = Markers(lambda: _Conn(log), lambda: _Conn([]), "t", per_second=50, max_s=10)
    m.start()
    time.sleep(0.3)
    m.pause()
    paused = len(log)
    time.sleep(0.5)  # the writer falls 25 markers behind its schedule
    t_stop = time.monotonic()
    m.stop()
    assert len(log) == paused and all(t < t_stop for t, _ in log)
    assert sorted(m.committed) == [mid for _, mid in log]
