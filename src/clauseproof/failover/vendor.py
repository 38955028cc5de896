"""A vendor's cluster under the failover suite, through the profile's ``[failover]`` section.

```toml
[failover]
# the nodes, each reached directly (the profile's [target] host:port is the write endpoint clients use)
nodes = [
    { name = "db1", host = "10.0.0.11", port = 5432 },
    { name = "db2", host = "10.0.0.12", port = 5432 },
    { name = "db3", host = "10.0.0.13", port = 5432 },
]
# who leads now: SQL run on any node that returns the leader's name, or a command that prints it; without
# either, the one node where pg_is_in_recovery() is false (MySQL family: @@read_only is off)
leader_sql = "SELECT leader_name FROM vendor_catalog.cluster_state"
leader_command = "vendorctl leader"
# fault commands; {node}, {host} and {port} are the node's, shell-quoted by the harness; each must return when
# the fault has taken effect (a kill: the processes are gone)
kill_node = "ssh {host} sudo pkill -9 -f vendor-db"
start_node = "ssh {host} sudo systemctl start vendor-db"
freeze_node = "ssh {host} sudo pkill -STOP -f vendor-db"
thaw_node = "ssh {host} sudo pkill -CONT -f vendor-db"
switchover = "vendorctl switchover --from {node}"
# thresholds the acceptance plan sets for this system (the defaults: RTO 30 s, read gap 1 s, 5 trials per fault,
# a 40 s freeze) and the seconds a command may take
rto_s = 30
freeze_s = 40
command_timeout_s = 120
```

Faults whose commands are absent are NOT SHOWN rows naming the missing keys.  Every fault command runs only
with ``--cp-destructive=yes``: without it, every fault part is a NOT SHOWN row saying so.  ``isolate_node`` cuts
the node off from its peers and ``heal`` lets it back in (the harness must still reach the node from where it
runs, to see whether it acknowledges writes while cut off).  The scale part runs ``add_node`` for the first of
``spare_nodes`` not in the cluster (``{node}`` is the spare's name), waits until it answers as a replica and holds
the leader's ids, and runs ``remove_node`` for a node that neither leads nor was just added.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clauseproof.core.commands import template_problem, timed, vendor_command
from clauseproof.core.errors import ClauseproofError
from clauseproof.core.i18n import Text, msg
from clauseproof.targets.roles import Database
from clauseproof.targets.sections import Section

COMMANDS = (
    "kill_node",
    "start_node",
    "stop_node",
    "freeze_node",
    "thaw_node",
    "switchover",
    "isolate_node",
    "heal",
    "add_node",
    "remove_node",
    "leader_command",
)
#: what each fault needs from the profile
NEEDS = {
    "kill": ("kill_node", "start_node"),
    "freeze": ("freeze_node", "thaw_node"),
    "isolate": ("isolate_node", "heal"),
    "switchover": ("switchover",),
}
KEYS: dict[str, type | tuple[type, ...]] = {
    "nodes": list,
    "spare_nodes": list,
    "leader_sql": str,
    "rto_s": (int, float),
    "read_gap_s": (int, float),
    "freeze_s": (int, float),
    "trials": int,
    "command_timeout_s": (int, float),
    **dict.fromkeys(COMMANDS, str),
}


@dataclass(frozen=True)
class VendorNode:
    name: str
    host: str
    port: int


@dataclass(frozen=True)
class FailoverSection:
    """``[failover]`` as validated."""

    nodes: tuple[VendorNode, ...]
    commands: dict[str, str] = field(default_factory=dict)
    spare_nodes: tuple[VendorNode, ...] = ()  # what add_node brings in, in order (the scale trial)
    leader_sql: str = ""
    thresholds: dict[str, float] = field(default_factory=dict)  # rto_s, read_gap_s, freeze_s, trials: as declared
    command_timeout_s: float = 120.0


def parse(body: dict[str, Any], err: Any) -> FailoverSection | None:
    """Validate ``[failover]``; ``err(section, key, msg, fix)`` makes the error naming the file and line."""
    if not body:
        return None
    sec = "failover"
    nodes = body.get("nodes")
    example = '{ name = "db1", host = "10.0.0.11", port = 5432 }'
    if not nodes:
        raise err(sec, "nodes" if "nodes" in body else None, "no nodes", f"list them: nodes = [{example}, ...]")
    out = _nodes(nodes, "nodes", err, example)
    spare = _nodes(body.get("spare_nodes", []), "spare_nodes", err, example)
    if len({n.name for n in out + spare}) != len(out) + len(spare):
        key = "spare_nodes" if len({n.name for n in out}) == len(out) else "nodes"
        raise err(sec, key, "two nodes have the same name", "give every node its own name")
    if len(out) < 2:
        raise err(sec, "nodes", "a failover needs at least two nodes", "list every node of the cluster")
    commands = {k: body[k] for k in COMMANDS if k in body}
    for name, template in commands.items():
        problem = template_problem(template, ("node", "host", "port"))
        if problem:
            raise err(sec, name, problem, "write {node}, {host}, {port} bare, without quotes")
    for key in ("rto_s", "read_gap_s", "freeze_s", "trials", "command_timeout_s"):
        if key in body and body[key] <= 0:
            raise err(sec, key, f"{body[key]!r} is not positive", f"give {key} a positive value")
    keys = ("rto_s", "read_gap_s", "freeze_s", "trials")
    thresholds: dict[str, float] = {k: float(body[k]) for k in keys if k in body}
    return FailoverSection(
        nodes=tuple(out),
        spare_nodes=tuple(spare),
        commands=commands,
        leader_sql=body.get("leader_sql", ""),
        thresholds=thresholds,
        command_timeout_s=float(body.get("command_timeout_s", 120.0)),
    )


def _nodes(nodes: list[Any], key: str, err: Any, example: str) -> list[VendorNode]:
    out = []
    for n in nodes:
        if (
            not isinstance(n, dict)
            or set(n) != {"name", "host", "port"}
            or not isinstance(n["name"], str)
            or not isinstance(n["host"], str)
            or not isinstance(n["port"], int)
            or not 0 < n["port"] < 65536
        ):
            raise err("failover", key, f"{n!r} is not a node", f"write each node as {example}")
        out.append(VendorNode(n["name"], n["host"], n["port"]))
    return out


#: ``[failover]`` of a profile, registered in pyproject.toml (entry point group ``clauseproof.sections``).
SECTION = Section("failover", KEYS, parse)


class VendorCluster:
    """A profile target's cluster with the profile's fault commands: what :func:`run_trial` drives.

    ``destructive`` is the run's ``--cp-destructive``: without it :meth:`faults` offers none, and no command is
    ever run."""

    kind = "external"

    def __init__(self, target: Database, section: FailoverSection, destructive: bool) -> None:
        self.target = target
        self.section = section
        self.destructive = destructive
        self.label = target.label
        self.namespace = target.namespace
        self.dialect = target.dialect
        self.nodes = list(section.nodes)
        self.commands: list[dict[str, Any]] = []  # every command run, with its seconds (the evidence)

    # -- what can be done ------------------------------------------------------------------
    def faults(self) -> dict[str, Text | str]:
        """Each fault of the suite → "" when it can be applied, else why not (the NOT SHOWN row's words)."""
        out: dict[str, Text | str] = {}
        for fault, keys in NEEDS.items():
            missing = [k for k in keys if k not in self.section.commands]
            if missing:
                out[fault] = msg("fault_no_command", commands=" / ".join(missing))
            elif not self.destructive:
                out[fault] = msg("fault_needs_opt_in")
            else:
                out[fault] = ""
        if "add_node" not in self.section.commands or "remove_node" not in self.section.commands:
            out["scale"] = msg("fault_no_command", commands="add_node / remove_node")
        elif not self.section.spare_nodes:
            out["scale"] = msg("fault_no_spare")
        elif not self.destructive:
            out["scale"] = msg("fault_needs_opt_in")
        else:
            out["scale"] = ""
        return out

    threshold_source = msg("threshold_profile")

    def thresholds(self) -> dict[str, float]:
        return dict(self.section.thresholds)

    # -- connections ------------------------------------------------------------------------
    def connect(self) -> Any:
        return self.target.connect()

    def connect_node(self, node: VendorNode | None, timeout: float = 2.0) -> Any:
        """An autocommit connection to ``node`` itself (None: the write endpoint), outside the namespace."""
        if node is None:
            return self.target.connect(in_namespace=False)
        ep = self.target.address()
        if self.dialect != "postgresql":
            from clauseproof.targets.pymysql_conn import connect as connect_mysql

            return connect_mysql(
                host=node.host,
                port=node.port,
                user=ep.user,
                password=ep.password or "",
                connect_timeout=max(1, int(timeout)),
                read_timeout=60,  # a commit may wait for its replicas; a frozen node answers never
                write_timeout=60,
                autocommit=True,
            )
        import psycopg

        return psycopg.connect(
            host=node.host,
            port=node.port,
            user=ep.user,
            password=ep.password,
            dbname=ep.database,
            connect_timeout=max(2, int(timeout)),  # libpq's least
            application_name=self.namespace,
            autocommit=True,
        )

    def leader(self) -> VendorNode | None:
        """The node the profile's ``leader_command`` or ``leader_sql`` names, else the one node out of recovery."""
        name = ""
        if "leader_command" in self.section.commands:
            name = self._leader_from_command()
        else:
            for node in self.nodes:
                try:
                    conn = self.connect_node(node, timeout=2)
                except Exception:
                    continue
                try:
                    with conn.cursor() as cur:
                        cur.execute(self.section.leader_sql or self._is_primary())
                        row = cur.fetchone()
                except Exception:
                    continue
                finally:
                    conn.close()
                if self.section.leader_sql:
                    name = str(row[0]) if row and row[0] is not None else ""
                    break
                if row and row[0]:
                    return node
        return next((n for n in self.nodes if n.name == name), None)

    def _leader_from_command(self) -> str:
        """The first line the profile's ``leader_command`` prints ("" when it fails: asked again later, as a
        leader may be between elections).  Run like every vendor command (its own session, no input, killed whole
        at ``command_timeout_s``, known to ``reap``); a timeout is an error."""
        with tempfile.TemporaryDirectory(prefix="clauseproof-leader-") as folder:
            out = Path(folder) / "stdout"
            started = time.monotonic()
            try:
                timed(
                    "leader_command",
                    [self.section.commands["leader_command"]],
                    shell=True,
                    stdout=out,
                    timeout=self.section.command_timeout_s,
                )
            except ClauseproofError:
                if time.monotonic() - started >= self.section.command_timeout_s:
                    raise ClauseproofError(
                        f"{self.label}: leader_command did not answer within {self.section.command_timeout_s:g} s",
                        checked=self.section.commands["leader_command"],
                        fix="make it print the leader's node name and exit, or raise command_timeout_s",
                    ) from None
                return ""
            lines = out.read_text(errors="replace").strip().splitlines()
        return lines[0].strip() if lines else ""

    def _is_primary(self) -> str:
        """SQL true on a node that is not a replica (PostgreSQL: out of recovery; MySQL family: not read-only)."""
        return "SELECT NOT pg_is_in_recovery()" if self.dialect == "postgresql" else "SELECT @@global.read_only = 0"

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds until a leader is named and every node answers."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.leader() is not None and all(self._answers(n) for n in self.nodes):
                return time.monotonic() - started
            time.sleep(0.5)
        raise ClauseproofError(
            f"{self.label}: no leader named, or a node not answering, within {timeout:g} s",
            checked=", ".join(f"{n.name} {n.host}:{n.port}" for n in self.nodes),
            fix="check the cluster and the profile's leader_sql / leader_command",
        )

    def _answers(self, node: VendorNode) -> bool:
        try:
            self.connect_node(node, timeout=2).close()
            return True
        except Exception:
            return False

    def wait_rejoin(self, node: VendorNode, timeout: float = 120.0, since: float | None = None) -> float:
        """Seconds until ``node`` answers as a replica (``pg_is_in_recovery()``; MySQL family: read-only)."""
        started = time.monotonic() if since is None else since
        while time.monotonic() - started < timeout:
            try:
                conn = self.connect_node(node, timeout=2)
                try:
                    with conn.cursor() as cur:
                        cur.execute(self._is_primary())
                        row = cur.fetchone()
                finally:
                    conn.close()
                if row and not row[0]:
                    return time.monotonic() - started
            except Exception:
                pass
            time.sleep(0.5)
        raise ClauseproofError(f"{node.name} did not answer as a replica within {timeout:g} s")

    # -- faults -----------------------------------------------------------------------------
    def _run(self, key: str, node: VendorNode) -> float:
        """Run the profile's ``key`` command for ``node``; the instant it returned (the fault in effect)."""
        if not self.destructive:
            raise ClauseproofError(f"{self.label}: {key} not run: faults on a profile target need --cp-destructive=yes")
        phase = vendor_command(
            f"{key} {node.name}",
            self.section.commands[key],
            self.target,
            {"node": node.name, "host": node.host, "port": node.port},
            timeout=self.section.command_timeout_s,
        )
        self.commands.append({"command": key, "node": node.name, "seconds": phase.seconds})
        return time.monotonic()

    def kill_node(self, node: VendorNode) -> float:
        return self._run("kill_node", node)

    def start_node(self, node: VendorNode) -> float:
        started = time.monotonic()
        self._run("start_node", node)
        return self.wait_rejoin(node, since=started)

    def freeze_node(self, node: VendorNode) -> float:
        return self._run("freeze_node", node)

    def thaw_node(self, node: VendorNode) -> None:
        self._run("thaw_node", node)

    def isolate_node(self, node: VendorNode) -> float:
        return self._run("isolate_node", node)

    def heal_node(self, node: VendorNode) -> None:
        self._run("heal", node)

    def switchover(self, node: VendorNode) -> float:
        return self._run("switchover", node)

    def add_node(self) -> VendorNode:
        """Scale out: the profile's ``add_node`` for the first spare node not yet in the cluster, which from then
        on is one of its nodes (:meth:`wait_rejoin` waits until it answers as a replica)."""
        spare = next((n for n in self.section.spare_nodes if n not in self.nodes), None)
        if spare is None:
            raise ClauseproofError(f"{self.label}: every spare node is in the cluster already; none left to add")
        self._run("add_node", spare)
        self.nodes.append(spare)
        return spare

    def remove_node(self, node: VendorNode) -> None:
        """Scale in: the profile's ``remove_node``; the node is no longer one of the cluster's."""
        self._run("remove_node", node)
        self.nodes.remove(node)

    def sync_standby(self) -> VendorNode | None:
        """Not known from outside: the scale trial removes a node that is neither the leader nor the new one."""
        return None

    def describe(self) -> dict[str, Any]:
        return {
            **self.target.describe(),
            "nodes": [{"name": n.name, "host": n.host, "port": n.port} for n in self.nodes],
            "leader": "leader_command"
            if "leader_command" in self.section.commands
            else ("leader_sql" if self.section.leader_sql else f"the node where {self._is_primary()[7:]}"),
            "fault_commands": sorted(k for k in self.section.commands if k != "leader_command"),
            "destructive_opt_in": self.destructive,
            "commands_run": self.commands,
        }
