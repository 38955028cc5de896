"""SX-RDS-1 "supports the MySQL engine": the engine told by what it does, never by its version string.

Seven probes, each a behaviour MySQL 8.0 and later has and its look-alikes (MariaDB, TiDB, OceanBase's MySQL mode)
lack or answer differently: the protocol greeting (read off the socket before any login), GTIDs, the authentication
plugins, the data dictionary and performance schema, MySQL 8 functions, the SQL modes MySQL 8 refuses, and the
look-alikes' own variables and functions, which must be absent. Each probe is a part of the verdict: shown as MySQL,
differing (FAIL, naming what was seen), or not shown (the harness's user lacked a privilege, say).

The cheapest cheat is a fork or a proxy that says ``8.0.x`` in ``@@version`` (MariaDB's ``--version=8.0.36`` does
exactly that): the version string is recorded, never judged, and every probe below still tells it apart
(``tests/db_service/test_engine.py`` keeps that cheat, judged FAIL).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clauseproof.core.errors import NotApplicable, first_line
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import msg
from clauseproof.db_service.handshake import CLIENT_LONG_PASSWORD, Greeting, GreetingError, read_greeting
from clauseproof.targets.roles import Database

#: Error numbers that mean "you may not look" (the part is then not shown, never a difference).
DENIED = {1227, 1142, 1143, 1044, 1045, 1370}


#: the report's words for each probe (its English name is the key)
PROBE_NAMES = {
    "protocol greeting": "probe_greeting",
    "GTIDs": "probe_gtids",
    "authentication plugins": "probe_auth",
    "data dictionary": "probe_dictionary",
    "MySQL 8 functions": "probe_functions",
    "SQL modes": "probe_sql_modes",
    "no look-alike's features": "probe_lookalikes",
}


@dataclass(frozen=True)
class Probe:
    """One behaviour: what MySQL answers, what the target answered, and the verdict of the part."""

    name: str
    mysql: str
    seen: str
    ok: bool | None  # True: as MySQL; False: differs; None: could not be shown (``seen`` says why)

    def evidence(self) -> dict[str, Any]:
        return {"probe": self.name, "mysql_answers": self.mysql, "target_answered": self.seen, "ok": self.ok}


def _errno(exc: BaseException) -> int:
    args = getattr(exc, "args", ())
    return int(args[0]) if args and isinstance(args[0], int) else -1


def _ask(cur: Any, sql: str) -> tuple[Any, int, str]:
    """(first value, 0, "") or (None, error number, first line of the error)."""
    try:
        cur.execute(sql)
        row = cur.fetchone()
        return (row[0] if row else None), 0, ""
    except Exception as exc:  # the driver's error: its number is the answer
        args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
        text = f"error {args[0]}: {args[1]}" if len(args) == 2 and isinstance(args[0], int) else first_line(exc)
        return None, _errno(exc), text


def probe_greeting(g: Greeting | None, why: str = "") -> Probe:
    mysql = "protocol 10; capability bit 0 (CLIENT_LONG_PASSWORD) set; no MariaDB 5.5.5- prefix in the version"
    if g is None:
        return Probe("protocol greeting", mysql, why, None)
    seen = (
        f"protocol {g.protocol}; version {g.version!r}; capabilities 0x{g.capabilities:08x} (bit 0 "
        f"{'set' if g.capabilities & CLIENT_LONG_PASSWORD else 'clear'}); default auth plugin {g.auth_plugin!r}"
    )
    differs = []
    if not g.capabilities & CLIENT_LONG_PASSWORD:
        differs.append(f"capability bit 0 clear, MariaDB's extended capabilities 0x{g.mariadb_extended:08x} set")
    if g.version.startswith("5.5.5-"):
        differs.append("the version string carries MariaDB's 5.5.5- replication prefix")
    seen += "; differs: " + "; ".join(differs) if differs else ""
    return Probe("protocol greeting", mysql, seen, not differs)


def probe_gtid(cur: Any) -> Probe:
    mysql = "@@global.gtid_mode is OFF/OFF_PERMISSIVE/ON_PERMISSIVE/ON and @@global.server_uuid is a UUID"
    mode, e1, m1 = _ask(cur, "SELECT @@global.gtid_mode")
    uuid, e2, m2 = _ask(cur, "SELECT @@global.server_uuid")
    if e1 in DENIED or e2 in DENIED:
        return Probe("GTIDs", mysql, f"not allowed to read: {m1 or m2}", None)
    seen = f"gtid_mode={mode if not e1 else m1}; server_uuid={uuid if not e2 else m2}"
    ok = (not e1 and str(mode) in ("OFF", "OFF_PERMISSIVE", "ON_PERMISSIVE", "ON")) and (
        not e2 and isinstance(uuid, str) and len(uuid) == 36 and uuid.count("-") == 4
    )
    if not ok:
        pos, e3, _ = _ask(cur, "SELECT @@global.gtid_current_pos")
        if not e3:
            seen += f"; MariaDB's domain-server-sequence GTIDs instead (gtid_current_pos={pos!r})"
    return Probe("GTIDs", mysql, seen, ok)


def probe_auth_plugins(cur: Any) -> Probe:
    mysql = "caching_sha2_password ACTIVE (MySQL 8's built-in, always present)"
    try:
        cur.execute(
            "SELECT PLUGIN_NAME, PLUGIN_STATUS FROM information_schema.PLUGINS "
            "WHERE PLUGIN_TYPE = 'AUTHENTICATION' ORDER BY PLUGIN_NAME"
        )
        rows = cur.fetchall()
    except Exception as exc:
        return Probe("authentication plugins", mysql, f"could not be listed: {first_line(exc)}", None)
    names = {str(n): str(s) for n, s in rows}
    seen = ", ".join(f"{n} {s}" for n, s in names.items()) or "none listed"
    return Probe("authentication plugins", mysql, seen, names.get("caching_sha2_password") == "ACTIVE")


def probe_dictionary(cur: Any) -> Probe:
    mysql = "performance_schema.data_locks, information_schema.INNODB_TABLES and mysql.component exist"
    seen, ok, unshown = [], True, []
    for table in ("performance_schema.data_locks", "information_schema.INNODB_TABLES", "mysql.component"):
        _, err, msg = _ask(cur, f"SELECT 1 FROM {table} LIMIT 1")
        if err in DENIED:
            unshown.append(f"{table}: {msg}")
        elif err:
            ok = False
            seen.append(f"{table}: {msg}")
        else:
            seen.append(f"{table}: exists")
    if unshown and ok:
        return Probe("data dictionary", mysql, "; ".join(seen + unshown), None)
    return Probe("data dictionary", mysql, "; ".join(seen + unshown), ok)


#: (expression, MySQL 8's answer as text)
FUNCTIONS = (
    ("HEX(UUID_TO_BIN('6ccd780c-baba-1026-9564-5b8c656024db', 1))", "1026BABA6CCD780C95645B8C656024DB"),
    ("REGEXP_LIKE('clauseproof', '^CLAUSE', 'c')", "0"),
    ("STATEMENT_DIGEST_TEXT('SELECT a FROM t WHERE b = 42')", "SELECT `a` FROM `t` WHERE `b` = ?"),
)


def probe_functions(cur: Any) -> Probe:
    mysql = "; ".join(f"{e} = {a}" for e, a in FUNCTIONS)
    seen, ok = [], True
    for expr, answer in FUNCTIONS:
        v, err, msg = _ask(cur, f"SELECT {expr}")
        got = msg if err else ("NULL" if v is None else str(v.decode() if isinstance(v, bytes) else v))
        ok = ok and not err and got.replace("`", "") == answer.replace("`", "")  # quoting of names may vary
        seen.append(f"{expr.split('(')[0]}: {got}")
    return Probe("MySQL 8 functions", mysql, "; ".join(seen), ok)


def probe_sql_modes(cur: Any) -> Probe:
    mysql = "SET sql_mode='NO_AUTO_CREATE_USER' and SET sql_mode='ORACLE' both refused (error 1231)"
    before, _, _ = _ask(cur, "SELECT @@SESSION.sql_mode")
    seen, ok = [], True
    try:
        for mode in ("NO_AUTO_CREATE_USER", "ORACLE"):
            _, err, msg = _ask(cur, f"SET SESSION sql_mode = '{mode}'")
            if err == 1231:
                seen.append(f"{mode}: refused")
            else:
                ok = False
                seen.append(f"{mode}: {'accepted' if not err else msg}")
    finally:
        if before is not None:
            cur.execute("SET SESSION sql_mode = %s", (before,))
    return Probe("SQL modes", mysql, "; ".join(seen), ok)


#: Features of MySQL's look-alikes that MySQL has not: (what, SQL).
LOOK_ALIKES = (
    ("MariaDB's Aria engine variable", "SELECT @@global.aria_block_size"),
    ("MariaDB's sequences", "SELECT NEXTVAL(mysql.clauseproof_no_such_sequence)"),
    ("TiDB's tidb_version()", "SELECT tidb_version()"),
    ("OceanBase's ob_query_timeout", "SELECT @@global.ob_query_timeout"),
)


def probe_look_alikes(cur: Any) -> Probe:
    mysql = "none of: " + ", ".join(w for w, _ in LOOK_ALIKES)
    present = []
    for what, sql in LOOK_ALIKES:
        v, err, msg = _ask(cur, sql)
        # NEXTVAL of a missing sequence: MariaDB knows sequences (error 4091, unknown SEQUENCE); MySQL has no NEXTVAL
        # function (1305, or 1046 without a default database)
        if what == "MariaDB's sequences":
            if err in (4091, 1146):
                present.append(f"{what} ({msg})")
        elif not err:
            present.append(f"{what} (= {v})")
    return Probe("no look-alike's features", mysql, "; ".join(present) or "none present", not present)


def probe_all(conn: Any, host: str, port: int, greeting: Callable[[str, int], Greeting] = read_greeting) -> list[Probe]:
    """Every probe against the target at ``host:port`` (the greeting) and through ``conn`` (the rest)."""
    try:
        first = probe_greeting(greeting(host, port))
    except GreetingError as exc:
        first = probe_greeting(None, f"not read: {exc}")
    with conn.cursor() as cur:
        return [
            first,
            probe_gtid(cur),
            probe_auth_plugins(cur),
            probe_dictionary(cur),
            probe_functions(cur),
            probe_sql_modes(cur),
            probe_look_alikes(cur),
        ]


def version_claimed(conn: Any) -> str:
    """What the server says it is (recorded, never judged)."""
    with conn.cursor() as cur:
        v, err, msg = _ask(cur, "SELECT CONCAT(VERSION(), ' / ', @@version_comment)")
    return msg if err else str(v)


def check_mysql_engine(target: Database, evidence: CaseEvidence) -> list[Probe]:
    """SX-RDS-1 on ``target``: every probe a part of the verdict. A PostgreSQL-protocol target is not asked."""
    if target.dialect != "mysql":
        raise NotApplicable(
            f"SX-RDS-1 asks for the MySQL engine; {target.label} speaks PostgreSQL's protocol",
            fix="run the case against a MySQL-protocol target (embedded-mariadb, a mysql:// URL or profile)",
            text=msg("not_mysql_protocol", target=target.label),
        )
    ep = target.address()
    conn = target.connect(in_namespace=False)
    try:
        claimed = version_claimed(conn)
        probes = probe_all(conn, ep.host, ep.port)
    finally:
        conn.close()
    evidence.parameters(
        version_claimed=f"{claimed} (recorded, not judged: a version string is the cheapest thing to fake)",
        probes=[p.evidence() for p in probes],
        reference="MySQL 8.0 and later (Oracle's server and binary-compatible builds of it)",
    )
    evidence.window("no timed window: each probe is one statement or the protocol greeting")
    for p in probes:
        evidence.part(
            "SX-RDS-1",
            p.ok,
            statistic=msg(
                "mysql_answers", probe=msg(PROBE_NAMES[p.name]) if p.name in PROBE_NAMES else p.name, mysql=p.mysql
            ),
            why=msg("differs_from_mysql", seen=p.seen),
            not_shown=p.seen,
        )
    return probes
