"""The plugin end to end through pytester: markers, options, verdicts, evidence and report."""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from clauseproof.bulk_load.datasets import ensure_dataset
from clauseproof.cli import main as cli
from clauseproof.core import shipped
from clauseproof.targets.base import Target
from clauseproof.targets.single.postgres import EmbeddedPostgres
from clauseproof.workloads import settlement
from tests.core.test_report import pdf_fonts, pdf_text
from tests.fix_targets import CATALOG


def _set_clause(catalog: Path, clause_id: str, **values: object) -> None:
    text = catalog.read_text(encoding="utf-8")
    start = text.index(f'id = "{clause_id}"')
    end = text.find("[[clause]]", start)
    block = text[start:end]
    for key, value in values.items():
        rendered = (
            json.dumps(value, ensure_ascii=False)
            if isinstance(value, str)
            else (
                "{ " + ", ".join(f"{k} = {v}" for k, v in value.items()) + " }"
                if isinstance(value, dict)
                else repr(value)
            )
        )
        if re.search(rf"^{key} = ", block, flags=re.M):
            block = re.sub(rf"^{key} = .*$", f"{key} = {rendered}".replace("\\", "\\\\"), block, flags=re.M)
        else:
            block = block.rstrip("\n") + f"\n{key} = {rendered}\n\n"
    catalog.write_text(text[:start] + block + text[end:], encoding="utf-8")


def test_unknown_clause_id_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_x="""
        import pytest
        @pytest.mark.clause("BZ-DB-9z")
        def test_a(): pass
    """
    )
    result = pytester.runpytest(f"--cp-catalog={CATALOG}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown clause id 'BZ-DB-9z'*"])
    assert "Traceback" not in result.stderr.str()


