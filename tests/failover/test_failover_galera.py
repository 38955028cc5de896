"""The embedded MariaDB Galera cluster (every node takes writes) under the failover trial, judged by the
multi-writer rule: a fault hook that does nothing is noticed; a cluster told to ignore its quorum lets a cut-off
node go on taking writes — split brain and lost writes, judged FAIL (last: the cluster is left diverged); in
``./run slow`` the real faults (kill, freeze, isolate) and scaling pass on it.  Start and stop leave no process,
namespace or folder behind."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from clauseproof.core.errors import ClauseproofError
from clauseproof.failover.trial import run_trial, scale_out_in
from clauseproof.targets.clusters.galera import GaleraCluster, GaleraNode
from clauseproof.targets.host.processes import _working_in

#: timing-dependent (./run test runs these alone, after the rest): the cluster's group-communication timeouts are
#: shortened for the trials (suspect and inactive within seconds): started beside other tests' load, a joining
#: node was partitioned out and never joined within 120 s
pytestmark = pytest.mark.timing


@pytest.fixture(scope="module")
def galera() -> Iterator[GaleraCluster]:
    c = GaleraCluster("embedded-mariadb-galera", "clauseproof_selftest", None)
    c.start()
    yield c
    folder, net = c.folder, c.net
    c.stop()
    assert folder is not None and not folder.exists() and not _working_in(str(folder))
    if net is not None:
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert net.tag not in names


def test_every_node_takes_writes_and_a_hook_that_does_nothing_is_noticed(galera: GaleraCluster) -> None:
    assert all(galera.status(n).get("wsrep_cluster_size") == "3" for n in galera.nodes)
    r = run_trial(galera, fault="kill (a hook that does nothing)", apply=lambda victim: None, before_s=2, settle_s=2)
    assert not r.trial.fault_applied and r.trial.multi_writer
    assert r.trial.problems == [
        f"the fault was not applied: {r.trial.victim} went on taking writes, and no write failed or stalled"
    ]


def _trial(galera: GaleraCluster, fault: str) -> None:
    if fault == "isolate" and galera.net is None:
        pytest.skip(galera.no_network)
    apply, heal = {
        "kill": (galera.kill_node, None),
        "freeze": (galera.freeze_node, galera.thaw_node),
        "isolate": (galera.isolate_node, galera.heal_node),
    }[fault]
    r = run_trial(
        galera,
        fault=fault,
        apply=apply,
        heal=heal,
        hold_s=20,
        restore=galera.start_node if fault == "kill" else galera.wait_rejoin,
        before_s=2,
        deadline_s=45,
    )
    t = r.trial
    assert t.problems == [], t.problems
    assert t.failed_over and t.rto_s < 15 and t.lost == [] and t.split_brain == [] and r.converged, r.convergence


@pytest.mark.slow  # ./run slow: about 30 s each
@pytest.mark.parametrize("fault", ["kill", "freeze", "isolate"])
def test_a_node_killed_frozen_or_cut_off_leaves_the_others_writing_and_rejoins(
    galera: GaleraCluster, fault: str
) -> None:
    _trial(galera, fault)


@pytest.mark.slow  # ./run slow: about 30 s
def test_scaling_out_and_in_joins_by_snapshot_and_converges(galera: GaleraCluster) -> None:
    """The suite's bound (no failed write, gap ≤ 1 s) is its verdict; Galera pauses writes for a view change
    (about 2.5 s seen here), so only the mechanics are checked."""
    galera.wait_ready()
    s = scale_out_in(galera)
    assert s.joined_s is not None and s.result.converged, s.result.convergence
    assert s.result.trial.lost == [] and s.result.trial.split_brain == []
    assert [n.name for n in galera.serving] == [n.name for n in galera.nodes]


@pytest.mark.slow  # ./run slow, about 26 s; the judgement, unit-tested:
# test_failover_history.py::test_two_writable_nodes_in_one_round_fail_whatever_the_rto
def test_a_cluster_that_ignores_its_quorum_is_a_split_brain(galera: GaleraCluster) -> None:
    """Positive control, last (the cluster is left diverged): ``pc.ignore_quorum`` on every node, then one node
    cut off for 15 s — it stays a primary component of its own and takes writes while the other two do."""
    if galera.net is None:
        pytest.skip(galera.no_network)
    galera.wait_ready()
    for n in galera.nodes:
        conn = galera.connect_node(n)
        with conn.cursor() as cur:
            cur.execute("SET GLOBAL wsrep_provider_options = 'pc.ignore_quorum=true'")
        conn.close()

    def restore(victim: GaleraNode) -> float:
        try:
            return galera.wait_rejoin(victim, 5)
        except ClauseproofError:
            galera.serving.remove(victim)  # diverged: no client is handed it for the final read
            raise

    r = run_trial(
        galera,
        fault="isolate (quorum ignored)",
        apply=galera.isolate_node,
        heal=galera.heal_node,
        hold_s=15,
        restore=restore,
        converge_on=lambda victim: None,  # diverged: not waited for
        before_s=2,
        deadline_s=30,
        final_read_s=5,
    )
    t = r.trial
    assert t.split_brain and t.about("split_brain")[0].startswith(f"{t.victim}, cut off or frozen, acknowledged")
    assert t.lost and not r.converged, (len(t.lost), r.convergence)
