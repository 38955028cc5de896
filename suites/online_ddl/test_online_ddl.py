"""SX-RDS-6 ▲: online schema change and data change without locking, under concurrent write load.

The OLTP workload runs in the background (Locust, closed loop, separate processes) while the
case changes the settlement table: add a column, add an index (``CREATE INDEX CONCURRENTLY`` /
``ALGORITHM=INPLACE, LOCK=NONE``), update every pre-loaded row in committed batches.  Each step
is a window; against a baseline window without DDL the case reports the largest gap between
successive write commits, p99 and max write latency, and errors.  Afterwards: the pre-loaded
rows' original columns are unchanged (content digest), no invalid index is left, the fund's
total is conserved.  The adversarial step, an idle transaction holding the table open, is
reported (with the DDL session's lock timeout), not judged.  A lock-free algorithm the engine
cannot honour must be refused with an error, never silently run heavier.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from clauseproof.core.catalog import Catalog
from clauseproof.core.errors import first_line
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import Text, joined, msg
from clauseproof.load.background import BackgroundLoad
from clauseproof.online_ddl import checks
from clauseproof.targets.base import Target
from clauseproof.workloads import oltp

#: Each change's window runs on this long after the statement returns, so that writes it held up
#: complete (and are counted) inside it.
TAIL_S = 1.0


@pytest.mark.clause("SX-RDS-6")
def test_online_schema_and_data_change(target: Target, evidence: CaseEvidence, clause_catalog: Catalog) -> None:
    p = clause_catalog["SX-RDS-6"].params
    n = max(10_000, int(p["settlements"] * min(evidence.scale, 1.0)))
    s, dialect = target.namespace, target.dialect
    conn = target.connect()
    try:
        oltp.populate(conn, dialect, s, settlements=n)  # untimed set-up
        before = checks.original_digest(conn, target, s, n)
        fund_before = oltp.fund_total(conn, s)
        evidence.parameters(
            preloaded_rows=n,
            users=p["users"],
            load="closed loop, weights settle=4,lookup=10,transfer=2,report=1 (settle and transfer write)",
            stall_limit_s=p["stall_limit_s"],
            batch_rows=p["batch_rows"],
            lock_timeout_s=p["lock_timeout_s"],
        )
        evidence.window(msg("win_online_ddl", tail=f"{TAIL_S:g}"))
        load = BackgroundLoad(target, s, users=int(p["users"]), processes=2)
        evidence.progress(f"SX-RDS-6 on {target.label}: background load of {p['users']} users ...")
        load.start()
        step_log: list[dict[str, Any]] = []
        try:
            time.sleep(2)  # warm-up, not judged
            with load.window("baseline (no DDL)"):
                time.sleep(float(p["baseline_s"]))
            with conn.cursor() as cur:
                for label, stmts in checks.steps(dialect, s):
                    with load.window(label):
                        t0 = time.perf_counter()
                        for stmt in stmts:
                            cur.execute(stmt)
                        step_log.append({"step": label, "sql": stmts, "seconds": round(time.perf_counter() - t0, 3)})
                        time.sleep(TAIL_S)  # writes queued behind the DDL finish inside its window
                with load.window("batched update"):
                    t0 = time.perf_counter()
                    batch = int(p["batch_rows"])
                    reported = 0
                    for lo in range(1, n + 1, batch):
                        cur.execute(
                            f"UPDATE {s}.oltp_settlement SET note = 'checked' "
                            f"WHERE settlement_id BETWEEN {lo} AND {lo + batch - 1}"
                        )
                        reported += max(cur.rowcount, 0)
                    step_log.append(
                        {
                            "step": "batched update",
                            "rows": n,
                            "rows_the_server_reported_updated": reported,
                            "batch": batch,
                            "seconds": round(time.perf_counter() - t0, 3),
                        }
                    )
                    time.sleep(TAIL_S)
            time.sleep(1)
            adversarial = _adversarial(target, conn, s, float(p["lock_timeout_s"]), load)
            with load.window("after"):
                time.sleep(2)
        finally:
            result = load.stop()
        after = checks.original_digest(conn, target, s, n)
        invalid = checks.invalid_indexes(conn, target, s)
        not_made = checks.changes_missing(conn, target, s, n)
        fund_after = oltp.fund_total(conn, s)
        algorithm_ok, refused = checks.refused_algorithm(conn, target, s)
    finally:
        conn.close()

    stats = {w.label: result.window_stats(w) for w in result.windows}
    evidence.imposed(sum(st["seconds"] for st in stats.values()), "the changes under load, each in its window")
    baseline = stats["baseline (no DDL)"]
    judged = [w for w in stats if w not in ("baseline (no DDL)", "after") and not w.startswith("adversarial")]
    errors = result.errors()
    adversarial["stats"] = stats[adversarial["window"]]
    worst_gap = max((stats[w]["max_commit_gap_s"] or 0.0) for w in judged)
    evidence.parameters(
        steps=step_log,
        windows=list(stats.values()),
        adversarial=adversarial,
        content_digest={"before": before, "after": after, "equal": before == after},
        invalid_indexes=invalid,
        changes_not_made=not_made,
        fund_total={"before": fund_before, "after": fund_after},
        algorithm_check=refused,
        load_errors=errors[:50],
        load_client=result.client(),
        load_series=result.series(),
    )
    problems: list[Text | str] = []
    if errors:
        problems.append(msg("ddl_request_errors", n=len(errors), first=str(errors[0])))
    if worst_gap > float(p["stall_limit_s"]):
        stalled = [w for w in judged if (stats[w]["max_commit_gap_s"] or 0) > float(p["stall_limit_s"])]
        problems.append(msg("ddl_stalled", gap=f"{worst_gap:.2f}", limit=p["stall_limit_s"], during=", ".join(stalled)))
    if before != after:
        problems.append(msg("ddl_rows_changed", before=str(before), after=str(after)))
    if invalid:
        problems.append(msg("ddl_invalid_indexes", indexes=str(invalid)))
    if abs(fund_after - fund_before) > 0.005:
        problems.append(msg("ddl_fund_changed", before=fund_before, after=fund_after))
    if not algorithm_ok:
        problems.append(refused)
    # a window's name: the catalog's words for the baseline, the DDL step's own label (add column, add index)
    summary = joined([
        msg("ddl_window", window=msg("ddl_baseline") if w == "baseline (no DDL)" else w,
            gap=stats[w]["max_commit_gap_s"], p99=stats[w]["write_p99_ms"], max=stats[w]["write_max_ms"])
        for w in ["baseline (no DDL)", *judged]
    ])  # fmt: skip
    evidence.measure(
        "SX-RDS-6",
        not problems,
        "bool",
        statistic=msg("part_online_ddl", users=p["users"], summary=summary, gap=baseline["max_commit_gap_s"]),
        why=joined(problems),
        wrong="; ".join(not_made),  # a change acknowledged but not made is wrong at any scale
    )
    evidence.note(
        msg(
            "note_adversarial",
            what=adversarial["what"],
            outcome=adversarial["outcome"],
            gap=adversarial["stats"]["max_commit_gap_s"],
            max=adversarial["stats"]["write_max_ms"],
        )
    )
    evidence.note(msg("note_algorithm_check", refused=refused))  # fmt: skip
    evidence.require_pass()


def _adversarial(target: Target, conn: Any, s: str, lock_timeout: float, load: BackgroundLoad) -> dict[str, Any]:
    """An idle transaction holds the table open while a DDL needs an exclusive lock (bounded by a lock timeout)."""
    idle = target.connect()
    what = msg("adversarial_idle_transaction")
    try:
        with idle.cursor() as icur:
            icur.execute("BEGIN" if target.dialect == "postgresql" else "START TRANSACTION")
            icur.execute(f"SELECT count(*) FROM {s}.oltp_settlement WHERE settlement_id = 1")
            icur.fetchall()
            with conn.cursor() as cur:
                if target.dialect == "postgresql":
                    cur.execute(f"SET lock_timeout = '{int(lock_timeout * 1000)}ms'")
                else:
                    cur.execute(f"SET SESSION lock_wait_timeout = {max(1, int(lock_timeout))}")
                label = f"adversarial: ADD COLUMN behind an idle transaction (lock timeout {lock_timeout:g} s)"
                with load.window(label) as w:
                    t0 = time.perf_counter()
                    try:
                        cur.execute(f"ALTER TABLE {s}.oltp_settlement ADD COLUMN note2 varchar(40)")
                        outcome = msg("ddl_completed_in", seconds=f"{time.perf_counter() - t0:.2f}")
                    except Exception as exc:
                        outcome = msg(
                            "ddl_failed_after", seconds=f"{time.perf_counter() - t0:.2f}", error=first_line(exc)
                        )
                    time.sleep(0.5)
                if target.dialect == "postgresql":
                    cur.execute("RESET lock_timeout")
            icur.execute("ROLLBACK")
    finally:
        idle.close()
    return {"what": what, "outcome": outcome, "window": w.label}
