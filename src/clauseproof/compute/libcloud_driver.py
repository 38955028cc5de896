"""Any Apache Libcloud compute provider (OpenStack, Alibaba Cloud ECS, EC2, ...), from a cloud profile.

VMs are named ``cp-<run id>-vmNNN``; the run's VMs are found by that prefix, so nothing else
in the account is ever listed as ours or deleted.  Libcloud creates one VM per call, so a batch
is bounded concurrent calls (``concurrency`` in the profile).  Libcloud has no portable server-group
call, so strict anti-affinity (SX-ECS-8) is skipped with that reason on this path.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from clauseproof.compute.base import (
    FAILED,
    GONE,
    OTHER,
    PENDING,
    RUNNING,
    STOPPED,
    CloudError,
    ComputeDriver,
    Vm,
    name_prefix,
)
from clauseproof.core.errors import ClauseproofError


def _state(libcloud_state: Any) -> str:
    from libcloud.compute.types import NodeState

    return {
        NodeState.RUNNING: RUNNING,
        NodeState.PENDING: PENDING,
        NodeState.STARTING: PENDING,
        NodeState.REBOOTING: PENDING,
        NodeState.STOPPED: STOPPED,
        NodeState.SUSPENDED: STOPPED,
        NodeState.STOPPING: OTHER,
        NodeState.TERMINATED: GONE,
        NodeState.ERROR: FAILED,
    }.get(libcloud_state, OTHER)


def provider_class(provider: str) -> Any:
    """Libcloud's driver class for ``provider`` (a Provider name such as "openstack" or "aliyun_ecs")."""
    from libcloud.compute.providers import get_driver
    from libcloud.compute.types import Provider

    names = sorted(str(getattr(Provider, p)) for p in dir(Provider) if p.isupper())
    try:
        return get_driver(provider.lower())
    except AttributeError:
        raise ClauseproofError(
            f"{provider!r} is not a Libcloud compute provider",
            checked="libcloud.compute.types.Provider",
            fix="use one of: " + ", ".join(names),
        ) from None


class LibcloudDriver(ComputeDriver):
    def __init__(
        self,
        provider: str,
        key: str,
        secret: str | None,
        *,
        image: str,
        size: str,
        location: str | None = None,
        options: dict[str, Any] | None = None,
        create_options: dict[str, Any] | None = None,
        concurrency: int = 10,
    ) -> None:
        from libcloud.compute.base import NodeImage, NodeLocation, NodeSize

        cls = provider_class(provider)
        self.name = f"libcloud {provider}"
        self.provider = provider
        args = [key] if secret is None else [key, secret]
        self.conn = cls(*args, **(options or {}))
        self.image = NodeImage(id=image, name=image, driver=self.conn)
        self.size = NodeSize(id=size, name=size, ram=0, disk=0, bandwidth=0, price=0, driver=self.conn)
        self.location = NodeLocation(id=location, name=location, country="", driver=self.conn) if location else None
        self.create_options = dict(create_options or {})
        self.concurrency = concurrency

    def create(self, run_id: str, names: list[str], group: str | None = None) -> list[tuple[str, str, float]]:
        import time

        def one(name: str) -> tuple[str, str, float]:
            kwargs = dict(self.create_options)
            if self.location is not None:
                kwargs["location"] = self.location
            node = self.conn.create_node(name=name, size=self.size, image=self.image, **kwargs)
            return name, str(node.id), time.perf_counter()

        out: list[tuple[str, str, float]] = []
        errors: list[str] = []
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            for fut in [pool.submit(one, n) for n in names]:
                try:
                    out.append(fut.result())
                except Exception as exc:
                    errors.append(str(exc))
        if errors:
            raise CloudError(f"{len(errors)} of {len(names)} create calls refused; first: {errors[0]}")
        return out

    def _nodes(self, run_id: str) -> list[Any]:
        return [n for n in self.conn.list_nodes() if str(n.name).startswith(name_prefix(run_id))]

    def list_vms(self, run_id: str) -> list[Vm]:
        out = []
        for n in self._nodes(run_id):
            extra = n.extra or {}
            ips = list(n.private_ips or []) + list(n.public_ips or [])
            host = extra.get("hostId") or extra.get("host") or extra.get("host_id")
            out.append(Vm(str(n.id), str(n.name), _state(n.state), host=host or None, address=ips[0] if ips else None))
        return out

    def _each(self, ids: list[str], run_id: str | None, call: Any) -> dict[str, str]:
        nodes = {str(n.id): n for n in self.conn.list_nodes()}
        errors: dict[str, str] = {}

        def one(vid: str) -> None:
            node = nodes.get(vid)
            if node is None:
                return
            try:
                if call(node) is False:
                    errors[vid] = "the provider answered False"
            except Exception as exc:
                errors[vid] = str(exc)

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            list(pool.map(one, ids))
        return errors

    def act(self, ids: list[str], action: str) -> dict[str, str]:
        call = {"start": self.conn.start_node, "stop": self.conn.stop_node, "reboot": self.conn.reboot_node}[action]
        return self._each(ids, None, call)

    def delete(self, ids: list[str]) -> dict[str, str]:
        return self._each(ids, None, self.conn.destroy_node)

    def leftovers(self, run_id: str, ids: list[str]) -> dict[str, list[str]]:
        return {"vms": [v.name for v in self.list_vms(run_id) if v.state != GONE]}

    def describe(self) -> dict[str, Any]:
        import libcloud

        return {
            "driver": self.name,
            "simulated": False,
            "libcloud": libcloud.__version__,
            "image": self.image.id,
            "size": self.size.id,
            "location": self.location.id if self.location else None,
            "concurrency": self.concurrency,
        }
