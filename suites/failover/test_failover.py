"""BZ-DB-1 and SX-RDS-3: the leader is killed under load, again and again, then switched over as planned;
judged on the worst trial.

Each trial (``clauseproof.failover.trial``): 8 writers insert unique ids through the cluster's write endpoint,
2 readers read from every node, a poller asks every node 10×/s whether it accepts writes; the leader's node is
SIGKILLed whole (Patroni, postmaster and every backend); the load runs until a write after the kill is
acknowledged, plus 3 s; the node is started again and must rejoin and hold the leader's ids.  The judge
(``clauseproof.failover.history``) gives RTO, lost acknowledged ids, split brain and the read gap.

The tender states no RTO: the acceptance plan declares RTO ≤ 30 s and RPO = 0 (no acknowledged write lost),
and every part says so.  What this cannot detect: a system that fails over well on loopback but not across
machines or zones; a loss that needs a network partition rather than a kill (isolate and freeze faults are not
built yet).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from clauseproof.core.evidence import CaseEvidence
from clauseproof.failover.trial import TrialResult, run_trial
from clauseproof.targets.ha import PatroniCluster

TRIALS = 5
RTO_S = 30.0  # declared by the acceptance plan, not the tender
READ_GAP_S = 1.0  # declared by the acceptance plan: "uninterrupted service" for reads on the surviving nodes
DECLARED = "declared by the acceptance plan, not the tender"


def _row(r: TrialResult) -> dict[str, Any]:
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
        "convergence": r.convergence,
        "operations": r.history_ops,
        "problems": t.problems,
    }


def _writes_on_a_replica(cluster: PatroniCluster) -> tuple[bool | None, str]:
    """Whether a node that does not lead takes a write (the "full SQL on any compute node" part); None with the
    reason when no such node could be reached."""
    leader = cluster.leader()
    other = next(n for n in cluster.nodes if leader is None or n.name != leader.name)
    try:
        conn = cluster.connect_node(other)
    except Exception as exc:
        return None, f"{other.name} could not be reached: {str(exc).splitlines()[0]}"
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE {cluster.namespace}.any_node_probe (id int)")
        return True, f"{other.name} took a CREATE TABLE"
    except Exception as exc:
        return False, f"{other.name} refused a write: {str(exc).splitlines()[0]}"
    finally:
        conn.close()


@pytest.mark.clause("BZ-DB-1", "SX-RDS-3")
def test_leader_killed_under_load(ha_cluster: PatroniCluster, evidence: CaseEvidence) -> None:
    cluster = ha_cluster
    evidence.record.target = cluster.label
    trials = TRIALS if evidence.scale >= 1 else max(1, round(TRIALS * evidence.scale))
    evidence.parameters(
        cluster=cluster.describe(), trials=trials, rto_s=RTO_S, read_gap_s=READ_GAP_S, declared=DECLARED
    )
    evidence.window(
        "no timed window: each trial's RTO is the completion of the first acknowledged write invoked after the "
        "kill, minus the kill's instant (one monotonic clock); the cluster is up before the first trial"
    )
    results = []
    for k in range(trials):
        evidence.progress(f"{cluster.label}: trial {k + 1} of {trials}: kill the leader under load")
        results.append(run_trial(cluster, fault="kill", apply=cluster.kill_node, restore=cluster.start_node))
    switchovers = []
    for k in range(trials):
        evidence.progress(f"{cluster.label}: switchover {k + 1} of {trials}: planned, under load")
        switchovers.append(run_trial(cluster, fault="switchover", apply=cluster.switchover, settle_s=2))
    rows = [_row(r) for r in results + switchovers]
    worst = max(results, key=lambda r: r.trial.rto_s)
    evidence.parameters(trial_results=rows, load_series=worst.series, plotted="the trial with the worst RTO")
    worst_rto = worst.trial.rto_s
    rto_ok = all(r.trial.rto_s <= RTO_S and r.trial.failed_over and r.trial.fault_applied for r in results)
    rto_text = "never" if math.isinf(worst_rto) else f"{worst_rto:.2f} s"
    lost = sum(len(r.trial.lost) for r in results)
    anomalies = [p for r in results for p in r.trial.about("lost", "refused_applied", "duplicates", "phantoms")]
    split = [p for r in results for p in r.trial.about("split_brain")]
    converged = all(r.converged for r in results)
    worst_gap = max(r.trial.read_gap_s for r in results)
    for clause in ("BZ-DB-1", "SX-RDS-3"):
        evidence.part(
            clause,
            rto_ok,
            statistic=f"part: automatic failover: worst RTO of {trials} leader kills {rto_text} "
            f"(≤ {RTO_S:g} s, {DECLARED})",
            why="; ".join(p for r in results for p in r.trial.about("rto", "not_applied")) or f"worst RTO {rto_text}",
        )
        evidence.part(
            clause,
            lost == 0 and not anomalies,
            statistic=f"part: no acknowledged write lost (RPO = 0, {DECLARED}): {lost} lost over {trials} trials, "
            f"{sum(r.trial.acknowledged for r in results):,} acknowledged; indeterminate writes reported apart",
            why="; ".join(anomalies),
        )
    evidence.part(
        "BZ-DB-1",
        not split,
        statistic="part: at most one node accepted writes in every polling round (every node asked 10×/s)",
        why="; ".join(split),
    )
    evidence.part(
        "BZ-DB-1",
        converged,
        statistic="part: automatic recovery: the killed node rejoins as a replica and holds the leader's ids",
        why="; ".join(r.convergence for r in results if not r.converged),
    )
    evidence.part(
        "BZ-DB-1",
        worst_gap <= READ_GAP_S,
        statistic=f"part: uninterrupted service: reads over all nodes never stopped longer than {READ_GAP_S:g} s "
        f"(worst {worst_gap:.2f} s; {DECLARED})",
        why=f"reads stopped for {worst_gap:.2f} s",
    )
    outage = max(r.trial.unavailable_s for r in switchovers)
    sw_problems = [p for r in switchovers for p in r.trial.problems]
    evidence.part(
        "BZ-DB-1",
        outage <= RTO_S and not sw_problems and all(r.trial.failed_over for r in switchovers),
        statistic=f"part: planned switchover under load: longest write outage of {trials} switchovers "
        f"{outage:.2f} s (≤ {RTO_S:g} s, {DECLARED}), no acknowledged write lost, one writable node",
        why="; ".join(sw_problems) or f"longest write outage {outage:.2f} s",
    )
    any_node, said = _writes_on_a_replica(cluster)
    evidence.part(
        "BZ-DB-1",
        any_node,
        statistic="part: full SQL on any compute node (a write on a node that does not lead)",
        why=said,
        not_shown=said,
    )
    evidence.part(
        "BZ-DB-1",
        None,
        statistic="part: online scale out and in under load",
        not_shown="adding and removing a node under load is not built yet",
    )
    evidence.part(
        "BZ-DB-1",
        None,
        statistic="part: a Raft multi-replica architecture",
        not_shown="the leader lock is held in etcd (Raft), but whether the data itself replicates by Raft is a "
        "matter of the design: a document or declaration, not this test",
    )
    evidence.part(
        "SX-RDS-3",
        None,
        statistic="part: no single point of failure; two-AZ primary/standby",
        not_shown="one machine, one HAProxy: the proxy and the zones are not redundant here",
    )
    evidence.require_pass()
