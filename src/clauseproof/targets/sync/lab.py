"""What the two embedded sync stand-ins share (:mod:`~clauseproof.targets.sync.logical`,
:mod:`~clauseproof.targets.sync.binlog`): named nodes started together, tasks that each reach their source or
target through a :class:`~clauseproof.targets.faults.relay.Relay`, and the three faults on a task's target.

- ``network``: the task's relay becomes a black hole;
- ``host``: every process of the target's PostgreSQL SIGKILLed, as its machine dying, and every relay that
  touches the machine cut with it;
- ``database``: the target's PostgreSQL stopped cleanly (connections refused).

Each is lifted by starting what was stopped (on the same port) and healing what was cut.
"""

from __future__ import annotations

import contextlib
from typing import Any

from clauseproof.core.errors import ClauseproofError
from clauseproof.core.i18n import Text, msg
from clauseproof.targets.base import Target
from clauseproof.targets.host import processes
from clauseproof.targets.single.postgres import EmbeddedPostgres

FAULTS = ("network", "host", "database")


class SyncLab(Target):
    """Nodes by name (a is the target's own endpoint), tasks by name; subclasses make and drop the tasks."""

    kind = "embedded"
    nodes: dict[str, Any]
    tasks: dict[str, Any]  # each with .source, .target and .relay

    def __init__(self, label: str, namespace: str) -> None:
        super().__init__(label, namespace)
        self.down: dict[str, str] = {}  # node → fault kind while it is down

    def drop_task(self, name: str) -> None:
        raise NotImplementedError

    def why_not(self, scenario: str) -> Text | str:
        return msg("sync_not_declared", target=self.label, scenario=scenario)

    def fault_missing(self, kind: str) -> str:
        """Every fault can be applied to the harness's own nodes."""
        return ""

    def start(self) -> None:
        try:
            processes.start_together(self.nodes.values())
        except BaseException:
            self.stop()
            raise
        self.endpoint = self.nodes["a"].endpoint

    def stop(self) -> None:
        """Drop every task, stop every node. Never raises."""
        for name in list(self.tasks):
            with contextlib.suppress(Exception):
                self.drop_task(name)
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                node.stop()
        self.endpoint = None

    def node_connect(self, node: str) -> Any:
        return self.nodes[node].connect()

    def dialect_of(self, node: str) -> str:
        return str(self.nodes[node].dialect)

    def _relays_of(self, node: str) -> list[Any]:
        """The relays a machine's network carries: every task that has ``node`` at one end."""
        return [t.relay for t in self.tasks.values() if node in (t.source, t.target)]

    def fault(self, kind: str, task_name: str) -> None:
        task = self.tasks[task_name]
        if kind not in FAULTS:
            raise ClauseproofError(f"unknown sync fault {kind!r}", fix="use one of " + ", ".join(FAULTS))
        if kind == "network":
            task.relay.cut()
            return
        node = self.nodes[task.target]
        assert isinstance(node, EmbeddedPostgres)
        self.down[task.target] = kind
        if kind == "host":
            for relay in self._relays_of(task.target):
                relay.cut()
            processes.kill_postgres(node)
        else:
            node.stop_server()

    def heal(self, kind: str, task_name: str) -> None:
        task = self.tasks[task_name]
        if kind == "network":
            task.relay.heal()
            return
        node = self.nodes[task.target]
        assert isinstance(node, EmbeddedPostgres)
        node.start_again()
        self.down.pop(task.target, None)
        if kind == "host":
            for relay in self._relays_of(task.target):
                relay.heal()
