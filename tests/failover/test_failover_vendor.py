"""The profile's [failover] section: what it takes, what it refuses (naming the file, line and key), and what a
vendor cluster offers without the run's opt-in."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from clauseproof.core.errors import ClauseproofError
from clauseproof.failover.trial import run_trial
from clauseproof.failover.vendor import FailoverSection, VendorCluster
from clauseproof.targets.base import Endpoint
from clauseproof.targets.clusters.replicated import ReplicatedMariaDB
from clauseproof.targets.single.external import ExternalTarget, load_profile

TARGET = '[target]\ndialect = "postgresql"\nhost = "127.0.0.1"\nport = 5432\nuser = "u"\ndatabase = "d"\n'
NODES = 'nodes = [{ name = "a", host = "10.0.0.1", port = 5432 }, { name = "b", host = "10.0.0.2", port = 5432 }]\n'


def _load(tmp_path: Path, failover: str) -> FailoverSection:
    path = tmp_path / "vendor.toml"
    path.write_text(TARGET + "[failover]\n" + failover)
    section = load_profile(path).section("failover")
    assert isinstance(section, FailoverSection)
    return section


def test_a_complete_section_is_read_with_its_thresholds(tmp_path: Path) -> None:
    s = _load(
        tmp_path,
        NODES + 'kill_node = "ssh {host} pkill -9 db"\nstart_node = "ssh {host} start-db --port {port}"\n'
        'leader_sql = "SELECT name FROM cluster_leader"\nrto_s = 45\ntrials = 7\nfreeze_s = 60\n',
    )
    assert [n.name for n in s.nodes] == ["a", "b"] and s.nodes[1].host == "10.0.0.2"
    assert s.thresholds == {"rto_s": 45.0, "trials": 7.0, "freeze_s": 60.0}
    assert set(s.commands) == {"kill_node", "start_node"} and s.leader_sql.startswith("SELECT")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("", "no nodes"),
        ('nodes = [{ name = "a", host = "h", port = 1 }]\n', "at least two nodes"),
        ('nodes = [{ name = "a", host = "h" }, { name = "b", host = "h", port = 1 }]\n', "is not a node"),
        ('nodes = [{ name = "a", host = "h", port = 1 }, { name = "a", host = "i", port = 1 }]\n', "same name"),
        (NODES + "kill_node = \"ssh '{host}' pkill db\"\n", "inside quotes"),
        (NODES + 'kill_node = "ssh {hostname} pkill db"\n', "{hostname} is not one of"),
        (NODES + "rto_s = 0\n", "not positive"),
        (NODES + 'kill_nodes = "x"\n', "unknown key"),
        (NODES + 'rto_s = "30"\n', "not of type"),
        (NODES + 'spare_nodes = [{ name = "a", host = "h", port = 1 }]\n', "same name"),
        (NODES + 'spare_nodes = [{ name = "c" }]\n', "is not a node"),
    ],
)
def test_a_bad_section_is_a_clear_error_naming_the_key(tmp_path: Path, body: str, says: str) -> None:
    with pytest.raises(ClauseproofError, match=says) as err:
        _load(tmp_path, body or 'leader_sql = "x"\n')
    assert "vendor.toml:" in str(err.value) and "[failover]" in str(err.value)


class _Target:
    label, namespace, dialect = "vendor", "cp_ns", "postgresql"


def _as_target(t: object) -> Any:
    """A stand-in holding only what the adapter asks of its target."""
    return t


def test_without_the_opt_in_no_fault_is_offered_and_none_runs(tmp_path: Path) -> None:
    s = _load(tmp_path, NODES + 'kill_node = "false"\nstart_node = "false"\nswitchover = "false"\n')
    c = VendorCluster(_as_target(_Target()), s, destructive=False)
    assert {f: str(why) for f, why in c.faults().items()} == {
        "kill": "faults on a profile target need the run's explicit opt-in: --cp-destructive=yes",
        "freeze": "the profile's [failover] declares no freeze_node / thaw_node",
        "isolate": "the profile's [failover] declares no isolate_node / heal",
        "switchover": "faults on a profile target need the run's explicit opt-in: --cp-destructive=yes",
        "scale": "the profile's [failover] declares no add_node / remove_node",
    }
    with pytest.raises(ClauseproofError, match="--cp-destructive=yes"):
        c.kill_node(c.nodes[0])
    assert c.commands == []
    assert VendorCluster(_as_target(_Target()), s, destructive=True).faults()["kill"] == ""


def test_the_leader_command_names_the_leader(tmp_path: Path) -> None:
    s = _load(tmp_path, NODES + 'leader_command = "echo b"\n')
    assert VendorCluster(_as_target(_Target()), s, destructive=False).leader() == s.nodes[1]
    s = _load(tmp_path, NODES + 'leader_command = "echo nobody"\n')
    assert VendorCluster(_as_target(_Target()), s, destructive=False).leader() is None


class _Reachable(_Target):
    def address(self) -> Endpoint:
        return Endpoint("127.0.0.1", 1, "u", "d", password="secret")


def test_a_fault_command_that_fails_is_a_clear_error_naming_the_node_and_the_command(tmp_path: Path) -> None:
    s = _load(tmp_path, NODES + 'kill_node = "echo cannot reach {host} >&2; exit 3"\nstart_node = "true"\n')
    c = VendorCluster(_as_target(_Reachable()), s, destructive=True)
    with pytest.raises(ClauseproofError) as err:
        c.kill_node(c.nodes[1])
    said = str(err.value)
    assert "kill_node b failed (exit 3): cannot reach 10.0.0.2" in said and "exit 3" in said
    assert c.commands == []  # a command that failed is not recorded as run


@pytest.mark.timing  # > 100 writes acknowledged in the trial's 3 s; both nodes seen writable in one 100 ms round
def test_a_mysql_family_cluster_is_driven_by_the_same_trial(tmp_path: Path) -> None:
    """A MariaDB primary and its GTID replica declared in [failover] (no fault commands: nothing may be broken):
    the leader is the node that is not read-only, writers, readers and probers speak MySQL.  The replica is
    read_only, but MariaDB's read_only does not bind a user with READ ONLY ADMIN (the harness's user has every
    privilege): the probers' writes are taken there too, and the judge reports two writable nodes — a second
    node that takes writes is a split brain waiting for its failover, whatever the replication says."""
    topology = ReplicatedMariaDB("selftest-mariadb-failover", "clauseproof_selftest_fo", None, replicas=1)
    topology.start()
    try:
        topo = topology.topology()
        assert topo is not None
        p, r = topo.primary.endpoint, topo.replicas[0].endpoint
        profile = tmp_path / "mysql.toml"
        profile.write_text(
            f'[target]\ndialect = "mysql"\nhost = "127.0.0.1"\nport = {p.port}\nuser = "{p.user}"\n'
            f'password_env = "CP_SELFTEST_MY_PASSWORD"\ndatabase = "{p.database}"\n'
            f'[failover]\nnodes = [{{ name = "primary", host = "127.0.0.1", port = {p.port} }}, '
            f'{{ name = "replica", host = "127.0.0.1", port = {r.port} }}]\n'
        )
        os.environ["CP_SELFTEST_MY_PASSWORD"] = p.password or ""
        target = ExternalTarget.from_profile(profile, "clauseproof_selftest_fo_vendor")
        target.start()
        try:
            section = target.profile.section("failover") if target.profile else None
            assert section is not None
            c = VendorCluster(target, section, destructive=False)
            leader = c.leader()
            assert leader is not None and leader.name == "primary"
            result = run_trial(c, fault="kill (a hook that does nothing)", apply=lambda v: None, before_s=2, settle_s=1)
            t = result.trial
            assert t.acknowledged > 100 and t.lost == [] and t.indeterminate_after_fault == 0
            assert t.split_brain and t.split_brain[0][1] == ["primary", "replica"]
            assert t.about("split_brain")[0].endswith("primary, replica")
            assert result.converged, result.convergence  # the replica holds the primary's ids
            assert c.wait_rejoin(c.nodes[1], timeout=5) < 5  # the replica answers as one
        finally:
            target.stop()
    finally:
        topology.stop()


class _Cursor:
    def __init__(self, rows: list[tuple[int, ...]]) -> None:
        self.rows = rows

    def __enter__(self) -> _Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, sql: str, params: object = None) -> None:
        return None

    def fetchall(self) -> list[tuple[int, ...]]:
        return self.rows

    def fetchone(self) -> tuple[int, ...]:
        return self.rows[0]


class _Conn:
    def __init__(self, rows: list[tuple[int, ...]]) -> None:
        self.rows = rows

    def cursor(self) -> _Cursor:
        return _Cursor(self.rows)

    def close(self) -> None:
        return None


class _StaleCopy:
    """The cheapest scale-out: a "new node" that answers, but holds a copy made before the last writes."""

    namespace = "cp_ns"

    def connect(self) -> _Conn:
        return _Conn([(1,), (2,), (3,)])  # the leader holds ids 1, 2, 3

    def connect_node(self, node: object, timeout: float = 2.0) -> _Conn:
        return _Conn([(2, 3)])  # count 2, sum 3: ids 1 and 2 only


def test_a_node_holding_a_stale_copy_does_not_converge() -> None:
    from clauseproof.failover.trial import _final_read

    class N:
        name = "node4"

    stale: Any = _StaleCopy()  # only what the final read asks of a cluster
    ids, converged, said = _final_read(stale, N(), timeout=0.6)
    assert ids == [1, 2, 3] and not converged
    assert str(said) == "node4 held (2, 3) (count, sum) against the leader's (3, 6) after 0.6 s"


def test_a_leader_command_that_fails_names_no_one_and_one_that_hangs_is_stopped_whole(tmp_path: Path) -> None:
    s = _load(tmp_path, NODES + 'leader_command = "echo a; exit 2"\n')
    assert (
        VendorCluster(_as_target(_Target()), s, destructive=False).leader() is None
    )  # asked again later, never guessed
    s = _load(tmp_path, NODES + 'leader_command = "sleep 31.25 & wait"\ncommand_timeout_s = 0.5\n')
    with pytest.raises(ClauseproofError, match=r"leader_command did not answer within 0\.5 s"):
        VendorCluster(_as_target(_Target()), s, destructive=False).leader()
    assert subprocess.run(["pgrep", "-f", "sleep 31.25"], capture_output=True).returncode == 1  # none left
