"""BZ-DB-1 and SX-RDS-3: the leader is killed under load, again and again, then frozen, then cut off, then switched
over as planned; judged on the worst trial of each fault.

Each trial (``clauseproof.failover.trial``): 8 writers insert unique ids through the cluster's write endpoint,
one reader per node reads it, one prober per node makes a write on it 10×/s (does it accept writes?); then:

- **kill**: the leader's node is SIGKILLed whole (Patroni, postmaster and every backend), started again after
  the load, and must rejoin and hold the leader's ids;
- **freeze**: every process of the leader's node is SIGSTOPped for longer than the failure detection (Patroni's
  TTL), under load, then continued: it wakes believing it leads, and must acknowledge no write before it steps
  down and rejoins;
- **isolate**: the leader's node (with the consensus member beside it) is cut off from the other nodes — every
  packet between them dropped inside its network namespace — until another node took over (at most the RTO's
  threshold), then let back in: it must acknowledge no write once another leads, and rejoin;
- **switchover**: a planned one, through the cluster manager.

The embedded systems: ``embedded-postgresql-ha`` (Patroni, one leader) and ``embedded-mariadb-galera`` (every node
takes writes: the judge's rule there is that a frozen or cut-off node takes no write while the others do, and there
is no switchover).

On a vendor's system (a profile target with ``[failover]``, see ``clauseproof.failover.vendor``) the same trials
run the profile's commands, only with ``--cp-destructive=yes``; a fault without its commands, or without the
opt-in, is a NOT SHOWN row that says which.  The profile may set the acceptance plan's thresholds for it.

The load runs until a write after the fault is acknowledged, plus a few seconds.  The judge
(``clauseproof.failover.history``) gives RTO, lost acknowledged ids, split brain, a stale leader and the read gap.

The tender states no RTO: the acceptance plan declares RTO ≤ 30 s and RPO = 0 (no acknowledged write lost),
and every part says so.  What this cannot detect: a system that fails over well on loopback but not across
machines or zones; a partition of the clients (the cut leaves the harness's own probers a path to the cut-off
node, to see what it does) or an asymmetric one.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from clauseproof.core.evidence import CaseEvidence
from clauseproof.failover import identity
from clauseproof.failover.trial import ScaleResult, TrialResult, run_trial, scale_out_in
from clauseproof.targets.roles import HACluster

#: the acceptance plan's defaults (the tender states none); a profile's [failover] may set its own
DEFAULTS = {
    "trials": 5.0,
    "rto_s": 30.0,
    "read_gap_s": 1.0,  # "uninterrupted service" for reads on the surviving nodes
    "freeze_s": 40.0,  # longer than the failure detection (the embedded cluster: its TTL + 2 s)
}
DECLARED = "declared by the acceptance plan, not the tender"
FAULTS = ("kill", "freeze", "isolate", "switchover")
SCALE_TRIALS = 2  # each adds a node and removes another: the cluster keeps its size
BEFORE_S = 2.0  # steady load before each fault: 20 probe rounds and about 700 writes


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
        "held_s": None if r.healed_after_s is None else round(r.healed_after_s, 2),
        "stepped_down_s": None if r.stepped_down_s is None else round(r.stepped_down_s, 2),
        "stale_leader_rounds": len(t.stale_writes),
        "convergence": r.convergence,
        "operations": r.history_ops,
        "problems": t.problems,
    }


def _writes_on_every_node(cluster: HACluster[Any]) -> tuple[bool | None, str]:
    """Whether every node that does not lead takes a write (the "full SQL on any compute node" part): a table
    created and a row written on each; None with the reason when such a node could not be reached."""
    leader = cluster.leader()
    took = []
    for other in [n for n in cluster.nodes if leader is None or n.name != leader.name]:
        try:
            conn = cluster.connect_node(other)
        except Exception as exc:
            return None, f"{other.name} could not be reached: {str(exc).splitlines()[0]}"
        table = f"{cluster.namespace}.any_node_{other.name}"
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
                cur.execute(f"INSERT INTO {table} (id) VALUES (1)")
            took.append(other.name)
        except Exception as exc:
            return False, f"{other.name} refused a write: {str(exc).splitlines()[0]}"
        finally:
            conn.close()
    return True, f"{', '.join(took)} each took a CREATE TABLE and an INSERT"


class _Gated:
    """The evidence of a case whose every part rests on proven node identity (issue 30): where two nodes proved to
    be one server, or a kill was not seen to stop its server, no part that counts nodes or faults is PASS (FAIL,
    naming it); where identity could not be read, a part that would PASS is NOT SHOWN, saying so."""

    def __init__(self, evidence: CaseEvidence) -> None:
        self.evidence = evidence
        self.problems: list[str] = []
        self.unread: list[str] = []

    def part(self, clause: str, ok: bool | None, *, statistic: str, why: str = "", not_shown: str = "") -> None:
        if self.problems and ok is not None:
            because = "rests on nodes or faults not proven: " + "; ".join(dict.fromkeys(self.problems[:3]))
            ok, why = False, because + (f"; and {why}" if ok is False and why else "")
        elif self.unread and ok is True:
            ok, not_shown = None, "the nodes' identity could not be read: " + "; ".join(self.unread[:3])
        self.evidence.part(clause, ok, statistic=statistic, why=why, not_shown=not_shown)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.evidence, name)


def _kill_watched(cluster: HACluster[Any], gate: _Gated, ids: dict[str, identity.Identity]) -> tuple[Any, Any]:
    """``kill_node`` and ``start_node`` with the victim followed: the fault's instant is when its address stopped
    answering as its server (or the command's own instant, if earlier); a victim that went on answering as itself,
    whose address now reaches another node's server, or that came back with its old start time is a problem."""
    watch: dict[str, identity.Watch] = {}

    def apply(victim: Any) -> float:
        w = watch["w"] = identity.Watch(cluster, victim, ids, timeout_s=10.0)
        w.start()
        w.arm()
        returned = cluster.kill_node(victim)
        at = returned if isinstance(returned, float) else time.monotonic()
        w.wait()
        w.stop()
        if w.unread:
            gate.unread.append(w.unread)
        if w.problem:
            gate.problems.append(w.problem)
        return min(at, w.seen_at) if w.seen_at is not None else at

    def restore(victim: Any) -> float:
        took = cluster.start_node(victim)
        problem = watch["w"].came_back() if "w" in watch else ""
        if problem:
            gate.problems.append(problem)
        return float(took)

    return apply, restore


def _new_leader_is_another_server(
    cluster: HACluster[Any], gate: _Gated, r: TrialResult, ids: dict[str, identity.Identity]
) -> None:
    """The node named leader after a fault is not the old leader's server behind another address."""
    before, after = ids.get(r.trial.leader_before or ""), r.trial.leader_after
    node = next((n for n in cluster.nodes if n.name == after), None)
    if before is None or node is None or after == r.trial.leader_before:
        return
    now, _ = identity.read(cluster, node)
    if now is not None and now.same_server(before):
        gate.problems.append(
            f"the new leader {after} is the old leader {r.trial.leader_before}'s server ({now.text()})"
        )


def _thresholds(cluster: HACluster[Any]) -> tuple[dict[str, float], dict[str, str]]:
    """The thresholds of this run and where each came from."""
    own = cluster.thresholds()
    values = {k: own.get(k, v) for k, v in DEFAULTS.items()}
    return values, {k: cluster.threshold_source if k in own else DECLARED for k in DEFAULTS}


def _run(
    cluster: HACluster[Any], fault: str, limits: dict[str, float], gate: _Gated, ids: dict[str, identity.Identity]
) -> TrialResult:
    deadline = max(limits["rto_s"] * 1.5, limits["rto_s"] + 5)  # an RTO past the threshold is still measured
    if fault == "kill":
        apply, restore = _kill_watched(cluster, gate, ids)
        r = run_trial(cluster, fault=fault, apply=apply, restore=restore, deadline_s=deadline, before_s=BEFORE_S)
        _new_leader_is_another_server(cluster, gate, r, ids)
        return r
    if fault == "freeze":
        return run_trial(
            cluster,
            fault=fault,
            apply=cluster.freeze_node,
            heal=cluster.thaw_node,
            hold_s=limits["freeze_s"],
            restore=cluster.wait_rejoin,
            settle_s=5,
            deadline_s=max(deadline, limits["freeze_s"]),
            before_s=BEFORE_S,
        )
    if fault == "isolate":
        # one leader: cut off until another took over (at most the RTO threshold), then let back in; every node a
        # writer: cut off for as long as a freeze (it must take no write all along)
        multi = bool(getattr(cluster, "multi_writer", False))
        return run_trial(
            cluster,
            fault=fault,
            apply=cluster.isolate_node,
            heal=cluster.heal_node,
            hold_s=limits["freeze_s"] if multi else limits["rto_s"],
            heal_on_recovery=not multi,
            restore=cluster.wait_rejoin,
            settle_s=5,
            deadline_s=max(deadline, limits["freeze_s"]),
            before_s=BEFORE_S,
        )
    return run_trial(cluster, fault=fault, apply=cluster.switchover, settle_s=2, deadline_s=deadline, before_s=BEFORE_S)


def _rto_part(evidence: CaseEvidence, results: list[TrialResult], what: str, rto_s: float, where: str) -> None:
    """Worst RTO of a fault's trials; with every node a writer, "failover" is writes going on on the others."""
    worst = max(r.trial.rto_s for r in results)
    ok = all(r.trial.rto_s <= rto_s and r.trial.failed_over and r.trial.fault_applied for r in results)
    text = "never" if math.isinf(worst) else f"{worst:.2f} s"
    why = "; ".join(p for r in results for p in r.trial.about("rto", "not_applied"))
    for clause in ("BZ-DB-1", "SX-RDS-3"):
        evidence.part(
            clause,
            ok,
            statistic=f"part: automatic failover {what}: worst RTO of {len(results)} trials {text} "
            f"(≤ {rto_s:g} s, {where})",
            why=why or f"worst RTO {text}" + ("" if all(r.trial.failed_over for r in results) else "; no new leader"),
        )


def _panels(results: list[TrialResult]) -> list[dict[str, Any]]:
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


def _scale_part(evidence: CaseEvidence, scaled: list[ScaleResult], gap_s: float, where: str) -> None:
    failed = sum(s.result.trial.refused_after_fault + s.result.trial.indeterminate_after_fault for s in scaled)
    gap = max(s.result.trial.unavailable_s for s in scaled)
    problems = [p for s in scaled for p in s.result.trial.problems]
    problems += [s.result.convergence for s in scaled if not s.result.converged]
    problems += [f"{s.added} never streamed" for s in scaled if s.joined_s is None]
    joined = max((s.joined_s for s in scaled if s.joined_s is not None), default=math.inf)
    evidence.parameters(
        scale_results=[
            {
                "added": s.added,
                "joined_s": None if s.joined_s is None else round(s.joined_s, 2),
                "removed": s.removed,
                "removed_s": round(s.removed_s, 2),
                **_row(s.result),
            }
            for s in scaled
        ],
        trial_series=evidence.record.parameters.get("trial_series", []) + _panels([s.result for s in scaled]),
    )
    evidence.part(
        "BZ-DB-1",
        failed == 0 and gap <= gap_s and not problems,
        statistic=f"part: online scale out and in under load: {len(scaled)} times a node added (streaming after "
        f"{joined:.1f} s at worst, then holding the leader's ids) and another removed; {failed} writes failed or "
        f"indeterminate (bound 0), longest write gap {gap:.2f} s (≤ {gap_s:g} s, {where})",
        why="; ".join(problems) or f"{failed} writes failed or indeterminate; longest write gap {gap:.2f} s",
    )


def _not_shown(evidence: CaseEvidence, clauses: tuple[str, ...], statistic: str, why: str) -> None:
    for clause in clauses:
        evidence.part(clause, None, statistic=statistic, not_shown=why)


@pytest.mark.clause("BZ-DB-1", "SX-RDS-3")
def test_leader_killed_frozen_and_switched_over_under_load(ha_cluster: HACluster[Any], evidence: CaseEvidence) -> None:
    cluster = ha_cluster
    evidence.record.target = cluster.label
    case_evidence = evidence
    gated: Any = _Gated(case_evidence)
    ids, one_server, unread = identity.survey(cluster)
    gated.problems += one_server
    gated.unread += unread
    surveyed = {n: i.text() for n, i in ids.items()}
    limits, where = _thresholds(cluster)
    trials = int(limits["trials"]) if gated.scale >= 1 else max(1, round(limits["trials"] * gated.scale))
    can = cluster.faults()
    gated.parameters(
        cluster=cluster.describe(),
        node_identities=surveyed,
        trials_per_fault=trials,
        thresholds=limits,
        thresholds_from=where,
        faults={f: (why or "applied") for f, why in can.items()},
    )
    gated.window(
        "no timed window: each trial's RTO is the completion of the first acknowledged write invoked after the "
        "fault, minus the fault's instant (one monotonic clock); the cluster is ready (a leader named, every node "
        "running) before each trial"
    )
    results: dict[str, list[TrialResult]] = {}
    for fault in FAULTS:
        if can.get(fault, "not built for this target"):
            continue
        results[fault] = []
        for k in range(trials):
            gated.progress(f"{cluster.label}: {fault} {k + 1} of {trials}, under load")
            results[fault].append(_run(cluster, fault, limits, gated, ids))
    everything = [r for fault in FAULTS for r in results.get(fault, [])]
    recovered = results.get("kill", []) + results.get("freeze", []) + results.get("isolate", [])
    both = ("BZ-DB-1", "SX-RDS-3")
    if recovered:
        worst = max(recovered, key=lambda r: r.trial.rto_s)
        gated.parameters(plotted=f"the trial with the worst RTO ({worst.trial.fault})", load_series=worst.series)
    gated.parameters(trial_results=[_row(r) for r in everything], trial_series=_panels(everything))
    rto_s, freeze_s = limits["rto_s"], limits["freeze_s"]
    multi = bool(getattr(cluster, "multi_writer", False))
    who = "a node (every node takes writes)" if multi else "the leader"
    for fault, what in (
        ("kill", f"when {who} dies (kill)"),
        ("freeze", f"when {who} stalls ({freeze_s:g} s)"),
        ("isolate", f"when {who} is cut off from its peers (network partition)"),
    ):
        if fault in results:
            _rto_part(gated, results[fault], what, rto_s, where["rto_s"])
        else:
            _not_shown(gated, both, f"part: automatic failover {what}", can.get(fault, "not built"))
    if not everything:
        why = "; ".join(f"{f}: {w}" for f, w in can.items())
        for statistic in ("no acknowledged write lost (RPO = 0)", "one leader", "automatic recovery"):
            _not_shown(gated, both if statistic.startswith("no ack") else ("BZ-DB-1",), f"part: {statistic}", why)
    else:
        lost = sum(len(r.trial.lost) for r in everything)
        anomalies = [
            p
            for r in everything
            for p in r.trial.about("unchecked", "lost", "refused_applied", "duplicates", "phantoms")
        ]
        for clause in both:
            gated.part(
                clause,
                lost == 0 and not anomalies,
                statistic=f"part: no acknowledged write lost (RPO = 0, {DECLARED}): {lost} lost over "
                f"{len(everything)} trials ({', '.join(results)}), "
                f"{sum(r.trial.acknowledged for r in everything):,} acknowledged; indeterminate writes reported apart",
                why="; ".join(anomalies),
            )
        split = [p for r in everything for p in r.trial.about("split_brain", "stale_leader")]
        gated.part(
            "BZ-DB-1",
            not split,
            statistic=(
                "part: one primary component: a frozen or cut-off node acknowledged no write while the others took "
                "them (every node probed with a write 10×/s, in 100 ms rounds)"
                if multi
                else "part: one leader: at most one node acknowledged writes in every 100 ms round (every node "
                "probed with a write 10×/s), and a frozen or cut-off leader acknowledged none once another took over"
            ),
            why="; ".join(split),
        )
        if recovered:
            gated.part(
                "BZ-DB-1",
                all(r.converged for r in recovered),
                statistic="part: automatic recovery: the killed, frozen or cut-off node rejoins"
                + ("" if multi else " as a replica")
                + " and holds every acknowledged id",
                why="; ".join(r.convergence for r in recovered if not r.converged),
            )
        else:
            _not_shown(gated, ("BZ-DB-1",), "part: automatic recovery", "no node was killed or frozen")
        worst_gap = max(r.trial.read_gap_s for r in everything)
        gap = limits["read_gap_s"]
        gated.part(
            "BZ-DB-1",
            worst_gap <= gap,
            statistic=f"part: uninterrupted service: reads on the surviving nodes never stopped longer than "
            f"{gap:g} s (worst {worst_gap:.2f} s; {where['read_gap_s']})",
            why=f"reads stopped for {worst_gap:.2f} s",
        )
    if "switchover" in results:
        switchovers = results["switchover"]
        outage = max(r.trial.unavailable_s for r in switchovers)
        sw_problems = [p for r in switchovers for p in r.trial.problems]
        gated.part(
            "BZ-DB-1",
            outage <= rto_s and not sw_problems and all(r.trial.failed_over for r in switchovers),
            statistic=f"part: planned switchover under load: longest write outage of {len(switchovers)} "
            f"switchovers {outage:.2f} s (≤ {rto_s:g} s, {where['rto_s']}), no acknowledged write lost, one "
            "writable node",
            why="; ".join(sw_problems) or f"longest write outage {outage:.2f} s",
        )
    else:
        _not_shown(gated, ("BZ-DB-1",), "part: planned switchover under load", can.get("switchover", "not built"))
    any_node, said = _writes_on_every_node(cluster)
    gated.part(
        "BZ-DB-1",
        any_node,
        statistic="part: full SQL on any compute node (a write on every node that does not lead)",
        why=said,
        not_shown=said,
    )
    if can.get("scale", "not built"):
        _not_shown(gated, ("BZ-DB-1",), "part: online scale out and in under load", can.get("scale", "not built"))
    else:
        scaled = []

        def added_is_new(node: Any) -> None:  # a new server, not another address of one that is there
            now, why = identity.read(cluster, node)
            if now is None:
                gated.unread.append(f"the added {node.name}: {why}")
                return
            for name, known in ids.items():
                if known.same_server(now):
                    gated.problems.append(f"the added {node.name} is {name}'s server ({now.text()})")

        for k in range(SCALE_TRIALS):
            gated.progress(f"{cluster.label}: scale out and in {k + 1} of {SCALE_TRIALS}, under load")
            scaled.append(scale_out_in(cluster, on_added=added_is_new))
        _scale_part(gated, scaled, limits["read_gap_s"], where["read_gap_s"])
    for clause in ("BZ-DB-1", "SX-RDS-3"):
        case_evidence.part(
            clause,
            False if gated.problems else None if gated.unread else True,
            statistic=f"part: every node a distinct server, every kill seen to stop its server (identity read "
            f"through SQL before the trials, around each kill, of each new leader and added node): "
            f"{len(ids)} nodes: " + "; ".join(f"{n}: {t}" for n, t in surveyed.items()),
            why="; ".join(dict.fromkeys(gated.problems)),
            not_shown="; ".join(gated.unread),
        )
    gated.part(
        "BZ-DB-1",
        None,
        statistic="part: a Raft multi-replica architecture",
        not_shown="whether the data itself replicates by Raft is a matter of the design (a Patroni cluster holds "
        "only its leader lock in etcd, by Raft; Galera certifies write sets over group communication): a document or "
        "declaration, not this test",
    )
    gated.part(
        "SX-RDS-3",
        None,
        statistic="part: no single point of failure; two-AZ primary/standby",
        not_shown="one machine: the zones (and a proxy in front of the nodes) are not shown redundant here",
    )
    gated.require_pass()
