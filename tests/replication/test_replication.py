"""SX-RDS-2 checks on real topologies, with their positive controls.

One PostgreSQL topology (primary + 5 streaming replicas behind pgpool-II) is shared by the
module; the controls that damage it (a paused replica, a stopped replica) run last.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clauseproof.core.catalog import load_catalog
from clauseproof.core.errors import ClauseproofError
from clauseproof.core.evidence import judge
from clauseproof.replication import checks as rep
from clauseproof.replication import replicas
from clauseproof.targets.clusters.replicated import Helper, ReplicatedMariaDB, ReplicatedPostgres
from clauseproof.targets.host.folders import FOLDER_PREFIX, reap_stale
from clauseproof.targets.single.external import ExternalTarget, load_profile
from tests.fix_targets import CATALOG
from tests.forwarder import forwarder

NS = "clauseproof_selftest_rep"


@pytest.fixture(scope="module")
def pg_topology() -> Iterator[ReplicatedPostgres]:
    t = ReplicatedPostgres("selftest-pg-replicated", NS, None)
    started = time.perf_counter()
    t.start()
    assert time.perf_counter() - started < 60, "the topology must be up within 60 s"
    replicas.prepare(t.topology())
    yield t
    t.stop()


def test_topology_is_replicating_and_splits_automatically(pg_topology: ReplicatedPostgres) -> None:
    topo = pg_topology.topology()
    states = replicas.replica_states(topo)
    assert [s.counted for s in states] == [True] * 5, [s.problem for s in states]
    assert all(s.catch_up_s is not None and s.catch_up_s < 5 for s in states)
    assert all("WAL bytes" in s.position_lag and "replay_lag" in s.reported_lag for s in states)
    placement = rep.write_placement(topo, writes=40, connections=4)
    assert placement.all_on_primary, placement
    assert topo.automatic_split


def test_balance_passes_on_the_balancing_proxy(pg_topology: ReplicatedPostgres) -> None:
    # A freshly started pgpool-II skewed the first ~200 sessions measurably in 1 of 6 trials
    # (p = 0.002, first reads 30/25/44/43/58); every later round was consistent with equal weights.
    # The suite reports that as it finds it; this self-test is about a balancing proxy, so it
    # lets the pool's 64 children serve their first sessions before the round it judges.
    rep.read_balance(pg_topology.topology(), clients=50, sessions_per_client=2, reads_per_session=1)
    b = rep.read_balance(pg_topology.topology(), clients=50, sessions_per_client=4, reads_per_session=3)
    assert b.balanced, b.problems
    assert b.max_concurrent == 50
    assert b.counter_by_node == b.reads_by_node  # the nodes' own counters agree with the statements
    assert b.reads_by_node["primary"] == 0


def test_balance_fails_against_weights_the_proxy_does_not_follow(pg_topology: ReplicatedPostgres) -> None:
    """Positive control of the chi-square test: declared weights 1:1:1:1:6, the proxy balances 1:1:1:1:1."""
    topo = pg_topology.topology()
    skewed = dataclasses.replace(
        topo, replicas=[dataclasses.replace(n, weight=6.0 if i == 4 else 1.0) for i, n in enumerate(topo.replicas)]
    )
    b = rep.read_balance(skewed, clients=50, sessions_per_client=4, reads_per_session=1)
    assert not b.balanced
    assert any("chi-square" in p for p in b.problems), b.problems


def test_balance_fails_when_every_read_goes_to_the_primary() -> None:
    """Positive control: pgpool-II with load balancing off sends every read to the primary."""
    t = ReplicatedPostgres("selftest-pg-no-balance", NS, None, replicas=2, load_balance=False)
    t.start()
    try:
        topo = t.topology()
        replicas.prepare(topo)
        b = rep.read_balance(topo, clients=10, sessions_per_client=3, reads_per_session=2)
        assert not b.balanced
        assert b.reads_by_node["primary"] == b.reads == 60
        assert any("configured to serve none" in p for p in b.problems)
        assert any("replica1 served no reads" in p for p in b.problems)
    finally:
        t.stop()


def test_one_server_behind_several_endpoints_counts_once(pg_topology: ReplicatedPostgres) -> None:
    """The cheapest cheat on "at least 5 replicas": one replica reached through five endpoints."""
    topo = pg_topology.topology()
    one = topo.replicas[0]
    with contextlib.ExitStack() as stack:
        ports = [stack.enter_context(forwarder(one.endpoint.host, one.endpoint.port)) for _ in range(4)]
        aliases = [
            dataclasses.replace(one, name=f"endpoint{i}", endpoint=dataclasses.replace(one.endpoint, port=p))
            for i, p in enumerate(ports, 2)
        ]
        cheat = dataclasses.replace(topo, replicas=[one, *aliases])
        states = replicas.replica_states(cheat)
    assert [s.counted for s in states] == [True, False, False, False, False], [s.problem for s in states]
    assert all(s.same_server_as == one.name for s in states[1:])
    assert "the same server as replica1" in states[1].problem


def test_replicas_of_another_cluster_and_weights_that_define_balance_away(pg_topology: ReplicatedPostgres) -> None:
    """Replicas that stream from another primary are not counted; declared weights that leave one read node
    cannot make a single node "balanced"."""
    topo = pg_topology.topology()
    other = ReplicatedPostgres("selftest-pg-other-cluster", NS, None, replicas=1)
    other.start()
    try:
        foreign = [dataclasses.replace(n, name="other-cluster1") for n in other.topology().replicas]
        mixed = dataclasses.replace(topo, replicas=[*topo.replicas[:1], *foreign])
        states = replicas.replica_states(mixed)
        assert states[0].counted and not states[1].counted
        assert "another cluster: system identifier" in states[1].problem
    finally:
        other.stop()
    # every read to one replica, weights declared 1, 0, 0, 0, 0 (and 0 for the primary)
    weights = [1.0, 0.0, 0.0, 0.0, 0.0]
    pinned = dataclasses.replace(
        topo,
        read=topo.replicas[0].endpoint,
        replicas=[dataclasses.replace(n, weight=w) for n, w in zip(topo.replicas, weights, strict=True)],
    )
    b = rep.read_balance(pinned, clients=5, sessions_per_client=2, reads_per_session=1)
    assert not b.balanced
    assert any("at least two read nodes with a positive weight" in p for p in b.problems), b.problems


def test_a_profile_declares_or_discovers_the_topology(pg_topology: ReplicatedPostgres, tmp_path: Path) -> None:
    """A vendor's topology through a profile: declared replicas, or discovered from pgpool-II."""
    topo = pg_topology.topology()
    proxy = topo.write
    listed = ", ".join(f'"127.0.0.1:{n.endpoint.port}"' for n in topo.replicas)
    declared = tmp_path / "declared.toml"
    declared.write_text(
        textwrap.dedent(f"""
        [target]
        dialect = "postgresql"
        host = "127.0.0.1"
        port = {proxy.port}
        user = "postgres"
        password_env = "CLAUSEPROOF_SELFTEST_TOPOLOGY_PW"
        [replication]
        primary = "127.0.0.1:{topo.primary.endpoint.port}"
        replicas = [{listed}]
        proxy = "pgpool-II"
        """)
    )
    os.environ["CLAUSEPROOF_SELFTEST_TOPOLOGY_PW"] = proxy.password or ""
    discovered = tmp_path / "discovered.toml"
    discovered.write_text(declared.read_text().split("[replication]")[0] + "[replication]\nproxy = 'pgpool-II'\n")
    for path, source in ((declared, "declared"), (discovered, "discovered")):
        t = ExternalTarget.from_profile(path, "clauseproof_selftest_profile")
        t.start()
        try:
            got = t.topology()
            assert got is not None and source in got.source and got.automatic_split
            assert [n.endpoint.port for n in got.replicas] == [n.endpoint.port for n in topo.replicas]
            assert got.primary.endpoint.port == topo.primary.endpoint.port
            replicas.prepare(got)
            assert sum(s.counted for s in replicas.replica_states(got)) == 5
        finally:
            t.stop()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('primary = "db1"\nreplicas = ["db2:5432"]', "[replication] primary: 'db1' is not host:port"),
        ('replicas = ["db2:5432"]', "the primary's own endpoint is needed"),
        ('read_endpoint = "p:1"\nreplicas = []', "is not a non-empty list of host:port"),
        ('read_endpoint = "p:1"\nreplicas = ["a:1"]\nreplica_weights = [1, 2]', "needs one weight per replica"),
    ],
)
def test_bad_replication_sections_are_named(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "vendor.toml"
    path.write_text(f'[target]\ndialect = "mysql"\nhost = "h"\nuser = "u"\n[replication]\n{body}\n')
    with pytest.raises(ClauseproofError) as exc:
        load_profile(path)
    assert message in str(exc.value) and f"{path}:" in str(exc.value)


def test_a_paused_replica_is_reported_stale(pg_topology: ReplicatedPostgres) -> None:
    """Positive control: a replica that stopped replaying is not current, and not counted."""
    topo = pg_topology.topology()
    with topo.open(topo.replicas[0].endpoint) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_wal_replay_pause()")
        try:
            states = replicas.replica_states(topo, current_within_s=1.0)
        finally:
            cur.execute("SELECT pg_wal_replay_resume()")
    assert not states[0].counted and "stale" in states[0].problem
    assert all(s.counted for s in states[1:])


def test_a_stopped_replica_fails_the_count(pg_topology: ReplicatedPostgres) -> None:
    """Positive control: with one of five replicas stopped, "at least 5 replicas" fails."""
    pg_topology.stop_replica(4)
    states = replicas.replica_states(pg_topology.topology())
    counted = sum(s.counted for s in states)
    assert counted == 4
    assert "cannot connect" in states[4].problem
    assert not judge(load_catalog(CATALOG)["SX-RDS-2a"], counted)


def test_mariadb_topology_two_endpoints_and_a_stopped_sql_thread() -> None:
    """MariaDB: writes on the primary, reads balanced by HAProxy, and a replica whose SQL thread stopped is stale."""
    t = ReplicatedMariaDB("selftest-mariadb-replicated", NS, None, replicas=2)
    t.start()
    try:
        topo = t.topology()
        assert not topo.automatic_split and topo.read != topo.write
        replicas.prepare(topo)
        assert rep.write_placement(topo, writes=20, connections=2).all_on_primary
        b = rep.read_balance(topo, clients=10, sessions_per_client=4, reads_per_session=2)
        assert b.balanced, b.problems
        assert b.counter_by_node == b.reads_by_node
        one = topo.replicas[1]
        with forwarder(one.endpoint.host, one.endpoint.port) as port:  # one server behind a second endpoint
            alias = dataclasses.replace(one, name="endpoint3", endpoint=dataclasses.replace(one.endpoint, port=port))
            states = replicas.replica_states(dataclasses.replace(topo, replicas=[*topo.replicas, alias]))
        assert [s.counted for s in states] == [True, True, False], [s.problem for s in states]
        assert states[2].same_server_as == one.name
        with topo.open(topo.replicas[0].endpoint) as conn, conn.cursor() as cur:
            cur.execute("STOP SLAVE SQL_THREAD")
        states = replicas.replica_states(topo, current_within_s=1.0)
        assert not states[0].replicating and "SQL No" in states[0].problem
        assert not states[0].counted and states[1].counted
    finally:
        t.stop()


def test_a_proxy_left_by_a_killed_run_is_reaped() -> None:
    folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}pgpool-"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / "owner.json").write_text(json.dumps({"pid": dead.pid, "engine": "pgpool"}))
    helper = Helper("sleeper", [sys.executable, "-c", "import time; time.sleep(300)", str(folder)], folder, 1, 15)
    helper.proc = subprocess.Popen(helper.args, start_new_session=True)
    (folder / "sleeper-leader.pid").write_text(str(helper.proc.pid))
    assert str(folder) in reap_stale()
    assert helper.proc.wait(timeout=10) == -signal.SIGKILL
    assert not folder.exists()


def test_replication_suite_skips_a_single_server_with_the_reason(project: pytest.Pytester) -> None:
    result = project.runpytest(
        "suites/replication", "--cp-target=postgresql://postgres@127.0.0.1:5432/postgres", "-rs", "-p", "no:randomly"
    )
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*is one server: SX-RDS-2 needs a replicated topology*"])
    assert os.environ.get("CLAUSEPROOF_TARGET") is None


@pytest.mark.skipif(os.geteuid() != 0, reason="who pgpool-II runs as matters where the harness is root")
def test_pgpool_runs_as_postgres_not_root(pg_topology: ReplicatedPostgres) -> None:
    """Issue 31: the proxy reads its password file and listens as ``postgres``, every child of it too."""
    from tests.targets.test_run_as import users_of_session

    assert pg_topology.proxy is not None and pg_topology.proxy.proc is not None
    assert set(users_of_session(pg_topology.proxy.proc.pid).values()) == {"postgres"}
