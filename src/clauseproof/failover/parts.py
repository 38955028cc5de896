"""The parts of BZ-DB-1 and SX-RDS-3 judged from the failover trials (see :mod:`clauseproof.failover.plan`)."""

from __future__ import annotations

import math
from typing import Any

from clauseproof.core.evidence import CaseEvidence, client_cost
from clauseproof.core.i18n import Text, joined, msg
from clauseproof.failover.trial import ScaleResult, TrialResult
from clauseproof.targets.roles import HACluster, N

#: the acceptance plan's defaults (the tender states none); a profile's [failover] may set its own
DEFAULTS = {
    "trials": 5.0,
    "rto_s": 30.0,
    "read_gap_s": 1.0,  # "uninterrupted service" for reads on the surviving nodes
    "freeze_s": 40.0,  # longer than the failure detection (the embedded cluster: its TTL + 2 s)
}
DECLARED = msg("declared_by_plan")
FAULTS = ("kill", "freeze", "isolate", "switchover")
SCALE_TRIALS = 2  # each adds a node and removes another: the cluster keeps its size
BEFORE_S = 2.0  # steady load before each fault: 20 probe rounds and about 700 writes


def trial_row(r: TrialResult) -> dict[str, Any]:
    t = r.trial
    return {
        "fault": t.fault,
        "rto_s": None if math.isinf(t.rto_s) else round(t.rto_s, 3),
        "all_writers_back_s": None if math.isinf(t.all_writers_back_s) else round(t.all_writers_back_s, 3),
        "leader": f"{t.leader_before} -> {t.leader_after}",
        "acknowledged": t.acknowledged,
        "lost": t.lost[:20],
        "indeterminate": t.indeterminate,
        "indeterminate_present": t.indeterminate_present,
        "refused_after_fault": t.refused_after_fault,
        "split_brain_rounds": len(t.split_brain),
        "read_gap_s": round(t.read_gap_s, 3),
        "write_outage_s": round(t.unavailable_s, 3),
        "rejoin_s": None if r.rejoin_s is None else round(r.rejoin_s, 2),
        "held_s": None if r.healed_after_s is None else round(r.healed_after_s, 2),
        "stepped_down_s": None if r.stepped_down_s is None else round(r.stepped_down_s, 2),
        "stale_leader_rounds": len(t.stale_writes),
        "convergence": str(r.convergence),
        "operations": r.history_ops,
        "problems": t.problems,
        "phases_s": r.phases,
        "client_cpu_s": round(r.client_cpu_s, 3),
        "client_cpu_ms_per_1000": client_cost(r.client_cpu_s, r.history_ops)["cpu_ms_per_1000"],
    }


def writes_on_every_node(cluster: HACluster[N]) -> tuple[bool | None, Text]:
    """Whether every node that does not lead takes a write (the "full SQL on any compute node" part): a table
    created and a row written on each; None with the reason when such a node could not be reached."""
    leader = cluster.leader()
    took = []
    for other in [n for n in cluster.nodes if leader is None or n.name != leader.name]:
        try:
            conn = cluster.connect_node(other)
        except Exception as exc:
            return None, msg("node_unreachable", node=other.name, error=str(exc).splitlines()[0])
        table = f"{cluster.namespace}.any_node_{other.name}"
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
                cur.execute(f"INSERT INTO {table} (id) VALUES (1)")
            took.append(other.name)
        except Exception as exc:
            return False, msg("node_refused_write", node=other.name, error=str(exc).splitlines()[0])
        finally:
            conn.close()
    return True, msg("nodes_took_writes", nodes=", ".join(took))


def rto_part(evidence: CaseEvidence, results: list[TrialResult], what: Text, rto_s: float, where: Text | str) -> None:
    """Worst RTO of a fault's trials; with every node a writer, "failover" is writes going on on the others."""
    worst = max(r.trial.rto_s for r in results)
    ok = all(r.trial.rto_s <= rto_s and r.trial.failed_over and r.trial.fault_applied for r in results)
    text = msg("never") if math.isinf(worst) else f"{worst:.2f} s"
    why = joined([p for r in results for p in r.trial.said("rto", "not_applied")])
    new_leader = all(r.trial.failed_over for r in results)
    for clause in ("BZ-DB-1", "SX-RDS-3"):
        evidence.part(
            clause,
            ok,
            statistic=msg("part_rto", what=what, trials=len(results), worst=text, limit=f"{rto_s:g}", where=where),
            why=why or msg("worst_rto" if new_leader else "worst_rto_no_leader", worst=text),
        )


def panels(results: list[TrialResult]) -> list[dict[str, Any]]:
    """Each trial's load series, titled, for the report's panel per trial."""
    out, count = [], dict.fromkeys([r.trial.fault for r in results], 0)
    for r in results:
        t = r.trial
        count[t.fault] += 1
        rto = "never" if math.isinf(t.rto_s) else f"{t.rto_s:.1f} s"
        figure = f"RTO {rto}" if t.fault in ("kill", "freeze", "isolate") else f"outage {t.unavailable_s:.1f} s"
        title = f"{t.fault} {count[t.fault]}\n{t.leader_before}→{t.leader_after}, {figure}"
        out.append({**r.series, "kind": t.fault, "title": title})
    return out


def scale_part(evidence: CaseEvidence, scaled: list[ScaleResult], gap_s: float, where: Text | str) -> None:
    failed = sum(s.result.trial.refused_after_fault + s.result.trial.indeterminate_after_fault for s in scaled)
    gap = max(s.result.trial.unavailable_s for s in scaled)
    problems: list[Text | str] = [p for s in scaled for p in s.result.trial.said()]
    problems += [s.result.convergence for s in scaled if not s.result.converged]
    problems += [msg("never_streamed", node=s.added) for s in scaled if s.joined_s is None]
    streaming = max((s.joined_s for s in scaled if s.joined_s is not None), default=math.inf)
    evidence.parameters(
        scale_results=[
            {
                "added": s.added,
                "joined_s": None if s.joined_s is None else round(s.joined_s, 2),
                "removed": s.removed,
                "removed_s": round(s.removed_s, 2),
                **trial_row(s.result),
            }
            for s in scaled
        ],
        trial_series=evidence.record.parameters.get("trial_series", []) + panels([s.result for s in scaled]),
    )
    numbers = {"failed": failed, "gap": f"{gap:.2f}"}
    evidence.part(
        "BZ-DB-1",
        failed == 0 and gap <= gap_s and not problems,
        statistic=msg(
            "part_scale", times=len(scaled), joined=f"{streaming:.1f}", **numbers, limit=f"{gap_s:g}", where=where
        ),
        why=joined(problems) or msg("scale_failed", **numbers),
    )


def none_shown(evidence: CaseEvidence, clauses: tuple[str, ...], statistic: Text, why: Text | str) -> None:
    for clause in clauses:
        evidence.part(clause, None, statistic=statistic, not_shown=why)
