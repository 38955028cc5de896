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

from typing import Any

import pytest

from clauseproof.core.evidence import CaseEvidence
from clauseproof.failover import plan
from clauseproof.targets.roles import HACluster


@pytest.mark.clause("BZ-DB-1", "SX-RDS-3")
def test_leader_killed_frozen_and_switched_over_under_load(ha_cluster: HACluster[Any], evidence: CaseEvidence) -> None:
    """The trials of the module's docstring, on one cluster (``clauseproof.failover.plan.verify``)."""
    plan.verify(ha_cluster, evidence)
