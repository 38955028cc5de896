"""The embedded HA cluster (Patroni over etcd, HAProxy) under real faults (kill, freeze), and the positive control
of a fault hook that does nothing; start and stop leave nothing behind, even with a node left frozen."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from clauseproof.failover.trial import run_trial
from clauseproof.targets.embedded import _working_in
from clauseproof.targets.ha import PatroniCluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[PatroniCluster]:
    c = PatroniCluster("embedded-postgresql-ha", "clauseproof_selftest", None)
    c.start()
    yield c
    folder = c.folder
    c.stop()
    assert folder is not None and not folder.exists()
    assert not _working_in(str(folder))  # no etcd, Patroni, PostgreSQL or HAProxy left


def test_killing_the_leader_fails_over_without_losing_an_acknowledged_write(cluster: PatroniCluster) -> None:
    r = run_trial(cluster, fault="kill", apply=cluster.kill_node, restore=cluster.start_node, before_s=2, settle_s=2)
    t = r.trial
    assert t.problems == [], t.problems
    assert t.failed_over and 1 < t.rto_s < 30 and t.lost == [] and t.acknowledged > 100
    assert r.converged, r.convergence


def test_freezing_the_leader_past_its_ttl_fails_over_and_the_old_leader_steps_down(cluster: PatroniCluster) -> None:
    r = run_trial(
        cluster,
        fault="freeze",
        apply=cluster.freeze_node,
        heal=cluster.thaw_node,
        hold_s=22,
        restore=cluster.wait_rejoin,
        before_s=2,
        settle_s=4,
    )
    t = r.trial
    assert t.problems == [], t.problems
    assert t.failed_over and 10 < t.rto_s < 30 and t.lost == [] and t.stale_writes == [] and t.split_brain == []
    assert r.healed_after_s is not None and r.healed_after_s >= 22
    assert r.rejoin_s is not None and r.converged, r.convergence


def test_a_fault_hook_that_does_nothing_is_noticed(cluster: PatroniCluster) -> None:
    r = run_trial(cluster, fault="kill (a hook that does nothing)", apply=lambda victim: None, before_s=2, settle_s=2)
    assert not r.trial.fault_applied
    assert r.trial.problems[0].startswith("the fault was not applied")


def test_the_cluster_runs_postgres_as_postgres(cluster: PatroniCluster) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root hands the nodes to the postgres user")
    pids = _working_in(str(cluster.nodes[0].folder))  # Patroni, its PostgreSQL and the backends
    assert pids and all(Path(f"/proc/{pid}").stat().st_uid != 0 for pid in pids)


def test_a_node_left_frozen_is_still_stopped(cluster: PatroniCluster) -> None:
    """Last in the module: a replica frozen and never continued; the fixture's stop must leave nothing behind."""
    leader = cluster.leader()
    replica = next(n for n in cluster.nodes if leader is None or n.name != leader.name)
    cluster.freeze_node(replica)
    assert all(
        Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("T") for pid in _working_in(str(replica.folder))
    )
