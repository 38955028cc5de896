"""The mapping read from both catalogs (``clauseproof.sync.derive``) and ``clauseproof sync-diff``.

The cheats of a default mapping: a column one side lacks, or whose type has no comparison, left out silently
(the tables would look equal) — each is listed as not compared and the command exits 1; a precision compared
finer than one side keeps (every rounded value a false difference) — the coarser is used, and said."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from clauseproof.cli import main
from clauseproof.core.errors import ClauseproofError
from clauseproof.sync import settle
from clauseproof.sync.checker import Checker, RowDiff, Settle, Side
from clauseproof.sync.derive import derive
from clauseproof.targets.single.mariadb import EmbeddedMariaDB
from clauseproof.targets.single.postgres import EmbeddedPostgres

ROWS = 3000
PG = """CREATE TABLE cp_dv (id bigint PRIMARY KEY, amount numeric(12,4), flag boolean, name char(10), seen timestamptz,
    score double precision, born date, only_pg int, odd point)"""
MY = """CREATE TABLE cp_dv (id bigint PRIMARY KEY, AMOUNT decimal(12,2), flag tinyint(1), name varchar(10),
    seen datetime(3), score double, born date, only_my int, odd int)"""


def _run(connect: object, *sql: str) -> None:
    with contextlib.closing(connect()) as conn:  # type: ignore[operator]
        cur = conn.cursor()
        for s in sql:
            cur.execute(s)


@pytest.fixture()
def sides(pg_server: EmbeddedPostgres, mariadb_server: EmbeddedMariaDB) -> Iterator[tuple[Side, Side]]:
    """The same 3,000 rows on both, as a sync would leave them (amounts rounded to the target's 2 places,
    timestamps to its milliseconds, a CHAR's padding gone)."""
    _run(pg_server.connect, "DROP TABLE IF EXISTS cp_dv", PG,
         "INSERT INTO cp_dv SELECT g, g * 1.2345, g % 2 = 0, 'n' || g, timestamptz '2020-01-01 00:00:00+00' "
         f"+ g * interval '1.0004 second', g / 7.0, date '2020-01-01' + g, g, point(g, g) "
         f"FROM generate_series(1, {ROWS}) g")  # fmt: skip
    _run(mariadb_server.connect, "DROP TABLE IF EXISTS cp_dv", MY,
         "INSERT INTO cp_dv SELECT seq, ROUND(seq * 1.2345, 2), seq % 2 = 0, CONCAT('n', seq), "
         "TIMESTAMPADD(MICROSECOND, ROUND(seq * 1000.4) * 1000, '2020-01-01 00:00:00'), seq / 7.0e0, "
         f"DATE_ADD('2020-01-01', INTERVAL seq DAY), seq, seq FROM seq_1_to_{ROWS}")  # fmt: skip
    try:
        yield Side("source", "postgresql", pg_server.connect), Side("target", "mysql", mariadb_server.connect)
    finally:
        _run(pg_server.connect, "DROP TABLE IF EXISTS cp_dv")
        _run(mariadb_server.connect, "DROP TABLE IF EXISTS cp_dv")


def test_the_mapping_read_from_both_catalogs_compares_at_the_coarser_precision(sides: tuple[Side, Side]) -> None:
    d = derive(*sides, "cp_dv")
    kinds = {c.source: (c.kind, c.target_name) for c in d.mapping.columns}
    assert kinds == {"id": ("int", "id"), "amount": ("decimal", "AMOUNT"), "flag": ("bool", "flag"),
                     "name": ("text", "name"), "seen": ("timestamp", "seen"), "score": ("float", "score"),
                     "born": ("date", "born")}  # fmt: skip
    by = {c.source: c for c in d.mapping.columns}
    assert by["amount"].scale == 2 and by["seen"].precision == 3 and by["name"].rtrim
    assert d.mapping.key == "id"
    said = "\n".join(d.how)
    assert "the coarser of 4 and 2" in said and "the coarser of 6 and 3" in said and "taken as UTC" in said
    # what cannot be compared is listed, never dropped: one side only, and a type with no comparison
    assert sorted(d.not_compared) == sorted([
        "only_pg: on the source only", "only_my: on the target only",
        "odd (point → int(11)): the checker has no comparison for point",
    ]), d.not_compared  # fmt: skip
    result = Checker(*sides).check(d.mapping)
    assert result.equal, result.summary()


def test_differences_are_told_as_they_are_found_and_the_command_exits_1(
    sides: tuple[Side, Side], pg_server: EmbeddedPostgres, mariadb_server: EmbeddedMariaDB,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    _run(mariadb_server.connect, "UPDATE cp_dv SET AMOUNT = AMOUNT + 0.01 WHERE id = 2500",
         "DELETE FROM cp_dv WHERE id = 7", "UPDATE cp_dv SET name = 'n10 ' WHERE id = 10")  # fmt: skip
    told: list[RowDiff] = []
    d = derive(*sides, "cp_dv")
    result = Checker(*sides, waves=4).check(d.mapping, on_diff=told.append)
    assert (
        [(x.key, x.kind) for x in told]
        == [(7, "missing"), (2500, "changed")]
        == [(x.key, x.kind) for x in result.diffs]
    )  # a trailing space on the target of a CHAR column is padding, not a difference
    assert result.first_diff_s is not None and result.first_diff_s <= result.seconds
    pg, my = pg_server.endpoint, mariadb_server.endpoint
    assert pg is not None and my is not None
    monkeypatch.setenv("CLAUSEPROOF_SOURCE_PASSWORD", pg.password or "")
    monkeypatch.setenv("CLAUSEPROOF_TARGET_PASSWORD", my.password or "")
    table = f"{pg_server.namespace}.cp_dv"  # the schema on PostgreSQL, the database on MariaDB
    code = main(["sync-diff", f"postgresql://{pg.user}@{pg.host}:{pg.port}/{pg.database}",
                 f"mysql://{my.user}@{my.host}:{my.port}/", "--table", table])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    assert "NOT COMPARED only_pg: on the source only" in out and "] key 7: missing" in out
    assert "key 2500: changed amount" in out and (pg.password or "x") not in out
    monkeypatch.setenv("CLAUSEPROOF_TARGET_PASSWORD", "not-the-password")  # a driver's refusal: one line, exit 4
    code = main(["sync-diff", f"postgresql://{pg.user}@{pg.host}:{pg.port}/{pg.database}",
                 f"mysql://{my.user}@{my.host}:{my.port}/", "--table", table])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 4 and "cannot connect to the target" in err and "CLAUSEPROOF_TARGET_PASSWORD" in err, err
    assert "Traceback" not in err and "not-the-password" not in err


def test_a_composite_key_is_read_from_the_catalog_and_a_missing_one_is_a_clear_error(
    sides: tuple[Side, Side],
) -> None:
    _run(
        sides[0].connect,
        "ALTER TABLE cp_dv DROP CONSTRAINT cp_dv_pkey",
        "ALTER TABLE cp_dv ADD PRIMARY KEY (id, born)",
    )
    _run(sides[1].connect, "ALTER TABLE cp_dv DROP PRIMARY KEY", "DELETE FROM cp_dv WHERE id = 7")
    d = derive(*sides, "cp_dv")
    assert d.mapping.key_names == ("id", "born") and d.mapping.hashed
    assert any("hash of the key" in h for h in d.how)
    r = Checker(*sides).check(d.mapping)
    assert [(x.key, x.kind) for x in r.diffs] == [("7, 2020-01-08", "missing")], r.summary()
    assert derive(*sides, "cp_dv", key="born").mapping.key_names == ("born",)
    with pytest.raises(ClauseproofError, match="key 'nope'") as err:
        derive(*sides, "cp_dv", key="nope")
    assert "--key" in str(err.value.fix)
    _run(sides[0].connect, "ALTER TABLE cp_dv DROP CONSTRAINT cp_dv_pkey")
    with pytest.raises(ClauseproofError, match="no primary key on either side"):
        derive(*sides, "cp_dv")
    with pytest.raises(ClauseproofError, match="has no table nope"):
        derive(*sides, "nope")


def test_rows_inside_the_settle_window_are_left_out_and_older_ones_still_judged(
    sides: tuple[Side, Side], pg_server: EmbeddedPostgres, mariadb_server: EmbeddedMariaDB,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A sync that lags: two rows updated and one inserted on the source a moment ago, not yet on the target.  With a
    settle window they are counted apart; a row lost long ago is still a difference (the cheat: a window that
    forgives the lost row too), and a window that would swallow the table, or a column whose times run ahead of the
    clock (read in the wrong zone: every row would look young), is a clear error, not an equal table."""
    _run(sides[0].connect, "UPDATE cp_dv SET amount = amount + 1, seen = now() WHERE id IN (100, 2999)",
         "INSERT INTO cp_dv VALUES (3001, 1, true, 'n', now(), 1, date '2020-01-01', 1, point(1, 1))")  # fmt: skip
    d = derive(*sides, "cp_dv")
    plain = Checker(*sides).check(d.mapping)
    assert sorted((x.key, x.kind) for x in plain.diffs) == [(100, "changed"), (2999, "changed"), (3001, "missing")]
    r = Checker(*sides).check(d.mapping, settle=Settle("seen", 600))
    assert r.equal and not r.diffs, r.summary()  # 3,001 rows against 3,000: the young insert explains the count
    assert sorted((x.key, x.kind) for x in r.young_diffs) == [(100, "changed"), (2999, "changed"), (3001, "missing")]
    assert r.settle is not None and r.settle["young_rows"] == {"source": 3, "target": 0}
    assert "not judged" in r.summary() and r.evidence()["young_differing_keys"] == 3

    _run(sides[1].connect, "DELETE FROM cp_dv WHERE id = 7")  # lost long ago: not inside any window
    r = Checker(*sides).check(d.mapping, settle=Settle("seen", 600))
    assert [(x.key, x.kind) for x in r.diffs] == [(7, "missing")] and not r.equal and len(r.young_diffs) == 3

    pg, my = pg_server.endpoint, mariadb_server.endpoint
    assert pg is not None and my is not None
    monkeypatch.setenv("CLAUSEPROOF_SOURCE_PASSWORD", pg.password or "")
    monkeypatch.setenv("CLAUSEPROOF_TARGET_PASSWORD", my.password or "")
    urls = [f"postgresql://{pg.user}@{pg.host}:{pg.port}/{pg.database}", f"mysql://{my.user}@{my.host}:{my.port}/",
            "--table", f"{pg_server.namespace}.cp_dv"]  # fmt: skip
    assert main(["sync-diff", *urls, "--settle", "seen:600"]) == 1
    out = capsys.readouterr().out
    assert "key 7: missing" in out and "key 100:" not in out.split("cp_dv: source")[0]  # young keys never told
    assert "rows inside it 3 on the source, 0 on the target, 3 of their keys differing, not judged" in out
    for spec, says in (("seen", "not COLUMN:SECONDS"), ("amount:60", "a decimal column, not a timestamp"),
                       ("seen:-5", "not COLUMN:SECONDS")):  # fmt: skip
        assert main(["sync-diff", *urls, "--settle", spec]) == 4
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, err
    assert main(["sync-diff", *urls, "--jobs", "0"]) == 4
    assert "--jobs 0 is out of range" in capsys.readouterr().err

    monkeypatch.setattr(settle, "YOUNG_MAX", 2)  # more rows inside the window than a check may leave out
    with pytest.raises(ClauseproofError, match="more than 2 rows on the source"):
        Checker(*sides).check(d.mapping, settle=Settle("seen", 600))
    monkeypatch.undo()
    _run(sides[0].connect, "UPDATE cp_dv SET seen = now() + interval '8 hours' WHERE id = 5")  # a zone's offset
    with pytest.raises(ClauseproofError, match=r"runs 28,8\d\d s ahead of the source's clock"):
        Checker(*sides).check(d.mapping, settle=Settle("seen", 600))
