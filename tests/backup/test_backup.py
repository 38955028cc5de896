"""The backup suite's machinery: chunked digests, the suite end to end at tiny scale, vendor commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clauseproof.backup.phases import timed
from clauseproof.bulk_load.datasets import ensure_dataset
from clauseproof.core import shipped
from clauseproof.core.commands import fill_command
from clauseproof.core.digest import compare_digests, digest_tables
from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.base import Target
from clauseproof.targets.single.external import load_profile
from clauseproof.targets.single.mariadb import EmbeddedMariaDB
from clauseproof.targets.single.postgres import EmbeddedPostgres
from clauseproof.workloads import settlement
from tests.fix_targets import CATALOG, our_folders, vendor_profile


@pytest.mark.parametrize("server", ["pg_server", "mariadb_server"])
def test_chunked_digest_names_table_and_key_range(server: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Positive control for restore equality: a changed, a missing and a duplicated row are each caught."""
    target: Target = request.getfixturevalue(server)
    ds = ensure_dataset(settlement, 5000, 13, tmp_path)
    conn = target.connect()
    schema = target.namespace
    target.create_table(conn, shipped.DDL, "settlement", "keyed")
    target.bulk_load(conn, "keyed", ds.columns, path=ds.path)
    before = digest_tables(conn, target.dialect, schema, width=1000)
    assert before["keyed"].key == "settlement_id" and len(before["keyed"].chunks) == 6
    assert before["keyed"].total == ds.digest  # the chunked digest agrees with the file's
    assert compare_digests(before, digest_tables(conn, target.dialect, schema, width=1000)) == []
    with conn.cursor() as cur:
        cur.execute("UPDATE keyed SET self_paid = self_paid + 0.01 WHERE settlement_id = 1500")
        changed = compare_digests(before, digest_tables(conn, target.dialect, schema, width=1000))
        assert len(changed) == 1 and "table keyed, settlement_id in [1000, 2000)" in changed[0]
        cur.execute("UPDATE keyed SET self_paid = self_paid - 0.01 WHERE settlement_id = 1500")
        cur.execute("DELETE FROM keyed WHERE settlement_id = 4321")
        missing = compare_digests(before, digest_tables(conn, target.dialect, schema, width=1000))
        assert len(missing) == 1 and "[4000, 5000)" in missing[0] and "after 999 rows" in missing[0]
        # a table without a key: one chunk; a duplicated row is caught
        cur.execute("CREATE TABLE unkeyed AS SELECT * FROM keyed")
        base = digest_tables(conn, target.dialect, schema)
        assert base["unkeyed"].key is None
        cur.execute("INSERT INTO unkeyed SELECT * FROM keyed WHERE settlement_id = 7")
        dup = compare_digests(base, digest_tables(conn, target.dialect, schema))
        assert len(dup) == 1 and "the whole table" in dup[0] and "after 5000 rows" in dup[0]
        cur.execute("DROP TABLE unkeyed")
        cur.execute("DROP TABLE keyed")
    conn.close()


def test_backup_suite_end_to_end_at_small_scale(project: pytest.Pytester) -> None:
    before = our_folders()
    result = project.runpytest("suites/backup", "--cp-scale=0.005", f"--cp-cache={project.path / 'cache'}")
    result.assert_outcomes(passed=8)
    doc = json.loads((project.path / "results" / "latest" / "evidence.json").read_text())
    rows = [r for r in doc["clause_rows"] if r["id"] in ("BZ-DB-4e", "BZ-DB-4f", "SX-RDS-4")]
    # 4e/4f × physical/logical × 2 engines + SX-RDS-4 × 3 cases × 2 + the logical backup's database-only part × 2
    # + automatic backup and retention × 2 (NOT SHOWN: the engines have no scheduler)
    auto = [r for r in rows if "no backup scheduler of their own" in r["reason"]]
    assert len(auto) == 2 * 2 and {r["verdict"] for r in auto} == {"NOT SHOWN"}
    rows = [r for r in rows if r not in auto]
    assert len(rows) == 2 * 2 * 2 + 3 * 2 + 2
    only = [c for c in doc["cases"] if "logical" in c["nodeid"]]
    assert all(
        any("leaves out the server's other databases" in m["statistic"] for m in c["measurements"]) for c in only
    )
    assert {r["verdict"] for r in rows} == {"NOT EVIDENCE"}  # scale < 1
    physical = next(c for c in doc["cases"] if "physical" in c["nodeid"] and "mariadb" in c["nodeid"])
    names = [p["name"] for p in physical["parameters"]["restore_phases"]]
    assert names[0] == "mariadb-backup --prepare" and "copy-back" in names[1]
    assert physical["parameters"]["server_bytes"] >= int(0.005 * (1 << 30))
    pitr = next(c for c in doc["cases"] if "point_in_time" in c["nodeid"] and "postgresql" in c["nodeid"])
    assert all(r["equal"] for r in pitr["parameters"]["restores"])
    assert "recovery target" in pitr["parameters"]["beyond_archive"]["refused_with"]
    assert "a server of its own" in pitr["parameters"]["source_notes"][0]  # not the 1 GiB source
    for engine in ("postgresql", "mariadb"):  # the source's digest is computed by one case and reused by the other
        seconds = [
            c["parameters"]["digest_seconds"]["source"]
            for c in doc["cases"]
            if engine in c["nodeid"] and ("physical" in c["nodeid"] or "logical" in c["nodeid"])
        ]
        assert sorted(isinstance(x, str) for x in seconds) == [False, True], seconds
    assert our_folders() == before  # every restored instance, backup and archive removed
    # second run: the data directory comes from the cache
    result = project.runpytest(
        "suites/backup", "--cp-scale=0.005", f"--cp-cache={project.path / 'cache'}", "-k", "physical and postgresql"
    )
    result.assert_outcomes(passed=1)
    doc = json.loads((project.path / "results" / "latest" / "evidence.json").read_text())
    case = next(c for c in doc["cases"] if c["outcome"] == "passed")
    assert case["parameters"]["data_set"]["from_cache"] is True


