"""Targets: start and stop cleanly, reap crashed runs, touch only their namespace, fail clearly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from clauseproof.core import shipped
from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.base import check_reachable
from clauseproof.targets.host.folders import reap_stale
from clauseproof.targets.single.external import ExternalTarget, load_profile
from clauseproof.targets.single.mariadb import EmbeddedMariaDB
from clauseproof.targets.single.postgres import EmbeddedPostgres
from tests.fix_targets import our_folders, url_of


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.mark.parametrize("cls", [EmbeddedPostgres, EmbeddedMariaDB])
def test_embedded_start_stop_leaves_nothing(cls: type[EmbeddedPostgres] | type[EmbeddedMariaDB]) -> None:
    before = our_folders()
    t = cls("x", "clauseproof_t", None)
    t.start()
    assert t.folder is not None and t.endpoint is not None
    folder = t.folder
    pid_file = folder / ("data/postmaster.pid" if cls is EmbeddedPostgres else "mariadbd.pid")
    pid = int(pid_file.read_text().split()[0])
    conn = t.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone()[0] == 1
    conn.close()
    env = t.server_environment()
    assert "version" in env and env["settings"]
    t.stop()
    assert not folder.exists()
    assert not _alive(pid)
    assert our_folders() == before


def test_a_crashed_run_is_reaped(tmp_path: Path) -> None:
    t = EmbeddedPostgres("x", "clauseproof_t", None)
    t.start()
    assert t.folder is not None
    folder = t.folder
    pid = int((folder / "data/postmaster.pid").read_text().split()[0])
    dead = subprocess.Popen(["true"])
    dead.wait()
    (folder / "owner.json").write_text(json.dumps({"pid": dead.pid, "engine": "pg"}))  # owner is gone
    reaped = reap_stale()
    assert str(folder) in reaped
    assert not folder.exists()
    for _ in range(100):
        if not _alive(pid):
            break
        time.sleep(0.05)
    assert not _alive(pid)
    t.folder = None  # already gone


def test_missing_binaries_name_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(ClauseproofError) as exc:
        EmbeddedPostgres("x", "clauseproof_t", tmp_path).start()
    msg = str(exc.value)
    assert "initdb and pg_ctl and postgres not found" in msg and str(tmp_path) in msg
    assert "apt-get install postgresql" in msg and "--cp-pg-bindir" in msg
    with pytest.raises(ClauseproofError) as exc2:
        EmbeddedMariaDB("x", "clauseproof_t", tmp_path).start()
    assert "apt-get install mariadb-server" in str(exc2.value)


def test_unreachable_target_fails_fast_naming_host_and_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        t = ExternalTarget.from_url(f"postgresql://postgres@127.0.0.1:{port}/postgres", "clauseproof_x")
        started = time.monotonic()
        with pytest.raises(ClauseproofError) as exc:
            t.start()
        assert time.monotonic() - started < 5
    assert f"127.0.0.1:{port}" in str(exc.value) and "Fix:" in str(exc.value)


def test_external_target_touches_only_its_namespace(pg_server: EmbeddedPostgres) -> None:
    assert pg_server.endpoint is not None
    admin = pg_server.connect(in_namespace=False)
    with admin.cursor() as cur:
        cur.execute("CREATE SCHEMA IF NOT EXISTS vendor_data")
        cur.execute("CREATE TABLE IF NOT EXISTS vendor_data.keep_me (id int)")
    t = ExternalTarget.from_url(url_of(pg_server), "clauseproof_ext_test")
    t.start()
    conn = t.connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE settlement_x (id int)")  # lands in the harness's schema
        cur.execute("SELECT table_schema FROM information_schema.tables WHERE table_name = 'settlement_x'")
        assert cur.fetchone()[0] == "clauseproof_ext_test"
    conn.close()
    t.stop()
    with admin.cursor() as cur:
        cur.execute("SELECT nspname FROM pg_namespace WHERE nspname IN ('clauseproof_ext_test', 'vendor_data')")
        assert [r[0] for r in cur.fetchall()] == ["vendor_data"]
        cur.execute("SELECT count(*) FROM vendor_data.keep_me")
    admin.close()


def test_external_mysql_profile_with_password_from_environment(
    mariadb_server: EmbeddedMariaDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert mariadb_server.endpoint is not None
    ep = mariadb_server.endpoint
    admin = mariadb_server.connect(in_namespace=False)
    with admin.cursor() as cur:
        cur.execute("CREATE USER IF NOT EXISTS 'vendor'@'127.0.0.1' IDENTIFIED BY 's3cret-pw'")
        cur.execute("GRANT ALL ON `clauseproof\\_%`.* TO 'vendor'@'127.0.0.1'")
    profile = tmp_path / "vendor.toml"
    profile.write_text(
        f'[target]\nname = "vendor-x"\ndialect = "mysql"\nhost = "127.0.0.1"\nport = {ep.port}\n'
        'user = "vendor"\npassword_env = "VENDOR_PW"\n\n[server]\ncpu = "Kunpeng 920"\n'
    )
    with pytest.raises(ClauseproofError) as exc:
        ExternalTarget.from_profile(profile, "clauseproof_prof")
    assert "VENDOR_PW" in str(exc.value) and "not set" in str(exc.value)
    monkeypatch.setenv("VENDOR_PW", "s3cret-pw")
    t = ExternalTarget.from_profile(profile, "clauseproof_prof")
    t.start()
    described = json.dumps(t.describe())
    assert "s3cret-pw" not in described and "Kunpeng 920" in described
    t.stop()
    with admin.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE 'clauseproof_prof'")
        assert cur.fetchall() == ()
    admin.close()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '[target]\ndialect = "mysql"\nhost = "h"\nuser = "u"\nport = "3306"\n',
            ":5: [target] port: '3306' is not of type int",
        ),
        ('[target]\ndialect = "oracle"\nhost = "h"\nuser = "u"\n', ":2: [target] dialect: 'oracle' is not one of"),
        (
            '[target]\ndialect = "mysql"\nhost = "h"\nuser = "u"\npasword_env = "X"\n',
            ":5: [target] pasword_env: unknown key",
        ),
        ('[target]\ndialect = "mysql"\nuser = "u"\n', "missing key 'host'"),
        ('[targets]\nhost = "h"\n', ":1: [targets]: unknown section"),
        ('[target]\ndialect = "mysql"\nhost = h\n', "not valid TOML"),
    ],
)
def test_malformed_profile_names_key_and_line(tmp_path: Path, body: str, expected: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(body)
    with pytest.raises(ClauseproofError) as exc:
        load_profile(p)
    assert expected in str(exc.value)
    if "TOML" in expected:
        assert "line 3" in str(exc.value)


_T = '[target]\nname = "v"\ndialect = "postgresql"\nhost = "127.0.0.1"\nport = 5432\nuser = "u"\n'
_TWO = '[{name="a", host="h", port=1}, {name="b", host="h", port=2}]'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # a conversion would wrap the shell-quoted value in quotes of its own: {user!r} with $(...) runs it
        ('[commands]\nbackup = "tool --user {user!r}"\n', ":8: [commands] backup: {user!r} has a conversion"),
        ('[commands]\nbackup = "tool --user {user:>20}"\n', "{user:>20} has a conversion or format"),
        ('[commands]\nbackup = "tool {0}"\n', "{0} is not a placeholder"),
        ('[commands]\nbackup = "tool {host.x}"\n', "{host.x} is not a placeholder"),
        ('[commands]\nbackup = "tool {evil}"\n', "{evil} is not one of"),
        ('[commands]\nbackup = "tool \\"{host}\\""\n', "{host} inside quotes"),
        ('[commands]\nbackup = "tool {host"\n', "braces do not pair"),
        (f'[failover]\nnodes = {_TWO}\nkill_node = "k {{node!r}}"\n', "[failover] kill_node: {node!r}"),
        (f'[failover]\nnodes = {_TWO}\nkill_node = ["k"]\n', "[failover] kill_node: ['k'] is not of type str"),
        ('[failover]\nnodes = "x"\n', "[failover] nodes: 'x' is not of type list"),
        ('[sync]\nnodes = {a = 1}\n', "[sync] nodes: {'a': 1} is not of type list"),
        ('[gateway]\nbase_url = "http://127.0.0.1:1"\nlimits = {a = 1}\n', "[gateway] limits: {'a': 1} is not of"),
        ('[gateway]\nbase_url = "http://127.0.0.1:1"\n[[gateway.limits]]\nkind = "consumer"\npath = "/x"\n'
         'header = "A"\nrate = 5\nburst = 1\nconsumers = ["X"]\n', "consumers ['X'] is not a table of lists"),
        ('[gateway]\nbase_url = "http://127.0.0.1:1"\n[[gateway.limits]]\nkind = "consumer"\npath = "/x"\n'
         'header = "A"\nformat = "{0.__class__}"\nrate = 5\nburst = 1\nconsumers = {a = ["X"], b = ["Y"]}\n',
         "must hold exactly one bare {}"),
        ('[column_encryption]\nalgorithm = "SM4"\nwrite = "enc({value!r})"\nread = "dec({column})"\n'
         'column_type = "bytea"\n', "[column_encryption] write: {value!r} has a conversion"),
        ('[utilisation]\nnodes = [1, 2]\n', "[utilisation] nodes: 1 is not a node"),
    ],
)  # fmt: skip
def test_bad_templates_and_types_in_sections_are_refused_at_load(tmp_path: Path, body: str, expected: str) -> None:
    """Issue 31 (placeholders): only bare {name} placeholders in every template, and a value of the wrong type in
    any section is a sentence naming the file, line and key, never a traceback."""
    p = tmp_path / "bad.toml"
    p.write_text(_T + body)
    with pytest.raises(ClauseproofError) as exc:
        load_profile(p)
    assert expected in str(exc.value)


def test_a_filled_command_runs_no_substitution_a_value_carries() -> None:
    from clauseproof.core.commands import fill_command

    filled = fill_command("tool --user {user} --out {dir}", user="$(touch /tmp/cp-owned)", dir="a b; rm -rf ~")
    assert filled == "tool --user '$(touch /tmp/cp-owned)' --out 'a b; rm -rf ~'"
    with pytest.raises(ClauseproofError, match="has a conversion"):
        fill_command("tool --user {user!r}", user="$(id)")


def test_check_reachable_times_out_within_limit() -> None:
    started = time.monotonic()
    with pytest.raises(ClauseproofError):
        check_reachable("127.0.0.1", 1, "nothing", timeout=1)
    assert time.monotonic() - started < 5


def test_sigterm_to_a_run_stops_its_servers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_hang="""
        import time
        def test_hang(target):
            print("READY", flush=True)
            time.sleep(60)
    """
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-s",
            "-q",
            "-p",
            "no:cacheprovider",
            "--cp-target=embedded-postgresql",
            f"--cp-catalog={shipped.CATALOG}",
            "test_hang.py",
        ],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "READY" in line:
            break
    else:
        pytest.fail("".join(lines))
    folders = [ln.split()[-1] for ln in lines if "ready in" in ln]
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    import glob

    leftover = [
        f for f in glob.glob("/tmp/clauseproof-pg-*") if f'"pid": {proc.pid}' in Path(f, "owner.json").read_text()
    ]
    assert leftover == [], (folders, leftover)


def test_a_server_that_fails_to_start_leaves_nothing(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "mariadb-install-db").write_text("#!/bin/sh\nexit 0\n")
    (fake / "mariadbd").write_text("#!/bin/sh\necho 'cannot start: fake server' >&2\nexit 1\n")
    for f in fake.iterdir():
        f.chmod(0o755)
    before = our_folders()
    t = EmbeddedMariaDB("x", "clauseproof_t", fake)
    with pytest.raises(ClauseproofError) as exc:
        t.start()
    assert "mariadbd did not accept connections" in str(exc.value)
    assert our_folders() == before and t.proc is None


def test_a_password_in_a_target_url_is_masked_everywhere(
    project: pytest.Pytester, mariadb_server: EmbeddedMariaDB
) -> None:
    """An inline password reaches the server (the SM4 column case connects with it) and nothing the run
    writes or prints: evidence, report, terminal, command line, target labels."""
    secret = "Inline-s3cret-pw"
    with mariadb_server.connect(in_namespace=False) as admin, admin.cursor() as cur:
        cur.execute(f"CREATE USER IF NOT EXISTS 'inline'@'127.0.0.1' IDENTIFIED BY '{secret}'")
        cur.execute("GRANT ALL ON `clauseproof\\_%`.* TO 'inline'@'127.0.0.1'")
    ep = mariadb_server._ep()
    url = f"mysql://inline:{secret}@127.0.0.1:{ep.port}/"
    result = project.runpytest("suites/encryption/test_column_sm4.py", f"--cp-target={url}", "-k", "sm4_column")
    result.assert_outcomes(passed=1)
    results = project.path / "results" / "latest"
    for text in (result.stdout.str(), (results / "evidence.json").read_text(), (results / "report.html").read_text()):
        assert secret not in text
    doc = json.loads((results / "evidence.json").read_text())
    assert "inline:***@" in doc["command_line"] and doc["parameters"]["targets"] == [url.replace(secret, "***")]


@pytest.mark.parametrize("cls", [EmbeddedPostgres, EmbeddedMariaDB])
def test_servers_start_with_a_private_tmpdir(cls: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 32: with TMPDIR a private folder of the caller's (0700, as CI runners and careful users set), a server
    running as its own OS user could not enter its folder (initdb) or write its temp files (mariadbd)."""
    if os.geteuid() != 0:
        pytest.skip("only root hands the servers to their own users")
    private = tempfile.mkdtemp(prefix="cp-selftest-private-tmp-")  # 0700, root's
    monkeypatch.setenv("TMPDIR", private)
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile reads TMPDIR anew
    t = cls(f"selftest-private-tmp-{cls.__name__}", "clauseproof_tmp", None)
    try:
        t.start()
        assert t.folder is not None and not str(t.folder).startswith(private)
        with t.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    finally:
        t.stop()
        shutil.rmtree(private, ignore_errors=True)
