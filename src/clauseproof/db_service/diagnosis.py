"""SX-RDS-5: slow-query analysis, self-diagnosis and health status, judged by what the harness makes happen.

Slow queries: beside 20 fast statements, each tagged with a random marker, the harness runs one statement it makes
slow on purpose (it sleeps 1.5 times the service's threshold). The analysis must list exactly the slow one, with a
time that agrees with what the client saw, within the stated delay, and none of the fast ones.

Health: the status must be healthy before a fault, change and name the fault while it lasts, and recover after.
Two real faults: a held row lock (one session updates a row of the harness's table and waits; a second updates the
same row and blocks — seen to block, not assumed), and every connection the server allows taken. The status must
name the waiting session (its id) or the exhausted connections: a status that only says "unhealthy" is not a
diagnosis.

Cheats kept in the self-tests, judged FAIL: a slow log that lists every statement (threshold 0), one that lists
nothing, a status that always says healthy, one that always says unhealthy.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from clauseproof.core.errors import first_line
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import Text, msg
from clauseproof.targets.roles import Database, Diagnosis, Health

CLAUSE = "SX-RDS-5"
#: Fast statements run beside the slow one.
FAST = 20
#: How long the health status may take to show a fault, and to recover from it.
HEALTH_WAIT_S = 15.0
#: The blocked session is "seen to block" when it has not finished after this long.
BLOCKED_AFTER_S = 2.0
#: At most this many connections are opened to take every slot (a server allowing more is NOT SHOWN).
MAX_FILL = 400


def _sleep_sql(dialect: str, marker: str, seconds: float) -> str:
    if dialect == "postgresql":
        return f"SELECT '{marker}', pg_sleep({seconds:.3f})"
    return f"SELECT '{marker}', SLEEP({seconds:.3f})"


def check_slow_queries(target: Database, diag: Diagnosis, evidence: CaseEvidence, delay_s: float) -> None:
    tag = secrets.token_hex(6)
    slow_marker, fast_markers = f"cp-slow-{tag}", [f"cp-fast-{tag}-{i:02d}" for i in range(FAST)]
    threshold = diag.slow_query_start()
    sleep_s = 1.5 * threshold
    conn = target.connect()  # a new session: it sees the threshold just set
    try:
        with conn.cursor() as cur:
            for m in fast_markers[: FAST // 2]:
                cur.execute(f"SELECT '{m}'")
                cur.fetchall()
            t0 = time.perf_counter()
            cur.execute(_sleep_sql(target.dialect, slow_marker, sleep_s))
            cur.fetchall()
            client_s = time.perf_counter() - t0
            for m in fast_markers[FAST // 2 :]:
                cur.execute(f"SELECT '{m}'")
                cur.fetchall()
    finally:
        conn.close()
    listed: list[Any] = []
    t_end = time.monotonic()
    deadline = t_end + delay_s
    while True:
        listed = diag.slow_queries()
        found = [q for q in listed if slow_marker in q.text]
        if found or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    appeared_s = time.monotonic() - t_end
    fast_listed = sorted(m for m in fast_markers if any(m in q.text for q in listed))
    evidence.parameters(
        slow_threshold_s=threshold,
        slow_statement=_sleep_sql(target.dialect, slow_marker, sleep_s),
        slow_statement_client_s=round(client_s, 3),
        fast_statements=f"{FAST} x SELECT '<marker>' (markers cp-fast-{tag}-00 .. -{FAST - 1:02d})",
        listed_by_the_analysis=[{"text": q.text[:200], "seconds": round(q.seconds, 3)} for q in listed[:50]],
        listed_count=len(listed),
        report_delay_s=delay_s,
    )
    if not found:
        evidence.part(
            CLAUSE,
            False,
            statistic=msg("slow_listed", client=f"{client_s:.2f}", threshold=f"{threshold:g}", delay=f"{delay_s:g}"),
            why=msg("slow_not_listed", after=f"{appeared_s:.1f}", listed=len(listed), marker=slow_marker),
        )
    else:
        q = found[0]
        plausible = threshold <= q.seconds <= client_s + 0.25  # the server's time is within the client's
        evidence.part(
            CLAUSE,
            plausible,
            statistic=msg(
                "slow_listed_time",
                delay=f"{delay_s:g}",
                after=f"{appeared_s:.1f}",
                listed=f"{q.seconds:.3f}",
                client=f"{client_s:.3f}",
            ),
            why=msg(
                "slow_time_implausible", listed=f"{q.seconds:.3f}", threshold=f"{threshold:g}", client=f"{client_s:.3f}"
            ),
        )
    evidence.part(
        CLAUSE,
        not fast_listed,
        statistic=msg("fast_not_listed", fast=FAST),
        why=msg(
            "fast_listed",
            n=len(fast_listed),
            which=", ".join(fast_listed[:3]) + (" ..." if len(fast_listed) > 3 else ""),
        ),
    )


def _wait_health(diag: Diagnosis, want: Callable[[Health], bool], timeout: float) -> tuple[Health, float]:
    t0 = time.monotonic()
    while True:
        h = diag.health()
        if want(h) or time.monotonic() - t0 >= timeout:
            return h, time.monotonic() - t0
        time.sleep(0.5)


def _healthy_part(evidence: CaseEvidence, h: Health, when: Text) -> None:
    problems = "; ".join(h.problems) or msg("no_problem_named")
    evidence.part(
        CLAUSE,
        h.healthy and not h.problems,
        statistic=msg("health_when", when=when),
        why=msg("reports_healthy" if h.healthy else "reports_unhealthy", problems=problems),
    )


def check_health(
    target: Database, diag: Diagnosis, evidence: CaseEvidence, fill_allowed: str, wait_s: float = HEALTH_WAIT_S
) -> None:
    """The baseline, the two faults and the recoveries; ``fill_allowed`` is "" or why connections may not be taken;
    ``wait_s``: how long the status may take to show a fault and to recover."""
    before, _ = _wait_health(diag, lambda h: h.healthy, wait_s)
    _healthy_part(evidence, before, msg("before_any_fault"))
    log: dict[str, Any] = {"before": {"healthy": before.healthy, "problems": list(before.problems)}}
    _lock_fault(target, diag, evidence, log, wait_s)
    if fill_allowed:
        evidence.part(CLAUSE, None, statistic=msg("health_names_connections"), not_shown=fill_allowed)
    else:
        _connections_fault(target, diag, evidence, log, wait_s)
    evidence.parameters(health_status=log, health_wait_s=wait_s)


def _session_id(conn: Any, dialect: str) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()" if dialect == "postgresql" else "SELECT CONNECTION_ID()")
        return int(cur.fetchone()[0])


def _lock_fault(target: Database, diag: Diagnosis, evidence: CaseEvidence, log: dict[str, Any], wait_s: float) -> None:
    dialect = target.dialect
    holder, waiter = target.connect(), target.connect()
    done = threading.Event()
    outcome: list[str] = []
    try:
        with holder.cursor() as cur:
            cur.execute("CREATE TABLE cp_health_lock (id INT PRIMARY KEY, n INT)")
            cur.execute("INSERT INTO cp_health_lock VALUES (1, 0)")
            cur.execute("BEGIN")
            cur.execute("UPDATE cp_health_lock SET n = n + 1 WHERE id = 1")
        waiting_id = _session_id(waiter, dialect)
        with waiter.cursor() as cur:
            cur.execute("SET lock_timeout = '60s'" if dialect == "postgresql" else "SET innodb_lock_wait_timeout = 60")

        def blocked_update() -> None:
            try:
                with waiter.cursor() as c:
                    c.execute("UPDATE cp_health_lock SET n = n + 10 WHERE id = 1")
                outcome.append("done")
            except Exception as exc:
                outcome.append(first_line(exc))
            done.set()

        threading.Thread(target=blocked_update, daemon=True).start()
        blocked = not done.wait(BLOCKED_AFTER_S)
        if not blocked:
            not_blocked = msg("did_not_block", outcome=str(outcome))
            evidence.part(CLAUSE, None, statistic=msg("health_names_lock_wait"), not_shown=not_blocked)
            return
        names = re.compile(rf"\b{waiting_id}\b")

        def names_it(h: Health) -> bool:
            return not h.healthy and bool(names.search(" ".join(h.problems)))

        during, waited = _wait_health(diag, names_it, wait_s)
        log["lock_wait"] = {"waiting_session": waiting_id, "healthy": during.healthy, "problems": list(during.problems),
                            "seen_after_s": round(waited, 1)}  # fmt: skip
        named = names_it(during)
        evidence.part(
            CLAUSE,
            named,
            statistic=msg("health_lock_wait", session=waiting_id, blocked=f"{BLOCKED_AFTER_S:g}", wait=f"{wait_s:g}"),
            why=msg("stayed_healthy")
            if during.healthy
            else msg("did_not_name_session", problems="; ".join(during.problems)),
        )
    finally:
        with contextlib.suppress(Exception), holder.cursor() as cur:
            cur.execute("ROLLBACK")
        done.wait(10)
        with contextlib.suppress(Exception), holder.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS cp_health_lock")
        holder.close()
        waiter.close()
    after, waited = _wait_health(diag, lambda h: h.healthy, wait_s)
    log["after_lock_wait"] = {"healthy": after.healthy, "problems": list(after.problems), "after_s": round(waited, 1),
                              "blocked_update": outcome[0] if outcome else "still running"}  # fmt: skip
    _healthy_part(evidence, after, msg("after_lock_released", wait=f"{wait_s:g}"))


def _connections_fault(
    target: Database, diag: Diagnosis, evidence: CaseEvidence, log: dict[str, Any], wait_s: float
) -> None:
    diag.health()  # the status holds its connection before the slots are taken
    opened: list[Any] = []
    refused = ""
    try:
        for _ in range(MAX_FILL):
            try:
                opened.append(target.connect(in_namespace=False))
            except Exception as exc:
                refused = first_line(exc)
                break
        if not refused:
            more = msg("connections_all_accepted", n=MAX_FILL)
            evidence.part(CLAUSE, None, statistic=msg("health_names_connections"), not_shown=more)
            return

        def names_it(h: Health) -> bool:
            return not h.healthy and "connection" in " ".join(h.problems).lower()

        during, waited = _wait_health(diag, names_it, wait_s)
        log["connections_taken"] = {"opened": len(opened), "next_refused_with": refused, "healthy": during.healthy,
                                    "problems": list(during.problems), "seen_after_s": round(waited, 1)}  # fmt: skip
        named = names_it(during)
        evidence.part(
            CLAUSE,
            named,
            statistic=msg("health_connections", opened=len(opened), refused=refused[:80], wait=f"{wait_s:g}"),
            why=msg("stayed_healthy")
            if during.healthy
            else msg("did_not_name_connections", problems="; ".join(during.problems)),
        )
    finally:
        for c in opened:
            with contextlib.suppress(Exception):
                c.close()
    after, waited = _wait_health(diag, lambda h: h.healthy, wait_s)
    log["after_connections"] = {"healthy": after.healthy, "problems": list(after.problems),
                                "after_s": round(waited, 1)}  # fmt: skip
    _healthy_part(evidence, after, msg("after_connections_closed", wait=f"{wait_s:g}"))
