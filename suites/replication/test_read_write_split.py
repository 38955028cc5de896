"""SX-RDS-2: at least 5 read-only replicas, automatic read/write split, reads balanced over them.

Against a replicated topology (the embedded pgpool-II and HAProxy topologies, or a vendor's
declared in a profile):

- every replica is verified directly: reachable, read-only, replicating, and current (it
  replays a marker committed on the primary within a few seconds, judged by LSN / GTID
  position; the servers' timestamp-based lag is reported beside it);
- writes through the write endpoint each record the node that ran them; all must be the primary,
  and the primary's own insert counter must agree;
- 50 concurrent clients open many new sessions on the read endpoint; each read reports its
  node inside the statement, cross-checked with each node's own read counter; balance is a
  chi-square test of the sessions' first reads against the configured weights;
- read-your-writes and replication lag are measured and reported (the clause sets no bound).
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from clauseproof.core.catalog import Catalog
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import Text, joined, msg
from clauseproof.replication import checks as rep
from clauseproof.replication import replicas
from clauseproof.targets import Target
from clauseproof.targets.clusters.topology import Topology, pool_nodes


def _pool_nodes(topology: Topology) -> list[dict[str, Any]] | None:
    """pgpool-II's own per-node view (select_cnt is the proxy's counter), when the read endpoint is pgpool."""
    if topology.dialect != "postgresql":
        return None
    keep = ("node_id", "hostname", "port", "status", "role", "lb_weight", "select_cnt", "replication_delay")
    with contextlib.suppress(Exception), topology.open(topology.read) as conn:
        return [{k: v for k, v in row.items() if k in keep} for row in pool_nodes(conn)]
    return None


@pytest.mark.clause("SX-RDS-2a", "SX-RDS-2b", "SX-RDS-2c")
def test_read_write_split(replicated: tuple[Target, Topology], evidence: CaseEvidence, clause_catalog: Catalog) -> None:
    target, topology = replicated
    evidence.record.target = target.label
    p_count, p_split, p_bal = (clause_catalog[c].params for c in ("SX-RDS-2a", "SX-RDS-2b", "SX-RDS-2c"))
    sessions = max(2, round(p_bal["sessions_per_client"] * min(evidence.scale, 1.0)))
    evidence.parameters(
        topology=topology.describe(),
        current_within_s=p_count["current_within_s"],
        writes=p_split["writes"],
        clients=p_bal["clients"],
        sessions_per_client=sessions,
        reads_per_session=p_bal["reads_per_session"],
        alpha=p_bal["alpha"],
        identity_sql=replicas.IDENTITY[topology.dialect],
    )
    evidence.window(msg("win_rw_split"))
    evidence.progress(f"SX-RDS-2 on {target.label}: verifying {len(topology.replicas)} replicas ...")
    replicas.prepare(topology)
    states = replicas.replica_states(topology, current_within_s=p_count["current_within_s"])
    counted = [s for s in states if s.counted]
    verified = {s.name for s in counted}
    evidence.parameters(replicas=[vars(s) | {"counted": s.counted} for s in states])
    problems = joined([msg("named_part", name=s.name, statistic=s.problem) for s in states if s.problem])
    if problems:
        evidence.note(msg("note_replica_remarks", problems=problems))
    evidence.measure(
        "SX-RDS-2a",
        len(counted),
        "replicas",
        statistic=msg("distinct_replicas", within=p_count["current_within_s"], source=topology.source),
        samples=[s.catch_up_s for s in states if s.catch_up_s is not None],
        sample_unit="s",
        why=problems,
    )

    placement = rep.write_placement(topology, writes=p_split["writes"])
    pool_before = _pool_nodes(topology)
    evidence.progress(
        f"SX-RDS-2 on {target.label}: {p_bal['clients']} clients x {sessions} new sessions x "
        f"{p_bal['reads_per_session']} reads ..."
    )
    balance = rep.read_balance(
        topology,
        clients=p_bal["clients"],
        sessions_per_client=sessions,
        reads_per_session=p_bal["reads_per_session"],
        alpha=p_bal["alpha"],
        verified=verified,
    )
    pool_after = _pool_nodes(topology)
    ryw = rep.read_your_writes(topology)
    evidence.parameters(
        write_placement=vars(placement),
        read_balance=balance.evidence(),
        pgpool_nodes_before=pool_before,
        pgpool_nodes_after=pool_after,
        read_your_writes=vars(ryw),
    )

    replica_reads = sum(balance.reads_by_node[n] for n in verified)
    split_ok = topology.automatic_split and placement.all_on_primary and replica_reads > 0
    if not topology.automatic_split:
        why: Text | str = msg("rw_two_endpoints")
    elif not placement.all_on_primary:
        why = msg("rw_writes_elsewhere", served=str(placement.served_by), primary=str(placement.primary_identity))
        if placement.errors:
            why = joined([why, msg("errors_were", errors=str(placement.errors[:2]))])
    elif not replica_reads:
        why = msg("rw_no_replica_read")
    else:
        why = msg("rw_split_seen", writes=placement.writes, reads=replica_reads)
    evidence.measure(
        "SX-RDS-2b",
        split_ok,
        "bool",
        statistic=msg("part_rw_split_how", how=why) if split_ok else msg("part_rw_split"),
        why=why,
    )
    evidence.measure(
        "SX-RDS-2c",
        balance.balanced,
        "bool",
        statistic=msg(
            "part_read_balance",
            chi2=f"{balance.chi2:.2f}",
            dof=balance.dof,
            p=f"{balance.p_value:.3g}",
            alpha=f"{balance.alpha:g}",
            sessions=sum(balance.sessions_by_node.values()),
            weights=str(balance.weights),
            reads=str(balance.reads_by_node),
        ),
        samples=[float(balance.reads_by_node[n.name]) for n in topology.replicas],
        sample_unit="reads",
        why=joined(balance.problems),
    )
    lag = [s.catch_up_s for s in states if s.catch_up_s is not None]
    evidence.note(msg("note_lag_by_position", ms=f"{max(lag) * 1000:.1f}") if lag else msg("note_no_replica_marker"))
    same = msg("two_endpoints_na") if ryw.same_session_seen is None else f"{ryw.same_session_seen}/{ryw.attempts}"
    evidence.note(msg("note_read_your_writes", same=same, new=f"{ryw.new_session_seen}/{ryw.attempts}"))
    if not topology.automatic_split:
        evidence.note(msg("note_split", proxy=topology.proxy))
    evidence.require_pass()
