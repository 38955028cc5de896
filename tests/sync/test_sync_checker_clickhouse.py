"""BZ-SYNC-3's checker between PostgreSQL and a columnar engine (the embedded ClickHouse, Debian's 18.16): the
declared mapping makes the two equal with no row fetched (the canonical forms agree character for character, and
the checksum sums agree modulo 2^64 although ClickHouse's wrap); each naive comparison finds a false difference;
every seeded difference is named and no other; a pre-1970 date, which 18.16's Date cannot hold, is named too."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pwd
from collections.abc import Iterator
from dataclasses import replace

import pytest

from clauseproof.core.errors import ClauseproofError
from clauseproof.sync import seeded
from clauseproof.sync.checker import Checker, Side, TableCheck
from clauseproof.sync.mapping import ColumnMap, TableMap
from clauseproof.targets.single.clickhouse import EmbeddedClickHouse
from clauseproof.targets.single.postgres import EmbeddedPostgres

ROWS = seeded.ROWS
MAPPING = replace(seeded.CH_MAPPING, source_table="people_ch")


@pytest.fixture(scope="module")
def sides(pg_server: EmbeddedPostgres) -> Iterator[tuple[Side, Side]]:
    ch = EmbeddedClickHouse()
    ch.start()
    try:
        with contextlib.closing(pg_server.connect()) as pg:
            seeded.load_postgres(pg, seeded.people(ROWS, seeded.CH_BORN_FROM), "people_ch")
        with contextlib.closing(ch.connect()) as c:
            seeded.load_clickhouse(c, ROWS)
        yield Side("source", "postgresql", pg_server.connect), Side("target", "clickhouse", ch.connect)
    finally:
        ch.stop()
        with contextlib.closing(pg_server.connect()) as pg:
            pg.execute("DROP TABLE IF EXISTS people_ch")


def check(sides: tuple[Side, Side], tm: TableMap = MAPPING) -> TableCheck:
    return Checker(*sides).check(tm)


def test_declared_mapping_makes_postgresql_and_clickhouse_equal(sides: tuple[Side, Side]) -> None:
    r = check(sides)
    assert r.equal, r.summary()
    assert (r.source_rows, r.target_rows) == (ROWS, ROWS)
    # ~47 rows a chunk: every chunk's sum of 60-bit digests passed 2^64 (ClickHouse's wrapped, the others' not)
    assert r.chunks > 1 and r.rows_fetched == 0, r.rows_fetched


NAIVE = {
    "amount": ColumnMap("amount", kind="text"),  # numeric(12,2) "0.37" against Decimal(14,4) "0.3700"
    "seen": ColumnMap("seen", kind="timestamptz", precision=6),  # microseconds against whole seconds
    "name": ColumnMap("name", kind="text"),  # trailing spaces
    "nick": ColumnMap("nick", kind="text"),  # NULL against ''
    "score": ColumnMap("score", kind="float", scale=15, tolerance=0.0),  # off in the 13th digit
    "flag": ColumnMap("flag", kind="text"),  # boolean "true" against UInt8 "1"
}


@pytest.mark.parametrize("column", sorted(NAIVE))
def test_each_naive_comparison_finds_a_false_difference(sides: tuple[Side, Side], column: str) -> None:
    naive = replace(MAPPING, columns=tuple(NAIVE[column] if c.source == column else c for c in MAPPING.columns))
    r = check(sides, naive)
    assert not r.equal and r.diffs, f"the naive comparison of {column} should differ"
    assert all(d.kind == "changed" and d.columns == (column,) for d in r.diffs), r.summary()


def test_every_seeded_difference_is_named_and_no_other(sides: tuple[Side, Side]) -> None:
    """A real change in each normalised column (decimal, timestamp, text, NULL, float) and a missing, extra,
    duplicated and moved row."""
    with contextlib.closing(sides[1].connect()) as c:
        want = seeded.load_clickhouse(c, ROWS, "people_seeded", seeded=True)
    r = check(sides, replace(MAPPING, target_table="people_seeded"))
    assert {(d.key, d.kind) for d in r.diffs} == want, r.summary(20)
    assert not r.counts_equal and len(want) == len(seeded.CH_SEEDED)


def test_a_composite_key_hashes_alike_on_both_engines(sides: tuple[Side, Side]) -> None:
    """Keys cut by a hash of their canonical text (id and name): ClickHouse's hash is PostgreSQL's, so the equal
    copy fetches no row and the seeded one names the same differences."""
    by_two = replace(MAPPING, keys=("id", "name"))
    r = check(sides, by_two)
    assert r.equal and r.rows_fetched == 0, r.summary()
    with contextlib.closing(sides[1].connect()) as c:
        want = seeded.load_clickhouse(c, ROWS, "people_seeded", seeded=True)
    r = check(sides, replace(by_two, target_table="people_seeded"))
    assert {(int(str(d.key).split(", ")[0]), d.kind) for d in r.diffs} == want, r.summary(20)


def test_dates_before_1970_lost_by_the_columnar_engine_are_named(sides: tuple[Side, Side]) -> None:
    with contextlib.closing(sides[1].connect()) as c:
        seeded.load_clickhouse(c, 50, "people_1960", born_from=dt.date(1960, 1, 1))
    src, _ = sides
    with contextlib.closing(src.connect()) as pg:
        seeded.load_postgres(pg, seeded.people(50, dt.date(1960, 1, 1)), "people_1960")
    try:
        r = check(sides, replace(MAPPING, source_table="people_1960", target_table="people_1960"))
    finally:
        with contextlib.closing(src.connect()) as pg:
            pg.execute("DROP TABLE IF EXISTS people_1960")
    assert {(d.kind, d.columns) for d in r.diffs} == {("changed", ("born",))} and len(r.diffs) == 50
    assert r.diffs[0].target is not None and r.diffs[0].target[-1] == "0000-00-00"


def test_stop_leaves_nothing_and_a_missing_server_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    ch = EmbeddedClickHouse()
    ch.start()
    folder, pids = ch.folder, [p.pid for p in ch.procs]
    assert ch.version().startswith("ClickHouse 18.")
    # another local user gets in neither without the password nor through the socket's folder; not run as root
    from clickhouse_driver import dbapi

    for password in ("", "default", ch.password[:-1]):
        conn = dbapi.connect(host="127.0.0.1", port=ch.port, user="default", password=password, connect_timeout=5)
        with pytest.raises(dbapi.Error, match=r"(?i)password|authentication"):
            conn.cursor().execute("SELECT 1")
        conn.close()
    assert folder is not None
    if os.geteuid() == 0:
        assert all(os.stat(f"/proc/{pid}").st_uid == pwd.getpwnam("clickhouse").pw_uid for pid in pids)
        assert ch.password not in (folder / "users.xml").read_text()  # its SHA-256 only
    ch.stop()
    assert folder is not None and not folder.exists()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setattr("clauseproof.targets.single.clickhouse.SERVER", "/nonexistent/clickhouse-server")
    with pytest.raises(ClauseproofError, match="apt-get install clickhouse-server"):
        EmbeddedClickHouse().start()
