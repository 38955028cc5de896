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
from clauseproof.core.i18n import Text, joined, msg
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
    mysql: Text | str
    seen: Text | str
    ok: bool | None  # True: as MySQL; False: differs; None: could not be shown (``seen`` says why)

    def evidence(self) -> dict[str, Any]:
        return {"probe": self.name, "mysql_answers": str(self.mysql), "target_answered": str(self.seen), "ok": self.ok}


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


def probe_greeting(g: Greeting | None, why: Text | str = "") -> Probe:
    mysql = msg("mysql_greeting")
    if g is None:
        return Probe("protocol greeting", mysql, why, None)
    bit = msg("bit_set" if g.capabilities & CLIENT_LONG_PASSWORD else "bit_clear")
    seen: Text | str = msg("seen_greeting", protocol=g.protocol, version=repr(g.version),
                           caps=f"0x{g.capabilities:08x}", bit=bit, plugin=repr(g.auth_plugin))  # fmt: skip
    differs: list[Text | str] = []
    if not g.capabilities & CLIENT_LONG_PASSWORD:
        differs.append(msg("seen_bit0_clear", ext=f"0x{g.mariadb_extended:08x}"))
    if g.version.startswith("5.5.5-"):
        differs.append(msg("seen_555_prefix"))
    if differs:
        seen = msg("seen_differs", seen=seen, differs=joined(differs))
    return Probe("protocol greeting", mysql, seen, not differs)


def probe_gtid(cur: Any) -> Probe:
    mysql = msg("mysql_gtid")
    mode, e1, m1 = _ask(cur, "SELECT @@global.gtid_mode")
    uuid, e2, m2 = _ask(cur, "SELECT @@global.server_uuid")
    if e1 in DENIED or e2 in DENIED:
        return Probe("GTIDs", mysql, msg("seen_not_allowed", error=m1 or m2), None)
    seen: Text | str = f"gtid_mode={mode if not e1 else m1}; server_uuid={uuid if not e2 else m2}"
    ok = (not e1 and str(mode) in ("OFF", "OFF_PERMISSIVE", "ON_PERMISSIVE", "ON")) and (
        not e2 and isinstance(uuid, str) and len(uuid) == 36 and uuid.count("-") == 4
    )
    if not ok:
        pos, e3, _ = _ask(cur, "SELECT @@global.gtid_current_pos")
        if not e3:
            seen = msg("seen_mariadb_gtid", seen=seen, pos=repr(pos))
    return Probe("GTIDs", mysql, seen, ok)


def probe_auth_plugins(cur: Any) -> Probe:
    mysql = msg("mysql_auth")
    try:
        cur.execute(
            "SELECT PLUGIN_NAME, PLUGIN_STATUS FROM information_schema.PLUGINS "
            "WHERE PLUGIN_TYPE = 'AUTHENTICATION' ORDER BY PLUGIN_NAME"
        )
        rows = cur.fetchall()
    except Exception as exc:
        return Probe("authentication plugins", mysql, msg("seen_not_listed", error=first_line(exc)), None)
    names = {str(n): str(s) for n, s in rows}
    seen = ", ".join(f"{n} {s}" for n, s in names.items()) or msg("seen_none_listed")
    return Probe("authentication plugins", mysql, seen, names.get("caching_sha2_password") == "ACTIVE")


def probe_dictionary(cur: Any) -> Probe:
    mysql = msg("mysql_dictionary")
    seen: list[Text | str] = []
    unshown: list[Text | str] = []
    ok = True
    for table in ("performance_schema.data_locks", "information_schema.INNODB_TABLES", "mysql.component"):
        _, err, said = _ask(cur, f"SELECT 1 FROM {table} LIMIT 1")
        if err in DENIED:
            unshown.append(f"{table}: {said}")
        elif err:
            ok = False
            seen.append(f"{table}: {said}")
        else:
            seen.append(msg("seen_exists", table=table))
    if unshown and ok:
        return Probe("data dictionary", mysql, joined(seen + unshown), None)
    return Probe("data dictionary", mysql, joined(seen + unshown), ok)


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
        v, err, said = _ask(cur, f"SELECT {expr}")
        got = said if err else ("NULL" if v is None else str(v.decode() if isinstance(v, bytes) else v))
        ok = ok and not err and got.replace("`", "") == answer.replace("`", "")  # quoting of names may vary
        seen.append(f"{expr.split('(')[0]}: {got}")
    return Probe("MySQL 8 functions", mysql, "; ".join(seen), ok)


def probe_sql_modes(cur: Any) -> Probe:
    mysql = msg("mysql_sql_modes")
    before, _, _ = _ask(cur, "SELECT @@SESSION.sql_mode")
    seen: list[Text | str] = []
    ok = True
    try:
        for mode in ("NO_AUTO_CREATE_USER", "ORACLE"):
            _, err, said = _ask(cur, f"SET SESSION sql_mode = '{mode}'")
            if err == 1231:
                seen.append(msg("seen_mode_refused", mode=mode))
            else:
                ok = False
                seen.append(msg("seen_mode_accepted", mode=mode) if not err else f"{mode}: {said}")
    finally:
        if before is not None:
            cur.execute("SET SESSION sql_mode = %s", (before,))
    return Probe("SQL modes", mysql, joined(seen), ok)


#: Features of MySQL's look-alikes that MySQL has not: (what, SQL).
LOOK_ALIKES = (
    ("MariaDB's Aria engine variable", "SELECT @@global.aria_block_size"),
    ("MariaDB's sequences", "SELECT NEXTVAL(mysql.clauseproof_no_such_sequence)"),
    ("TiDB's tidb_version()", "SELECT tidb_version()"),
    ("OceanBase's ob_query_timeout", "SELECT @@global.ob_query_timeout"),
)


def probe_look_alikes(cur: Any) -> Probe:
    # the features' names in the report's language: look_aria, look_sequences, look_tidb, look_oceanbase
    names = dict(zip((w for w, _ in LOOK_ALIKES), ("look_aria", "look_sequences", "look_tidb", "look_oceanbase"),
                     strict=True))  # fmt: skip
    mysql = msg("mysql_no_look_alikes", which=joined([msg(names[w]) for w, _ in LOOK_ALIKES]))
    present: list[Text | str] = []
    for what, sql in LOOK_ALIKES:
        v, err, said = _ask(cur, sql)
        # NEXTVAL of a missing sequence: MariaDB knows sequences (error 4091, unknown SEQUENCE); MySQL has no NEXTVAL
        # function (1305, or 1046 without a default database)
        if what == "MariaDB's sequences":
            if err in (4091, 1146):
                present.append(msg("look_present_said", what=msg(names[what]), said=said))
        elif not err:
            present.append(msg("look_present_value", what=msg(names[what]), value=str(v)))
    return Probe("no look-alike's features", mysql, joined(present) or msg("seen_none_present"), not present)


def probe_all(conn: Any, host: str, port: int, greeting: Callable[[str, int], Greeting] = read_greeting) -> list[Probe]:
    """Every probe against the target at ``host:port`` (the greeting) and through ``conn`` (the rest)."""
    try:
        first = probe_greeting(greeting(host, port))
    except GreetingError as exc:
        first = probe_greeting(None, msg("seen_greeting_unread", error=str(exc)))
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
        v, err, said = _ask(cur, "SELECT CONCAT(VERSION(), ' / ', @@version_comment)")
    return said if err else str(v)


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
    evidence.window(msg("win_engine_probes"))
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
