"""BZ-DB-1 and SX-RDS-3 on one HA cluster: identity proven, each fault's trials run under load, every part judged.

The suite ``suites/failover/test_failover.py`` says what the trials are; this module runs them (:func:`verify`): the
nodes' identities surveyed first, each kill followed until its server is seen to stop, the thresholds of the plan or
the profile, the trials of each fault the cluster can take, then the parts (:mod:`clauseproof.failover.parts`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clauseproof.core.evidence import CaseEvidence, client_cost
from clauseproof.core.i18n import Text, joined, msg
from clauseproof.failover import identity
from clauseproof.failover.parts import (
    BEFORE_S,
    DECLARED,
    DEFAULTS,
    FAULTS,
    SCALE_TRIALS,
    none_shown,
    panels,
    rto_part,
    scale_part,
    trial_row,
    writes_on_every_node,
)
from clauseproof.failover.trial import TrialResult, run_trial, scale_out_in
from clauseproof.targets.roles import HACluster, N


def _once(findings: list[Text | str]) -> list[Text | str]:
    """Each finding once, in order (the same finding can come from several trials)."""
    return list({str(f): f for f in findings}.values())


class _Gated:
    """The evidence of a case whose every part rests on proven node identity (issue 30): where two nodes proved to
    be one server, or a kill was not seen to stop its server, no part that counts nodes or faults is PASS (FAIL,
    naming it); where identity could not be read, a part that would PASS is NOT SHOWN, saying so."""

    def __init__(self, evidence: CaseEvidence) -> None:
        self.evidence = evidence
        self.problems: list[Text | str] = []
        self.unread: list[Text | str] = []

    def part(
        self, clause: str, ok: bool | None, *, statistic: Text, why: Text | str = "", not_shown: Text | str = ""
    ) -> None:
        if self.problems and ok is not None:
            because = msg("rests_on_unproven", problems=joined(_once(self.problems)[:3]))
            ok, why = False, msg("and_also", first=because, then=why) if ok is False and why else because
        elif self.unread and ok is True:
            ok, not_shown = None, msg("identity_unread", why=joined(self.unread[:3]))
        self.evidence.part(clause, ok, statistic=statistic, why=why, not_shown=not_shown)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.evidence, name)


def _kill_watched(
    cluster: HACluster[N], gate: _Gated, ids: dict[str, identity.Identity]
) -> tuple[Callable[[N], float], Callable[[N], float]]:
    """``kill_node`` and ``start_node`` with the victim followed: the fault's instant is when its address stopped
    answering as its server (or the command's own instant, if earlier); a victim that went on answering as itself,
    whose address now reaches another node's server, or that came back with its old start time is a problem."""
    watch: dict[str, identity.Watch[N]] = {}

    def apply(victim: N) -> float:
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

    def restore(victim: N) -> float:
        took = cluster.start_node(victim)
        problem = watch["w"].came_back() if "w" in watch else ""
        if problem:
            gate.problems.append(problem)
        return float(took)

    return apply, restore


def _new_leader_is_another_server(
    cluster: HACluster[N], gate: _Gated, r: TrialResult, ids: dict[str, identity.Identity]
) -> None:
    """The node named leader after a fault is not the old leader's server behind another address."""
    before, after = ids.get(r.trial.leader_before or ""), r.trial.leader_after
    node = next((n for n in cluster.nodes if n.name == after), None)
    if before is None or node is None or after == r.trial.leader_before:
        return
    now, _ = identity.read(cluster, node)
    if now is not None and now.same_server(before):
        gate.problems.append(msg("ident_new_leader_same", new=after, old=r.trial.leader_before, ident=now.text_i18n()))


def _thresholds(cluster: HACluster[N]) -> tuple[dict[str, float], dict[str, Text | str]]:
    """The thresholds of this run and where each came from."""
    own = cluster.thresholds()
    values = {k: own.get(k, v) for k, v in DEFAULTS.items()}
    return values, {k: cluster.threshold_source if k in own else DECLARED for k in DEFAULTS}


def _run(
    cluster: HACluster[N], fault: str, limits: dict[str, float], gate: _Gated, ids: dict[str, identity.Identity]
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


@dataclass
class _Plan:
    """What the trials of one cluster rest on: the nodes' identities, the thresholds and where each came from, the
    trials per fault, and the faults the cluster can take (fault → "" or why not)."""

    ids: dict[str, identity.Identity]
    surveyed: dict[str, str]
    limits: dict[str, float]
    where: dict[str, Text | str]
    trials: int
    can: dict[str, Text | str]


def verify(cluster: HACluster[N], evidence: CaseEvidence) -> None:
    """Every fault the cluster can take, ``trials`` times under load, and every part of both clauses judged."""
    evidence.record.target = cluster.label
    gated: Any = _Gated(evidence)
    plan = _prepare(cluster, gated)
    results = _trials(cluster, gated, plan)
    _judge_failover(cluster, gated, plan, results)
    _judge_switchover(gated, plan, results)
    any_node, said = writes_on_every_node(cluster)
    gated.part("BZ-DB-1", any_node, statistic=msg("part_any_node"), why=said, not_shown=said)
    _scale(cluster, gated, plan)
    _judge_identity(evidence, gated, plan)
    gated.require_pass()


def _prepare(cluster: HACluster[N], gated: Any) -> _Plan:
    """Every node's identity surveyed, the thresholds and trials chosen, all recorded before the first trial."""
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
        thresholds_from={k: str(v) for k, v in where.items()},
        faults={f: (why or "applied") for f, why in can.items()},
    )
    gated.window(msg("win_failover"))
    return _Plan(ids, surveyed, limits, where, trials, can)


def _trials(cluster: HACluster[N], gated: Any, plan: _Plan) -> dict[str, list[TrialResult]]:
    """``plan.trials`` trials of each fault the cluster can take, under load, in turn."""
    can, trials, limits, ids = plan.can, plan.trials, plan.limits, plan.ids
    results: dict[str, list[TrialResult]] = {}
    for fault in FAULTS:
        if can.get(fault, "not built for this target"):
            continue
        results[fault] = []
        for k in range(trials):
            gated.progress(f"{cluster.label}: {fault} {k + 1} of {trials}, under load")
            r = _run(cluster, fault, limits, gated, ids)
            gated.imposed(r.imposed_s(), f"{fault}: outage or hold, settle, rejoin")
            results[fault].append(r)
    return results


def _judge_failover(cluster: HACluster[N], gated: Any, plan: _Plan, results: dict[str, list[TrialResult]]) -> None:
    """RTO per fault, no acknowledged write lost, one leader, automatic recovery, uninterrupted reads."""
    limits, where, can = plan.limits, plan.where, plan.can
    everything = [r for fault in FAULTS for r in results.get(fault, [])]
    recovered = results.get("kill", []) + results.get("freeze", []) + results.get("isolate", [])
    both = ("BZ-DB-1", "SX-RDS-3")
    if recovered:
        worst = max(recovered, key=lambda r: r.trial.rto_s)
        gated.parameters(plotted=f"the trial with the worst RTO ({worst.trial.fault})", load_series=worst.series)
    gated.parameters(trial_results=[trial_row(r) for r in everything], trial_series=panels(everything))
    cpu, ops = sum(r.client_cpu_s for r in everything), sum(r.history_ops for r in everything)
    gated.parameters(load_client={"threads": "writers, readers and probers of this process", **client_cost(cpu, ops)})
    rto_s, freeze_s = limits["rto_s"], limits["freeze_s"]
    multi = bool(getattr(cluster, "multi_writer", False))
    who = msg("who_any_node" if multi else "who_leader")
    for fault, what in (
        ("kill", msg("when_dies", who=who)),
        ("freeze", msg("when_stalls", who=who, hold=f"{freeze_s:g}")),
        ("isolate", msg("when_cut_off", who=who)),
    ):
        if fault in results:
            rto_part(gated, results[fault], what, rto_s, where["rto_s"])
        else:
            none_shown(gated, both, msg("part_failover", what=what), can.get(fault) or msg("fault_not_built"))
    if not everything:
        why = joined([msg("fault_why", fault=msg(f"fault_{f}"), why=w) for f, w in can.items()])
        none_shown(gated, both, msg("part_no_loss_short"), why)
        for key in ("part_one_leader_short", "part_recovery_short"):
            none_shown(gated, ("BZ-DB-1",), msg(key), why)
    else:
        lost = sum(len(r.trial.lost) for r in everything)
        anomalies = [
            p
            for r in everything
            for p in r.trial.said("unchecked", "lost", "refused_applied", "duplicates", "phantoms")
        ]
        for clause in both:
            gated.part(
                clause,
                lost == 0 and not anomalies,
                statistic=msg(
                    "part_no_loss",
                    declared=DECLARED,
                    lost=lost,
                    trials=len(everything),
                    faults=joined([msg(f"fault_{f}") for f in results]),  # fault_kill, fault_freeze, ...
                    acknowledged=f"{sum(r.trial.acknowledged for r in everything):,}",
                ),
                why=joined(anomalies),
            )
        split = [p for r in everything for p in r.trial.said("split_brain", "stale_leader")]
        gated.part(
            "BZ-DB-1",
            not split,
            statistic=msg("part_one_component" if multi else "part_one_leader"),
            why=joined(split),
        )
        if recovered:
            gated.part(
                "BZ-DB-1",
                all(r.converged for r in recovered),
                statistic=msg("part_recovery_multi" if multi else "part_recovery"),
                why=joined([r.convergence for r in recovered if not r.converged]),
            )
        else:
            none_shown(gated, ("BZ-DB-1",), msg("part_recovery_short"), msg("none_killed"))
        worst_gap = max(r.trial.read_gap_s for r in everything)
        gap = limits["read_gap_s"]
        gated.part(
            "BZ-DB-1",
            worst_gap <= gap,
            statistic=msg("part_reads", limit=f"{gap:g}", worst=f"{worst_gap:.2f}", where=where["read_gap_s"]),
            why=msg("reads_stopped", worst=f"{worst_gap:.2f}"),
        )


def _judge_switchover(gated: Any, plan: _Plan, results: dict[str, list[TrialResult]]) -> None:
    rto_s, where, can = plan.limits["rto_s"], plan.where, plan.can
    if "switchover" in results:
        switchovers = results["switchover"]
        outage = max(r.trial.unavailable_s for r in switchovers)
        sw_problems = [p for r in switchovers for p in r.trial.said()]
        gated.part(
            "BZ-DB-1",
            outage <= rto_s and not sw_problems and all(r.trial.failed_over for r in switchovers),
            statistic=msg(
                "part_switchover", n=len(switchovers), outage=f"{outage:.2f}", limit=f"{rto_s:g}", where=where["rto_s"]
            ),
            why=joined(sw_problems) or msg("longest_outage", outage=f"{outage:.2f}"),
        )
    else:
        none_shown(gated, ("BZ-DB-1",), msg("part_switchover_short"), can.get("switchover") or msg("fault_not_built"))


def _scale(cluster: HACluster[N], gated: Any, plan: _Plan) -> None:
    """Online scale out and in under load, each added node proven a new server."""
    can, ids, limits, where = plan.can, plan.ids, plan.limits, plan.where
    if can.get("scale", "not built"):
        none_shown(gated, ("BZ-DB-1",), msg("part_scale_short"), can.get("scale") or msg("fault_not_built"))
    else:
        scaled = []

        def added_is_new(node: N) -> None:  # a new server, not another address of one that is there
            now, why = identity.read(cluster, node)
            if now is None:
                gated.unread.append(msg("ident_added_unread", node=node.name, why=why))
                return
            for name, known in ids.items():
                if known.same_server(now):
                    gated.problems.append(msg("ident_added_same", node=node.name, other=name, ident=now.text_i18n()))

        for k in range(SCALE_TRIALS):
            gated.progress(f"{cluster.label}: scale out and in {k + 1} of {SCALE_TRIALS}, under load")
            scaled.append(scale_out_in(cluster, on_added=added_is_new))
            gated.imposed(scaled[-1].result.imposed_s(), "scale: a node added until it streams, another removed")
        scale_part(gated, scaled, limits["read_gap_s"], where["read_gap_s"])


def _judge_identity(case_evidence: CaseEvidence, gated: Any, plan: _Plan) -> None:
    """The part every other part rests on (judged on the case's own evidence, never gated), and the parts a run on
    one machine cannot show."""
    ids = plan.ids
    for clause in ("BZ-DB-1", "SX-RDS-3"):
        case_evidence.part(
            clause,
            False if gated.problems else None if gated.unread else True,
            statistic=msg(
                "part_identity",
                n=len(ids),
                nodes=joined([msg("ident_node", node=n, ident=i.text_i18n()) for n, i in ids.items()]),
            ),
            why=joined(_once(gated.problems)),
            not_shown=joined(gated.unread),
        )
    gated.part(
        "BZ-DB-1",
        None,
        statistic=msg("part_raft"),
        not_shown=msg("raft_not_shown"),
    )
    gated.part(
        "SX-RDS-3",
        None,
        statistic=msg("part_no_spof"),
        not_shown=msg("no_spof_not_shown"),
    )
