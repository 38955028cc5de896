"""SX-RDS-1's probes: the embedded MariaDB told apart from MySQL, the cheat that says ``8.0.36`` in its version
string told apart too, and (no MySQL server is packaged for Debian 12) a recorded MySQL 8.0 transcript as the
positive control that the probes can pass."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pytest

from clauseproof.db_service.engine import probe_all, version_claimed
from clauseproof.db_service.handshake import GreetingError, parse_greeting
from clauseproof.targets.single.mariadb import EmbeddedMariaDB


def _mysql8_greeting() -> bytes:
    """A HandshakeV10 as MySQL 8.0.36 sends it (capabilities 0xdfffffff, caching_sha2_password)."""
    return (
        b"\x0a8.0.36\0"
        + struct.pack("<I", 9)
        + b"abcdefgh\0"
        + struct.pack("<H", 0xFFFF)
        + b"\xff"
        + struct.pack("<H", 2)
        + struct.pack("<H", 0xDFFF)
        + b"\x15"
        + b"\0" * 10
        + b"ijklmnopqrst\0"
        + b"caching_sha2_password\0"
    )


#: What MySQL 8.0.36 answers to each probe (from its documentation and a session on it); an error as (number, text).
MYSQL8: dict[str, Any] = {
    "SELECT @@global.gtid_mode": "OFF",
    "SELECT @@global.server_uuid": "3e11fa47-71ca-11e1-9e33-c80aa9429562",
    "SELECT @@global.gtid_current_pos": (1193, "Unknown system variable 'gtid_current_pos'"),
    "PLUGINS": [("caching_sha2_password", "ACTIVE"), ("mysql_native_password", "ACTIVE")],
    "SELECT 1 FROM performance_schema.data_locks LIMIT 1": None,
    "SELECT 1 FROM information_schema.INNODB_TABLES LIMIT 1": 1,
    "SELECT 1 FROM mysql.component LIMIT 1": 1,
    "SELECT HEX(UUID_TO_BIN('6ccd780c-baba-1026-9564-5b8c656024db', 1))": "1026BABA6CCD780C95645B8C656024DB",
    "SELECT REGEXP_LIKE('clauseproof', '^CLAUSE', 'c')": 0,
    "SELECT STATEMENT_DIGEST_TEXT('SELECT a FROM t WHERE b = 42')": "SELECT `a` FROM `t` WHERE `b` = ?",
    "SELECT @@SESSION.sql_mode": "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES",
    "SET SESSION sql_mode = 'NO_AUTO_CREATE_USER'": (1231, "Variable 'sql_mode' can't be set to the value"),
    "SET SESSION sql_mode = 'ORACLE'": (1231, "Variable 'sql_mode' can't be set to the value of 'ORACLE'"),
    "SET SESSION sql_mode = %s": None,
    "SELECT @@global.aria_block_size": (1193, "Unknown system variable 'aria_block_size'"),
    "SELECT NEXTVAL(mysql.clauseproof_no_such_sequence)": (1305, "FUNCTION mysql.NEXTVAL does not exist"),
    "SELECT tidb_version()": (1305, "FUNCTION tidb_version does not exist"),
    "SELECT @@global.ob_query_timeout": (1193, "Unknown system variable 'ob_query_timeout'"),
    "SELECT CONCAT(VERSION(), ' / ', @@version_comment)": "8.0.36 / MySQL Community Server - GPL",
}


class DriverError(Exception):
    pass


class Transcript:
    """A DB-API connection that answers from a recorded transcript (an unknown statement is a test error)."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.last: Any = None

    def cursor(self) -> Transcript:
        return self

    def __enter__(self) -> Transcript:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, sql: str, params: Any = None) -> None:
        key = "PLUGINS" if "information_schema.PLUGINS" in sql else sql
        answer = self.answers[key]
        if isinstance(answer, tuple):
            raise DriverError(*answer)
        self.last = answer

    def fetchone(self) -> Any:
        return None if self.last is None else (self.last,)

    def fetchall(self) -> Any:
        return self.last


def test_a_recorded_mysql8_passes_every_probe() -> None:
    """The positive control: the probes can pass."""
    g = parse_greeting(_mysql8_greeting())
    assert g.version == "8.0.36" and g.auth_plugin == "caching_sha2_password" and g.mariadb_extended == 0
    probes = probe_all(Transcript(MYSQL8), "127.0.0.1", 0, greeting=lambda h, p: g)
    assert [(p.name, p.ok) for p in probes if p.ok is not True] == []
    assert version_claimed(Transcript(MYSQL8)).startswith("8.0.36")


def test_a_privilege_error_is_not_shown_never_a_difference() -> None:
    answers = {**MYSQL8, "SELECT 1 FROM information_schema.INNODB_TABLES LIMIT 1": (1227, "Access denied; PROCESS")}
    probes = {p.name: p for p in probe_all(Transcript(answers), "h", 0, greeting=lambda h, p: parse_greeting(
        _mysql8_greeting()))}  # fmt: skip
    assert probes["data dictionary"].ok is None and "Access denied" in probes["data dictionary"].seen


def test_a_garbled_greeting_is_a_clear_error() -> None:
    with pytest.raises(GreetingError, match="protocol version 9"):
        parse_greeting(b"\x09" + b"x" * 40)
    with pytest.raises(GreetingError, match="truncated"):
        parse_greeting(_mysql8_greeting()[:12])


def _probes(server: EmbeddedMariaDB) -> tuple[str, dict[str, Any]]:
    conn = server.connect(in_namespace=False)
    try:
        ep = server.address()
        return version_claimed(conn), {p.name: p for p in probe_all(conn, ep.host, ep.port)}
    finally:
        conn.close()


def test_mariadb_is_told_apart_from_mysql(mariadb_server: EmbeddedMariaDB) -> None:
    """The negative control: the embedded MariaDB differs in every probe, and each says what it saw."""
    claimed, probes = _probes(mariadb_server)
    assert "MariaDB" in claimed
    assert {n: p.ok for n, p in probes.items()} == dict.fromkeys(probes, False)
    assert "capability bit 0 clear" in probes["protocol greeting"].seen
    assert "Aria" in probes["no look-alike's features"].seen and "SEQUENCE" in probes["no look-alike's features"].seen


@pytest.fixture(scope="module")
def mariadb_claiming_mysql() -> Iterator[EmbeddedMariaDB]:
    """The cheapest cheat: a fork that says 8.0.36 in its version string (MariaDB's own --version=8.0.36)."""
    t = EmbeddedMariaDB("selftest-mariadb-as-mysql", "clauseproof_selftest_fake", None, settings={"version": "8.0.36"})
    t.start()
    yield t
    t.stop()


def test_a_fork_claiming_mysql_8_is_still_told_apart(mariadb_claiming_mysql: EmbeddedMariaDB) -> None:
    claimed, probes = _probes(mariadb_claiming_mysql)
    assert claimed.startswith("8.0.36")  # the claim is there ...
    assert [n for n, p in probes.items() if p.ok is not False] == []  # ... and no probe believes it
    assert "'8.0.36'" in probes["protocol greeting"].seen