def test_vendor_commands_through_a_profile(project: pytest.Pytester, pg_server: EmbeddedPostgres) -> None:
    bindir = "/usr/lib/postgresql/15/bin"
    profile = vendor_profile(
        project.path / "vendor.toml",
        pg_server,
        "[commands]\n"
        f'backup = "{bindir}/pg_dump -h {{host}} -p {{port}} -U {{user}} -d {{database}} -Fc '
        '-f {output_dir}/db.dump"\n'
        f'restore = "{bindir}/createdb -h {{host}} -p {{port}} -U {{user}} {{new_database}} && '
        f'{bindir}/pg_restore -h {{host}} -p {{port}} -U {{user}} -d {{new_database}} {{output_dir}}/db.dump"\n',
    )
    result = project.runpytest("suites/backup", f"--cp-target={profile}", "--cp-scale=0.003", "-rs")
    result.assert_outcomes(passed=3, skipped=1)  # PITR needs the vendor's restore-to-time command
    doc = json.loads((project.path / "results" / "latest" / "evidence.json").read_text())
    case = next(c for c in doc["cases"] if "physical" in c["nodeid"])
    assert case["parameters"]["method"] == "vendor command"
    with pg_server.connect(in_namespace=False) as conn, conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'clauseproof%'")
        assert cur.fetchall() == []  # the harness dropped what it created, and only that


@pytest.mark.parametrize(
    ("backup", "says_4e"),
    [
        ("true", ""),  # the cheapest cheat: writes nothing (and the restore, a clone, proves it no backup)
        ("{bindir}/pg_dump -h {{host}} -p {{port}} -U {{user}} -d {{database}} -Fc -f {{output_dir}}/db.dump", ""),
    ],
    ids=["empty-backup", "real-backup"],
)
def test_a_restore_that_clones_the_live_source_fails(
    project: pytest.Pytester, pg_server: EmbeddedPostgres, backup: str, says_4e: str
) -> None:
    """A "restore" that copies the live source instead of reading the backup is caught: the source is changed
    after the backup finished, and the restored copy holds that change.  FAIL with the difference, not ERROR."""
    bindir = "/usr/lib/postgresql/15/bin"
    conn = "-h {host} -p {port} -U {user}"
    profile = vendor_profile(
        project.path / "vendor.toml",
        pg_server,
        "[commands]\n"
        f'backup = "{backup.format(bindir=bindir)}"\n'
        f'restore = "{bindir}/createdb {conn} {{new_database}} && '
        f'{bindir}/pg_dump {conn} -d {{database}} | {bindir}/psql -q {conn} -d {{new_database}}"\n',
    )
    result = project.runpytest("suites/backup", f"--cp-target={profile}", "--cp-scale=0.003", "-k", "physical")
    result.assert_outcomes(failed=1)
    doc = json.loads((project.path / "results" / "latest" / "evidence.json").read_text())
    rows = {r["id"]: r for r in doc["clause_rows"] if r["id"] in ("BZ-DB-4e", "BZ-DB-4f", "SX-RDS-4")}
    assert {r["verdict"] for r in rows.values()} == {"FAIL"}  # at reduced scale too: the result is wrong
    assert "holds 1000 of the 1000 rows written to the source after the backup" in rows["BZ-DB-4f"]["reason"]
    assert (says_4e or "was not restored from the backup") in rows["BZ-DB-4e"]["reason"]
    with pg_server.connect(in_namespace=False) as c, c.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'clauseproof%'")
        assert cur.fetchall() == []  # the source and the "restored" database were dropped


