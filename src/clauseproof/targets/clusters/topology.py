"""What a replicated target is made of, as the target describes it (the replication checks judge it).

A :class:`Topology` names the primary and every replica by direct endpoint (to verify each one, and to
read counters the proxy does not control), the endpoint that takes writes and the one that takes reads
(the same one when the split is automatic), and the read weight configured for each node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clauseproof.core.digest import Dialect
from clauseproof.core.i18n import Text
from clauseproof.targets.base import Endpoint, open_endpoint


@dataclass
class Node:
    """One server of the topology, reached directly (not through the proxy)."""

    name: str
    endpoint: Endpoint
    #: Configured share of the reads (any scale; 0 = this node should serve no reads).
    weight: float = 1.0


@dataclass
class Topology:
    dialect: Dialect
    namespace: str
    primary: Node
    replicas: list[Node]
    write: Endpoint
    read: Endpoint
    #: One endpoint that splits reads from writes by itself.
    automatic_split: bool
    #: What splits or balances (for the evidence), e.g. "pgpool-II 4.3.5 (statement-level load balancing)".
    proxy: Text | str
    #: How the replicas are known: "started by the harness", "declared in the profile", ...
    source: Text | str

    @property
    def nodes(self) -> list[Node]:
        return [self.primary, *self.replicas]

    def open(self, ep: Endpoint) -> Any:
        return open_endpoint(self.dialect, ep)

    def describe(self) -> dict[str, Any]:
        return {
            "dialect": self.dialect,
            "primary": {"name": self.primary.name, **self.primary.endpoint.public(), "weight": self.primary.weight},
            "replicas": [{"name": n.name, **n.endpoint.public(), "weight": n.weight} for n in self.replicas],
            "write_endpoint": self.write.public(),
            "read_endpoint": self.read.public(),
            "split": "one endpoint, automatic" if self.automatic_split else "two endpoints (the application chooses)",
            "proxy": self.proxy,
            "source": self.source,
        }


def pool_nodes(conn: Any) -> list[dict[str, Any]]:
    """pgpool-II's own view of its nodes (``SHOW POOL_NODES``): role, status, weight, select_cnt, ..."""
    with conn.cursor() as cur:
        cur.execute("SHOW POOL_NODES")
        cols = [d[0] for d in cur.description or []]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
