"""A Libcloud compute driver kept in memory, registered through Libcloud's own ``set_driver``,
to test clauseproof's Libcloud adapter end to end without a cloud."""

from __future__ import annotations

import itertools
from typing import Any

from libcloud.compute.base import Node, NodeDriver
from libcloud.compute.types import NodeState

NODES: dict[str, Node] = {}
_ids = itertools.count(1)


class MemoryNodeDriver(NodeDriver):
    type = "cpmemory"
    name = "in-memory (self-tests)"

    def __init__(self, key: str, secret: str | None = None, **kwargs: Any) -> None:
        self.key, self.options = key, kwargs

    def create_node(self, name: str, size: Any, image: Any, **kwargs: Any) -> Node:  # type: ignore[override]
        node = Node(str(next(_ids)), name, NodeState.RUNNING, ["10.0.0.1"], [], self, extra={"hostId": name[-1]})
        NODES[str(node.id)] = node
        return node

    def list_nodes(self) -> list[Node]:
        return list(NODES.values())

    def destroy_node(self, node: Node) -> bool:
        return NODES.pop(str(node.id), None) is not None

    def stop_node(self, node: Node) -> bool:
        node.state = NodeState.STOPPED
        return True

    def start_node(self, node: Node) -> bool:
        node.state = NodeState.RUNNING
        return True

    def reboot_node(self, node: Node) -> bool:
        return True