def test_acceptance_case_without_clause_is_an_error(project: pytest.Pytester) -> None:
    (project.path / "suites" / "test_unmarked.py").write_text("def test_orphan():\n    pass\n")
    result = project.runpytest("suites/test_unmarked.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*name no clause*test_orphan*"])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--cp-repeats=three"], "*--cp-repeats: Could not parse value: 'three'*"),
        (["--cp-scale=2"], "*--cp-scale: Could not parse value: '2' (must be > 0 and <= 1*"),
        (["--cp-target=oracle"], "*--cp-target: Could not parse value: 'oracle'*"),
        (["--cp-target=sqlite:///x.db"], "*URL scheme 'sqlite'*"),
    ],
)
def test_bad_option_values_are_quoted(pytester: pytest.Pytester, args: list[str], expected: str) -> None:
    pytester.makepyfile(test_x="def test_a(): pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])


def test_env_variable_sets_option(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_x="def test_a(): pass\n")
    monkeypatch.setenv("CLAUSEPROOF_REPEATS", "0")
    result = pytester.runpytest()
    result.stderr.fnmatch_lines(["*environment variable CLAUSEPROOF_REPEATS: Could not parse value: '0'*"])


def test_catalog_listing_shows_coverage(project: pytest.Pytester) -> None:
    result = project.runpytest("--cp-list-catalog", "suites")
    assert result.ret == 0
    assert not (project.path / "results").exists()  # a read-only command writes no run and moves no latest
    result.stdout.fnmatch_lines(
        [
            "*SX-ECS-1 *",
            "*not covered (api)",
            "*BZ-DB-3 *",
            "*verified by suites/db_service/test_platform.py::*",
            "*BZ-DB-4a*< 1.3 s*",
            "*verified by suites/bulk_load/test_bulk_load.py::test_single_table_insert[[]embedded-postgresql[]]",
            "*BZ-DB-4e*< 7 s*",
            "*verified by suites/backup/test_backup_restore.py::test_physical_backup_restore[[]embedded-mariadb[]]",
        ]
    )


def _run_suite(project: pytest.Pytester, *extra: str) -> tuple[pytest.RunResult, dict]:
    result = project.runpytest(
        "suites",
        "--cp-target=embedded-postgresql",
        "--cp-repeats=2",
        f"--cp-cache={project.path / 'cache'}",
        "-k",
        "insert",
        *extra,
    )
    doc = json.loads((project.path / "results" / "latest" / "evidence.json").read_text())
    return result, doc


def test_positive_control_threshold_fails_and_report_says_so(project: pytest.Pytester) -> None:
    shutil.copytree(shipped.PACKAGE / "catalog", project.path / "catalog")  # a copy the control changes
    catalog = project.path / "catalog" / "clauses.toml"
    # full scale of a 2,000-row clause with an impossible threshold: the verdict must be FAIL.  A threshold must be
    # a number its quoted text states, so the control quotes a seed of its own that states it.
    (catalog.parent / "seeds" / "control.txt").write_text(
        "对照：单表插入2000数据小于0.000001秒\n对照：平均存储性能可达到1条/秒以上\n", encoding="utf-8"
    )
    _set_clause(
        catalog,
        "BZ-DB-4a",
        seed="control.txt",
        text="单表插入2000数据小于0.000001秒",
        threshold=1e-6,
        params={"rows": 2000},
    )
    _set_clause(
        catalog,
        "BZ-DB-4b",
        seed="control.txt",
        text="平均存储性能可达到1条/秒以上",
        threshold=1.0,
        params={"rows": 2000},
    )
    junit = project.path / "junit.xml"
    result, doc = _run_suite(project, "--cp-formats=html,pdf,docx", f"--junitxml={junit}", "-o", "junit_family=xunit1",
                             f"--cp-catalog={catalog}")  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*BZ-DB-4a FAIL on embedded-postgresql: measured * s, required < 1e-06 s*"])
    rows = {(r["id"], r["target"]): r for r in doc["clause_rows"]}
    assert rows[("BZ-DB-4a", "embedded-postgresql")]["verdict"] == "FAIL"
    assert rows[("BZ-DB-4b", "embedded-postgresql")]["verdict"] == "PASS"
    assert rows[("BZ-DB-4e", "")]["verdict"] == "NOT COVERED"
    assert len({r["id"] for r in doc["clause_rows"]}) == len(doc["catalog"])
    case = next(c for c in doc["cases"] if "insert" in c["nodeid"])
    m = next(m for m in case["measurements"] if m["clause_id"] == "BZ-DB-4a")
    assert len(m["samples"]) == 2 and m["spread"]["n"] == 2
    assert case["parameters"]["rows"] == 2000 and len(case["parameters"]["content_checks"]) == 2
    assert "COPY" in case["window"] and "outside it" in case["window"]
    env = doc["environment"]["client"]
    assert env["cores"] and env["cpu_model"] and env["os"]
    target = doc["targets"][0]
    assert target["server"]["settings"]["fsync"] == "on" and "PostgreSQL" in target["server"]["version"]
    assert target["server_machine"]["cores"] == env["cores"] and target["server_machine"]["architecture"]
    _check_report_forms(project.path / "results" / "latest", doc)
    xml = junit.read_text()
    assert '<property name="clause" value="BZ-DB-4a"' in xml
    assert re.search(r'<property name="BZ-DB-4a embedded-postgresql" value="FAIL: [0-9.]+ s"', xml)
    bench = json.loads((project.path / "results" / "latest" / "benchmark-smaller-is-better.json").read_text())
    assert any(e["name"].startswith("BZ-DB-4a · embedded-postgresql") and e["unit"] == "s" for e in bench)


def _check_report_forms(folder: Path, doc: dict) -> None:
    """The report as a committee reads it: HTML, PDF and DOCX say the same verdicts in Chinese and English, the
    conclusions come first (a line per clause judged), then the matrix (a row per clause judged, the clauses not
    covered as one list, targets as codes with a legend), Chinese is set in an embedded CJK font, the Word report
    holds the plots, the bundle verifies."""
    html = (folder / "report.html").read_text()
    assert "单表插入2000数据小于0.000001秒" in html and '<img class="plot"' in html  # the plots, drawn once as PNG
    assert "不通过 / FAIL" in html and "未覆盖 / NOT COVERED" in html
    order = [
        "<h1>验收测试报告",
        "测试结论 / Conclusions",
        "1 结论矩阵 / Verdict matrix",
        "2 问题清单 / Issue list",
        "8 签字确认 / Sign-off",
    ]
    assert [html.index(h) for h in order] == sorted(html.index(h) for h in order)
    judged = [r["id"] for r in doc["matrix"]["rows"] if r["overall"] != "NOT COVERED"]
    uncovered = [r["id"] for r in doc["matrix"]["rows"] if r["overall"] == "NOT COVERED"]
    conclusions = html[html.index(order[1]) : html.index(order[2])]
    assert conclusions.count('<td class="idc">') == len(judged) and all(i in conclusions for i in uncovered)
    matrix = html[html.index(order[2]) : html.index(order[3])]
    assert matrix.count('<td class="idc">') == len(judged) + len(doc["targets"])  # clause rows, then the legend
    assert '<th class="code" title="embedded-postgresql">T1</th>' in matrix and all(i in matrix for i in uncovered)
    pdf = folder / "report.pdf"
    fonts = pdf_fonts(pdf)
    assert re.search(r"Noto-?Sans-?CJK\S*\s.*\byes\b", fonts), fonts  # embedded (a subset), not substituted
    first_pages = pdf_text(pdf, last=3)
    assert "测试结论" in first_pages and "结论矩阵" in first_pages and "不通过" in first_pages
    from docx import Document

    word = Document(str(folder / "report.docx"))
    east_asia = word.styles["Normal"].element.rPr.rFonts.get(
        "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}eastAsia"
    )
    assert east_asia == "Noto Sans CJK SC"
    cells = {c.text for table in word.tables for row in table.rows for c in row.cells}
    assert "不通过 / FAIL" in cells and "BZ-DB-4a" in cells
    assert len(word.inline_shapes) >= 1  # the plots, as in the HTML
    signing = doc["report"]["signing"]
    assert signing["fingerprint"].startswith("SHA256:") and signing["sm2_fingerprint"].startswith("SM2-SHA256:")
    assert signing["sm2_fingerprint"] in html  # the report prints both keys a witness pins
    assert cli(["verify", str(folder), "--fingerprint", signing["fingerprint"]]) == 0
    data = bytearray(pdf.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one byte
    pdf.write_bytes(bytes(data))
    assert cli(["verify", str(folder), "--fingerprint", signing["fingerprint"]]) == 1


def test_reduced_scale_is_not_evidence(project: pytest.Pytester) -> None:
    result, doc = _run_suite(project, "--cp-scale=0.001")
    assert result.ret == 0
    verdicts = {r["verdict"] for r in doc["clause_rows"] if r["id"] in ("BZ-DB-4a", "BZ-DB-4b")}
    assert verdicts == {"NOT EVIDENCE"}
    html = (project.path / "results" / "latest" / "report.html").read_text()
    assert "数据规模为 0.001" in html and "scale 0.001" in html


def test_containers_without_an_engine_is_a_configuration_error(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked for explicitly, the containers target does not skip for lack of Docker: it says how to get one."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    result = project.runpytest("suites/bulk_load", "--cp-target=containers-postgresql", "-rs")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    out = result.stdout.str() + result.stderr.str()
    assert out.count("no Docker engine: /nonexistent/docker.sock does not exist") == 1
    assert "./run engine" in out


@pytest.mark.timing  # the refusal within 15 s (a run's start-up is 2-3 s alone; beside the parallel tests it took 20)
def test_unreachable_target_is_a_configuration_error_said_once(project: pytest.Pytester) -> None:
    """Issue 32: found before collection, in seconds: one paragraph, exit 4, no bundle (it used to render a full
    report of NOT COVERED rows and say the real error last)."""
    started = time.monotonic()
    result = project.runpytest("suites/bulk_load", "--cp-target=mysql://root:pw-in-url@127.0.0.1:1/")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # 4: configuration error, not "a clause FAILED"
    assert time.monotonic() - started < 15
    out = result.stdout.str() + result.stderr.str()
    assert out.count("cannot reach the mysql target") == 1 and "pw-in-url" not in out
    assert "Fix: start the server, or correct the host and port" in out
    assert not (project.path / "results").exists()  # no bundle, no latest


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--cp-target=nowhere/vendor.toml"], "cannot read the target profile"),
        (
            ["--cp-pg-bindir=/nonexistent", "--cp-target=embedded-postgresql"],
            "initdb and pg_ctl and postgres not found",
        ),
    ],
)
@pytest.mark.timing  # refused within 15 s (alone: about 3 s; beside the parallel tests once 15.2 s)
def test_a_bad_profile_or_binary_folder_is_refused_before_collection(
    project: pytest.Pytester, args: list[str], says: str
) -> None:
    started = time.monotonic()
    result = project.runpytest("suites/bulk_load", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR and time.monotonic() - started < 15
    assert says in result.stderr.str() and "Traceback" not in result.stderr.str()
    assert not (project.path / "results").exists()


@pytest.mark.parametrize("server", ["pg_server", "mariadb_server"])
def test_server_digest_catches_changed_missing_and_duplicated_rows(
    server: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Positive control for the content check: the server-side digest sees each kind of damage."""
    target: Target = request.getfixturevalue(server)
    ds = ensure_dataset(settlement, 5000, 9, tmp_path)
    conn = target.connect()
    ddl_dir = shipped.DDL
    target.create_table(conn, ddl_dir, "settlement", "dig")
    target.bulk_load(conn, "dig", ds.columns, path=ds.path)
    assert target.digest(conn, "dig", ds.columns) == ds.digest
    with conn.cursor() as cur:
        cur.execute("UPDATE dig SET fund_paid = fund_paid + 0.01 WHERE settlement_id = 77")
        assert target.digest(conn, "dig", ds.columns) != ds.digest
        cur.execute("UPDATE dig SET fund_paid = fund_paid - 0.01 WHERE settlement_id = 77")
        assert target.digest(conn, "dig", ds.columns) == ds.digest
        cur.execute("DELETE FROM dig WHERE settlement_id = 4000")
        assert target.digest(conn, "dig", ds.columns).count == ds.rows - 1
        cur.execute("DROP TABLE dig")
    # duplicates: a table without a key holding one row twice
    target.create_table(conn, ddl_dir, "settlement", "dig")
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE dig2 AS SELECT * FROM dig")
    target.bulk_load(conn, "dig2", ds.columns, path=ds.path)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO dig2 SELECT * FROM dig2 WHERE settlement_id = 5")
    got = target.digest(conn, "dig2", ds.columns)
    assert got.count == ds.rows + 1 and got != ds.digest
    with conn.cursor() as cur:
        cur.execute("DROP TABLE dig2")
        cur.execute("DROP TABLE dig")
    conn.close()


def test_ini_key_sets_option_and_flag_wins(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nclauseproof_repeats = 7\nclauseproof_target = embedded-mariadb\n")
    pytester.makepyfile(test_x="def test_a(): pass\n")
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["clauseproof: run *; targets embedded-mariadb; scale 1; repeats 7; *"])
    result = pytester.runpytest("--cp-repeats=2")
    result.stdout.fnmatch_lines(["clauseproof: run *; targets embedded-mariadb; scale 1; repeats 2; *"])


def test_target_fixture_factory_in_a_users_conftest(project: pytest.Pytester) -> None:
    """A user builds one more target fixture in one line; it starts, works in its namespace and stops."""
    (project.path / "conftest.py").write_text(
        "from fixtures.targets import target_fixture\n"
        'pytest_plugins = ("fixtures.targets", "fixtures.backup")\n'
        'second_pg = target_fixture("embedded-postgresql")\n'
    )
    project.makepyfile(
        test_mine="""
        def test_uses_it(second_pg):
            with second_pg.connect() as conn, conn.cursor() as cur:
                cur.execute("SELECT current_schema()")
                assert cur.fetchone()[0] == second_pg.namespace
    """
    )
    result = project.runpytest("test_mine.py")
    result.assert_outcomes(passed=1)


def test_a_silent_server_or_the_wrong_protocol_fails_fast(
    project: pytest.Pytester, pg_server: EmbeddedPostgres
) -> None:
    """A port that accepts and never answers, and a mysql:// URL pointed at PostgreSQL: a configuration error
    within seconds (it used to hang forever, or take 61 s), naming what was checked."""
    silent = socket.create_server(("127.0.0.1", 0))
    held: list[object] = []
    threading.Thread(target=lambda: held.append(silent.accept()), daemon=True).start()
    try:
        for port in (silent.getsockname()[1], pg_server._ep().port):
            started = time.monotonic()
            result = project.runpytest("suites/bulk_load", f"--cp-target=mysql://root@127.0.0.1:{port}/")
            assert time.monotonic() - started < 20
            assert result.ret == pytest.ExitCode.USAGE_ERROR
            assert "sent no MySQL greeting within 5 s" in result.stdout.str() + result.stderr.str()
    finally:
        silent.close()


def test_an_unwritable_results_folder_stops_the_run_before_the_first_case(project: pytest.Pytester) -> None:
    blocker = project.path / "a-file"
    blocker.write_text("not a folder")
    started = time.monotonic()
    result = project.runpytest("suites/bulk_load", f"--cp-results={blocker / 'results'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and time.monotonic() - started < 15
    result.stderr.fnmatch_lines(["*results folder*cannot be written*Fix: make it writable, or point --cp-results*"])
    assert "passed" not in result.stdout.str()  # no case ran


def test_collect_only_writes_no_run(project: pytest.Pytester) -> None:
    result = project.runpytest("suites/bulk_load", "--collect-only", "-q")
    assert result.ret == 0
    assert not (project.path / "results").exists() or not any((project.path / "results").iterdir())


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk during the evidence write: the file is written whole or not at all, no temporary left behind."""
    from clauseproof.core import evidence

    target = tmp_path / "evidence.json"
    evidence.write_atomic(target, '{"complete": true}')

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evidence.os, "fsync", full)
    with pytest.raises(OSError):
        evidence.write_atomic(target, '{"complete": fals')
    assert json.loads(target.read_text()) == {"complete": True}
    assert [p.name for p in tmp_path.iterdir()] == ["evidence.json"]


def test_time_per_suite_is_summed_from_its_cases() -> None:
    from clauseproof.core.evidence import CaseRecord
    from clauseproof.run.session import suite_seconds

    cases = [
        CaseRecord("suites/backup/test_b.py::t[x]", [], None, duration_s=3.25),
        CaseRecord("suites/backup/test_b.py::u", [], None, duration_s=1.0),
        CaseRecord("suites/bulk_load/test_l.py::t", [], None, duration_s=2.0),
    ]
    assert suite_seconds(cases) == {"backup": 4.2, "bulk_load": 2.0}


def test_a_bundle_is_readable_by_the_runs_owner_only(tmp_path: Path) -> None:
    """The bundle's folder is 0700 and its files (evidence.json, and report.html through the same writer) 0600."""
    from clauseproof.core.evidence import write_bundle

    folder = write_bundle(tmp_path, "20990101-000000-abcd", {"clause_rows": []})
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / "evidence.json").stat().st_mode & 0o777 == 0o600


LOSSY = '''
from clauseproof.targets.base import Target

_load = Target.bulk_load


def _lossy(self, conn, table, columns, *, data=None, path=None):
    """The cheat of issue 30: a bulk load that loses a handful of rows in a million (here: 3 of each load)."""
    _load(self, conn, table, columns, data=data, path=path)
    with conn.cursor() as cur:
        cur.execute(f"DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} LIMIT 3)")


Target.bulk_load = _lossy
'''


def test_a_bulk_load_that_loses_rows_is_fail_and_moves_latest(project: pytest.Pytester) -> None:
    """A found difference is FAIL, not ERROR (an ERROR-only run did not move `latest`: it looked like no run)."""
    conftest = project.path / "conftest.py"
    conftest.write_text(conftest.read_text() + LOSSY)
    result, doc = _run_suite(project, "--cp-scale=0.001")
    assert result.ret == 1  # a clause FAILED
    rows = {r["id"]: r for r in doc["clause_rows"] if r["id"] in ("BZ-DB-4a", "BZ-DB-4b")}
    assert {r["verdict"] for r in rows.values()} == {"FAIL"}, rows
    assert all("result wrong" in r["reason"] and "content check after load 1" in r["reason"] for r in rows.values())
    assert (project.path / "results" / "latest" / "evidence.json").exists()
