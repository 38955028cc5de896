"""Embedded servers let no one else in: another local user gets no superuser, over TCP or the socket, and
the per-instance password reaches the cases but nothing the run writes (issue 13, item 1)."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import pytest

from clauseproof.targets.single.mariadb import EmbeddedMariaDB
from clauseproof.targets.single.postgres import EmbeddedPostgres

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="another local user is played by 'nobody', which needs root")


def _as_nobody(args: list[str]) -> subprocess.CompletedProcess[str]:
    """A client run by another local user (``nobody``), with a clean environment and a 10 s bound."""
    return subprocess.run(
        args,
        user="nobody",
        group="nogroup",
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
        cwd="/",
    )


def _tcp_logins(args: list[str], server: EmbeddedPostgres | EmbeddedMariaDB, refused: str, wrong_refused: str) -> None:
    """The client ``args`` over TCP: refused with no password and with a wrong one, let in with the instance's."""
    variable = "PGPASSWORD" if server.dialect == "postgresql" else "MYSQL_PWD"
    for env, expected in (({}, refused), ({variable: "guess"}, wrong_refused)):
        got = subprocess.run(args, capture_output=True, text=True, timeout=10, env={"PATH": os.environ["PATH"], **env})
        assert got.returncode != 0 and expected in got.stderr, got.stderr
    env = {**os.environ, **(server._ep().client_env(server.dialect) or {})}
    right = subprocess.run(args, capture_output=True, text=True, timeout=10, env=env)
    assert right.returncode == 0, right.stderr


def test_postgresql_refuses_tcp_without_the_password(pg_server: EmbeddedPostgres) -> None:
    """The cheapest way in (initdb -A trust, as before): psql over TCP with no password; and a wrong one."""
    ep = pg_server._ep()
    args = ["psql", "-w", "-h", ep.host, "-p", str(ep.port), "-U", "postgres", "-d", "postgres", "-c", "SELECT 1"]
    _tcp_logins(args, pg_server, "no password supplied", "password authentication failed")


@ROOT_ONLY
def test_postgresql_socket_and_copy_to_program_are_closed_to_other_users(pg_server: EmbeddedPostgres) -> None:
    """Another local user can reach neither the socket (0700 folder) nor TCP, so no ``COPY … TO PROGRAM``."""
    assert pg_server.folder is not None
    assert pg_server.folder.stat().st_mode & 0o077 == 0
    port = str(pg_server.port)
    evil = "COPY (SELECT 1) TO PROGRAM 'touch /tmp/clauseproof-pwned'"
    for host in (str(pg_server.folder), "127.0.0.1"):
        got = _as_nobody(["psql", "-w", "-h", host, "-p", port, "-U", "postgres", "-d", "postgres", "-c", evil])
        assert got.returncode != 0, got.stdout
        assert "Permission denied" in got.stderr or "no password supplied" in got.stderr, got.stderr
    assert not Path("/tmp/clauseproof-pwned").exists()


def test_mariadb_refuses_tcp_without_the_password(mariadb_server: EmbeddedMariaDB) -> None:
    """Root over TCP without a password (as before), or with a wrong one; and no root account but two."""
    ep = mariadb_server._ep()
    args = ["mariadb", "--no-defaults", "-h", ep.host, "-P", str(ep.port), "-u", "root", "-e", "SELECT 1"]
    _tcp_logins(args, mariadb_server, "Access denied", "Access denied")
    with mariadb_server.connect(in_namespace=False) as conn, conn.cursor() as cur:
        cur.execute("SELECT User, Host FROM mysql.user WHERE User = 'root' ORDER BY Host")
        assert cur.fetchall() == (("root", "127.0.0.1"), ("root", "localhost"))  # no ::1, no host name, no anonymous


@ROOT_ONLY
def test_mariadbd_does_not_run_as_root_and_its_socket_is_closed(mariadb_server: EmbeddedMariaDB) -> None:
    """``SELECT … INTO OUTFILE`` wrote root-owned files when mariadbd ran as root: now it runs as mysql, and
    another local user cannot reach its socket."""
    assert mariadb_server.proc is not None and mariadb_server.folder is not None
    uids = Path(f"/proc/{mariadb_server.proc.pid}/status").read_text().split("Uid:")[1].split()[:4]
    assert set(uids) == {str(pwd.getpwnam("mysql").pw_uid)}  # real, effective, saved and file-system uid
    assert mariadb_server.folder.stat().st_mode & 0o077 == 0
    out = Path("/tmp") / f"clauseproof-outfile-{os.getpid()}"
    try:
        with mariadb_server.connect(in_namespace=False) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 INTO OUTFILE %s", (str(out),))
        assert out.stat().st_uid != 0
    finally:
        out.unlink(missing_ok=True)
    got = _as_nobody(["mariadb", "--no-defaults", f"--socket={mariadb_server.socket_path}", "-u", "root", "-e", "1"])
    assert got.returncode != 0 and ("Permission denied" in got.stderr or "Can't connect" in got.stderr), got.stderr


@pytest.mark.parametrize("name", ["embedded-postgresql", "embedded-mariadb"])
def test_the_instance_password_reaches_cases_but_not_results(project: pytest.Pytester, name: str) -> None:
    """The SM4 column case connects with the endpoint's password; no file the run writes and nothing it
    prints holds it."""
    marker = "Pw-marker-0123456789abcdef"
    conftest = project.path / "conftest.py"  # the inner run is a subprocess: the password is fixed in it
    conftest.write_text(
        conftest.read_text()
        + "\nfrom clauseproof.core import masking\n\n\n"
        + "def _fixed(nbytes=24, prefix=''):\n"
        + f"    masking.remember(prefix + {marker!r})\n"
        + f"    return prefix + {marker!r}\n\n\n"
        + "masking.new_secret = _fixed\n"
    )
    result = project.runpytest("suites/encryption/test_column_sm4.py", f"--cp-target={name}", "-k", "sm4_column")
    result.assert_outcomes(passed=1)
    results = project.path / "results"
    assert marker not in result.stdout.str() + result.stderr.str()
    for f in results.rglob("*"):
        if f.is_file():
            assert marker.encode() not in f.read_bytes(), f