@pytest.mark.parametrize("shown", [True, False], ids=["artefact-shown", "artefact-not-shown"])
def test_a_backup_kept_outside_the_output_folder(
    project: pytest.Pytester, pg_server: EmbeddedPostgres, tmp_path: Path, shown: bool
) -> None:
    """Issue 30's over-correction: a backup whose artefact lands elsewhere (the vendor's store) was FAIL "wrote 0
    bytes" though its restore was proven equal.  With show_backup listing it: judged from it (PASS here); without:
    NOT SHOWN, never PASS."""
    bindir = "/usr/lib/postgresql/15/bin"
    store = tmp_path / "vendor-store"
    store.mkdir()
    conn = "-h {host} -p {port} -U {user}"
    show = (f'show_backup = "cd {store} && for f in *; do echo $(stat -c %s $f) $(sha256sum < $f | cut -c1-64) $f; '
            'done"\n') if shown else ""  # fmt: skip
    profile = vendor_profile(
        project.path / "vendor.toml",
        pg_server,
        "[commands]\n"
        f'backup = "{bindir}/pg_dump {conn} -d {{database}} -Fc -f {store}/db.dump"\n'
        f'restore = "{bindir}/createdb {conn} {{new_database}} && {bindir}/pg_restore {conn} -d {{new_database}} '
        f'{store}/db.dump"\n' + show,
    )
    result = project.runpytest("suites/backup", f"--cp-target={profile}", "--cp-scale=0.003", "-k", "physical")
    doc = json.loads((project.path / "results" / "latest" / "evidence.json").read_text())
    rows = {r["id"]: r for r in doc["clause_rows"] if r["id"] in ("BZ-DB-4e", "BZ-DB-4f", "SX-RDS-4")}
    assert rows["BZ-DB-4f"]["verdict"] in ("PASS", "NOT EVIDENCE"), rows  # reduced scale: the time is no evidence
    if shown:
        assert (
            rows["BZ-DB-4e"]["verdict"] in ("PASS", "NOT EVIDENCE")
            and "shown by the vendor's show_backup" in (rows["BZ-DB-4e"]["statistic"])
        ), rows["BZ-DB-4e"]
        case = next(c for c in doc["cases"] if "physical" in c["nodeid"])
        assert case["parameters"]["backup_artefact"][0]["name"] == "db.dump"
    else:
        assert rows["BZ-DB-4e"]["verdict"] == "NOT SHOWN" and "shown nowhere" in rows["BZ-DB-4e"]["reason"], rows
        assert rows["SX-RDS-4"]["verdict"] == "NOT SHOWN"
    assert result.ret in (0, 1)


def test_vendor_command_placeholders_are_checked() -> None:
    assert fill_command("dump {database} > {output_dir}/x", database="a b", output_dir="/tmp") == "dump 'a b' > /tmp/x"
    with pytest.raises(ClauseproofError) as exc:
        fill_command("dump {db}", database="x")
    assert "{db} is not one of" in str(exc.value) and "{database}" in str(exc.value)
    # a user named $(...) inside a template's own quotes would run: such templates are refused
    assert fill_command("dump --user {user}", user="$(touch /tmp/x)") == "dump --user '$(touch /tmp/x)'"
    for quoted in ('dump --user "{user}"', "sh -c 'pg_dump {database}'"):
        with pytest.raises(ClauseproofError, match="inside quotes"):
            fill_command(quoted, user="u", database="d")


def test_a_profile_that_quotes_a_placeholder_is_refused_with_its_line(tmp_path: Path) -> None:
    profile = tmp_path / "vendor.toml"
    profile.write_text(
        '[target]\ndialect = "mysql"\nhost = "h"\nuser = "u"\n\n[commands]\nbackup = "dump -u \\"{user}\\""\n'
    )
    with pytest.raises(ClauseproofError) as exc:
        load_profile(profile)
    assert f"{profile}:7" in str(exc.value) and "{user} inside quotes" in str(exc.value)


def test_timed_failure_names_the_command() -> None:
    with pytest.raises(ClauseproofError) as exc:
        timed("the tool", ["sh", "-c", "echo broken >&2; exit 3"])
    assert "the tool failed (exit 3): broken" in str(exc.value)


