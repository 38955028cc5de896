"""An interrupted or killed run leaves nothing on an external target: statements it sent are stopped before its
objects are dropped, and `clauseproof cleanup` drops what a SIGKILLed run left, by its run id only."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from clauseproof.targets.base import drop_run_objects
from clauseproof.targets.single.mariadb import EmbeddedMariaDB
from clauseproof.targets.single.postgres import EmbeddedPostgres
from tests.fix_targets import signals_as_in_a_terminal, vendor_profile


def _ours(pg_server: EmbeddedPostgres) -> list[str]:
    with pg_server.connect(in_namespace=False) as conn, conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'clauseproof_2%'")
        return sorted(r[0] for r in cur.fetchall())


def _start_backup_run(
    project: pytest.Pytester, server: EmbeddedPostgres | EmbeddedMariaDB
) -> tuple[subprocess.Popen[bytes], str]:
    """A backup run against the server as an external target, stopped while it builds its data set."""
    profile = vendor_profile(project.path / "vendor.toml", server)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "suites/backup", f"--cp-target={profile}", "--cp-scale=0.3", "-k", "logical"],
        cwd=project.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=signals_as_in_a_terminal,
    )
    seen = b""
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while b"MiB so far" not in seen:  # the data set is being built, a statement is running on the server
        assert time.monotonic() < deadline and proc.poll() is None, seen[-1500:]
        if select.select([proc.stdout], [], [], 1)[0]:
            seen += os.read(proc.stdout.fileno(), 65536)
    run = re.search(rb"clauseproof: run ([0-9]{8}-[0-9]{6}-[0-9a-f]{4})", seen)
    assert run, seen[:1500]
    return proc, run.group(1).decode()


def _ours_mysql(server: EmbeddedMariaDB) -> list[str]:
    with server.connect(in_namespace=False) as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE 'clauseproof\\_2%'")
        return sorted(r[0] for r in cur.fetchall())


@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_ctrl_c_during_the_data_build_leaves_nothing(project: pytest.Pytester, engine: str, request: Any) -> None:
    """Ctrl-C while the backup suite builds its data set on an external server: nothing of the run is left
    there once the run has exited (issue 32 found the MariaDB data set's database left behind)."""
    server = request.getfixturevalue("pg_server" if engine == "postgresql" else "mariadb_server")
    proc, _ = _start_backup_run(project, server)
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == pytest.ExitCode.INTERRUPTED
    assert (_ours(server) if engine == "postgresql" else _ours_mysql(server)) == []


def test_cleanup_drops_what_a_killed_run_left(project: pytest.Pytester, pg_server: EmbeddedPostgres) -> None:
    proc, run = _start_backup_run(project, pg_server)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _ours(pg_server) == [f"clauseproof_{run.replace('-', '_')}_data"]  # left by the killed run
    cli = [sys.executable, "-m", "clauseproof.cli", "cleanup", "--target", str(project.path / "vendor.toml")]
    done = subprocess.run([*cli, "--run", run], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert _ours(pg_server) == []
    with pg_server.connect(in_namespace=False) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'clauseproof_2%'")
        assert cur.fetchone()[0] == 0  # the statement it had sent was stopped too
    bad = subprocess.run([*cli, "--run", "postgres"], capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "is not a run id" in bad.stderr


def test_a_running_statement_of_the_run_is_stopped_before_its_database_is_dropped(
    mariadb_server: EmbeddedMariaDB,
) -> None:
    """The MySQL family: a statement still running in the run's database (a SLEEP standing in for a long INSERT)
    is killed, then the database dropped; a session elsewhere is left alone."""
    ns = "clauseproof_20990101_000000_abcd"
    with mariadb_server.connect(in_namespace=False) as admin, admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {ns}_data")
    busy = mariadb_server.connect_database(f"{ns}_data")
    other = mariadb_server.connect(in_namespace=False)
    errors: list[BaseException] = []

    def sleep() -> None:
        try:
            with busy.cursor() as c:
                c.execute("SELECT SLEEP(60)")
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=sleep)
    t.start()
    time.sleep(0.5)
    started = time.monotonic()
    with mariadb_server.connect(in_namespace=False) as conn:
        dropped = drop_run_objects(conn, "mysql", ns)
    t.join(timeout=10)
    assert not t.is_alive() and time.monotonic() - started < 10
    assert f"{ns}_data" in dropped and errors  # the sleeping session was killed
    with other.cursor() as cur:  # not the run's: untouched
        cur.execute("SELECT 1")
        cur.execute("SHOW DATABASES LIKE 'clauseproof_2099%'")
        assert cur.fetchall() == ()
    other.close()