def test_a_command_that_prompts_fails_at_once_and_leaves_nothing() -> None:
    """A vendor command waiting for a password (libpq's createdb asks on the terminal, others read standard
    input) hung the run forever: it now has neither, and fails within its first second."""
    import time

    for prompt in ("read answer", "exec 3</dev/tty && read answer <&3"):
        t0 = time.monotonic()
        with pytest.raises(ClauseproofError, match="failed"):
            timed("prompting command", [f"{prompt} && exit 0; exit 3"], shell=True, timeout=30)
        assert time.monotonic() - t0 < 5


def test_a_restore_that_clones_the_live_source_fails_on_mariadb(
    project: pytest.Pytester, mariadb_server: EmbeddedMariaDB
) -> None:
    """The same cheat on the MySQL family: a backup that writes nothing, a restore that dumps the live source."""
    conn = "--no-defaults -h {host} -P {port} -u {user}"
    profile = vendor_profile(
        project.path / "vendor.toml",
        mariadb_server,
        "[commands]\n"
        'backup = "true"\n'
        f'restore = "mariadb-admin {conn} create {{new_database}} && '
        f'mariadb-dump {conn} {{database}} | mariadb {conn} {{new_database}}"\n',
        name="vendor-mariadb",
    )
    result = project.runpytest("suites/backup", f"--cp-target={profile}", "--cp-scale=0.01", "-k", "physical")
    result.assert_outcomes(failed=1)
    doc = json.loads((project.path / "results" / "latest" / "evidence.json").read_text())
    rows = {r["id"]: r for r in doc["clause_rows"] if r["id"] in ("BZ-DB-4e", "BZ-DB-4f", "SX-RDS-4")}
    assert {r["verdict"] for r in rows.values()} == {"FAIL"}
    assert "was not restored from the backup" in rows["BZ-DB-4e"]["reason"]  # nothing written, nothing shown
    assert "rows written to the source after the backup had finished" in rows["BZ-DB-4f"]["reason"]
    with mariadb_server.connect(in_namespace=False) as c, c.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE 'clauseproof\\_2%'")  # the run's source and "restored" databases
        assert cur.fetchall() == ()


@pytest.mark.slow
def test_two_whole_runs_share_one_cache(project: pytest.Pytester) -> None:
    """Two runs at once on one cache (3 of 3 tries broke before the lock): both pass, the data set is built once,
    and the second run copies it whole."""
    import subprocess
    import sys

    cache = project.path / "cache"
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest",
                "suites/backup",
                "-k",
                "physical and postgresql",
                "--cp-scale=0.005",
                f"--cp-cache={cache}",
                f"--cp-results={project.path / f'results-{i}'}",
                "-p",
                "no:randomly",
            ],
            cwd=project.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in (1, 2)
    ]
    outs = [r.communicate(timeout=600)[0].decode(errors="replace") for r in runs]
    assert [r.returncode for r in runs] == [0, 0], [o[-1500:] for o in outs]
    from_cache = []
    for i in (1, 2):
        doc = json.loads((project.path / f"results-{i}" / "latest" / "evidence.json").read_text())
        case = next(c for c in doc["cases"] if c["outcome"] == "passed")
        from_cache.append(case["parameters"]["data_set"]["from_cache"])
    assert sorted(from_cache) == [False, True]


def test_a_database_level_backup_holding_another_database_fails(tmp_path: Path) -> None:
    """The cheat: a whole-server dump (pg_dumpall, mariadb-dump --all-databases) called a database-level backup. The
    other database's marker is found, in plain files and in pg_dump -Fd's gzip-compressed ones alike."""
    import gzip

    from clauseproof.backup.logical import database_only, found_in
    from clauseproof.core.catalog import load_catalog
    from clauseproof.core.evidence import CaseEvidence, CaseRecord

    out = tmp_path / "dump"
    out.mkdir()
    (out / "toc.dat").write_bytes(b"header " * 1000)
    with gzip.open(out / "3001.dat.gz", "wb") as f:
        f.write(b"x" * (1 << 21) + b"cpother0123456789abcdef\n")  # past the first read
    assert found_in(out, b"cpother0123456789abcdef") == ["3001.dat.gz"]
    assert found_in(out, b"cpotherffffffffffffffff") == []
    ev = CaseEvidence(CaseRecord("s::t", ["SX-RDS-4"], "x"), load_catalog(CATALOG), 1.0)
    database_only(ev, out, "cpother0123456789abcdef", "clauseproof_other")
    m = ev.record.measurements[0]
    assert m.verdict == "FAIL" and "3001.dat.gz" in m.reason
    ev = CaseEvidence(CaseRecord("s::t", ["SX-RDS-4"], "x"), load_catalog(CATALOG), 1.0)
    database_only(ev, out, "cpotherffffffffffffffff", "clauseproof_other")
    assert ev.record.measurements[0].verdict == "PASS"
