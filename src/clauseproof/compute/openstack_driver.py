"""An OpenStack cloud through openstacksdk: the embedded one (``--cp-cloud=embedded-openstack``) or a vendor's (a cloud
profile with ``provider = "openstack"``, ``clouds.yaml`` conventions).

Beside the batch operations every driver has, an OpenStack cloud plays the roles of :mod:`clauseproof.compute.roles`:
server groups with strict and soft anti-affinity, placement read back through the admin API (host, zone from the
host's aggregate, rack from an aggregate property), rebuild to another image, flavours, and clones across zones.
Every server, group and volume it creates is named ``cp-<run id>-...`` and carries the run id in its metadata.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clauseproof.compute.base import FAILED, GONE, OTHER, PENDING, RUNNING, STOPPED, TAG, CloudError, ComputeDriver, Vm
from clauseproof.compute.openstack_access import OpenStackAccess
from clauseproof.compute.openstack_clone import OpenStackClones
from clauseproof.compute.openstack_stack import OpenStackStacks
from clauseproof.compute.roles import Booted, Flavour, Where

#: Nova's microversion the driver speaks: 2.64 (server groups with one policy and rules), 2.47 (the flavour embedded
#: in a server), 2.37 (``networks: none``)
MICROVERSION = "2.79"
STATES = {
    "ACTIVE": RUNNING,
    "BUILD": PENDING,
    "REBUILD": PENDING,
    "SHUTOFF": STOPPED,
    "ERROR": FAILED,
    "DELETED": GONE,
    "SOFT_DELETED": GONE,
}


def _common_base(names: list[str]) -> str:
    """``cp-<run>-vm`` of ``cp-<run>-vm001 … cp-<run>-vm030``."""
    return names[0].rstrip("0123456789") if names else ""


def _number(name: str) -> int:
    digits = re.search(r"(\d+)$", name)
    return int(digits.group(1)) if digits else 0


def _api_error(r: Any) -> str:
    try:
        body = r.json()
        inner = next(iter(body.values())) if isinstance(body, dict) and body else body
        message = inner.get("message") if isinstance(inner, dict) else None
    except ValueError:
        message = None
    return f"HTTP {r.status_code}: {message or r.text[:300]}"


def _sdk_error(exc: Exception) -> str:
    text = str(exc).strip()
    details = getattr(exc, "details", None)
    return f"{text} ({details})" if details and details not in text else text


class OpenStackDriver(OpenStackAccess, OpenStackStacks, OpenStackClones, ComputeDriver):
    """``connect`` makes an openstacksdk connection; ``image`` / ``flavour`` name what the batch cases boot.

    ``conn`` is the calling thread's own connection (made and authenticated on a thread's first call, kept until
    :meth:`close`): a keystoneauth session and its HTTP connection pool are not shared between threads, so ten
    threads polling ten servers do not queue behind one another's requests."""

    name = "OpenStack (openstacksdk)"

    def __init__(
        self,
        connect: Any,
        *,
        image: str,
        flavour: str,
        second_image: str | None = None,
        concurrency: int = 10,
        network: str | None = None,
        boots_guests: bool = True,
        label: str = "",
    ) -> None:
        self._connect = connect
        self._local = threading.local()
        self._made: list[Any] = []
        self._made_lock = threading.Lock()
        self._pool: queue.Queue[Any] = queue.Queue()
        self.image_name, self.flavour_name, self.second_image = image, flavour, second_image
        self.concurrency = concurrency
        self.network = network
        #: Nova's fake hypervisor boots nothing: timings measure the control plane, a guest's view is not shown
        self.boots_guests = boots_guests
        if label:
            self.name = label
        self._image_id = self._find_image(image)
        self._flavour_id = self._find_flavour(flavour)

    # -- helpers --------------------------------------------------------------------------------------------
    @property
    def conn(self) -> Any:
        """This thread's connection."""
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = self._new_connection()
        return c

    def _new_connection(self) -> Any:
        c = self._connect()
        c.compute.default_microversion = MICROVERSION
        with self._made_lock:
            self._made.append(c)
        return c

    def _find_image(self, name: str) -> str:
        img = self.conn.image.find_image(name, ignore_missing=True)
        if img is None:
            raise CloudError(f"no image {name!r} in the cloud")
        return str(img.id)

    def _find_flavour(self, name: str) -> str:
        fl = self.conn.compute.find_flavor(name, ignore_missing=True)
        if fl is None:
            raise CloudError(f"no flavour {name!r} in the cloud")
        return str(fl.id)

    def _borrow(self) -> Any:
        """A connection of the pool (each authenticated once, then reused: a new token per call would time
        Keystone's password hashing and every service's first validation of the token, not the cloud's work)."""
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            c = self._new_connection()
            c.authorize()
            return c

    def _to_vm(self, s: Any) -> Vm:
        address = None
        for addrs in (s.addresses or {}).values():
            for a in addrs:
                address = address or a.get("addr")
        state = STATES.get(str(s.status).upper(), OTHER)
        return Vm(id=s.id, name=s.name, state=state, host=s.compute_host or s.hypervisor_hostname, address=address)

    # -- ComputeDriver --------------------------------------------------------------------------------------
    def create(self, run_id: str, names: list[str], group: str | None = None) -> list[tuple[str, str, float]]:
        return [(n, i, t) for n, i, t in self.create_servers(run_id, names, group=group) if i]

    def create_servers(
        self,
        run_id: str,
        names: list[str],
        *,
        group: str | None = None,
        flavour: str | None = None,
        zone: str | None = None,
        image: str | None = None,
    ) -> list[tuple[str, str, float]]:
        """One create call for the whole batch (Nova's multi-create: ``min_count = max_count`` = the batch, so the
        cloud takes all or none); (name, id, accepted at) per requested name.  A refusal raises
        :class:`CloudError` naming every refused server."""
        server: dict[str, Any] = {
            "imageRef": image or self._image_id,
            "flavorRef": flavour or self._flavour_id,
            "networks": [{"uuid": self.network}] if self.network else "none",
            "metadata": {TAG: run_id},
        }
        base = _common_base(names)
        if len(names) > 1:
            server.update(name=base, min_count=len(names), max_count=len(names), return_reservation_id=True)
        else:
            server["name"] = names[0]
        if zone:
            server["availability_zone"] = zone
        body: dict[str, Any] = {"server": server}
        if group:
            body["os:scheduler_hints"] = {"group": group}
        conn = self._borrow()
        try:
            r = conn.compute.post("/servers", json=body, microversion=MICROVERSION)
            at = time.perf_counter()
            if r.status_code >= 400:
                why = _api_error(r)
                raise CloudError(f"{len(names)} servers refused: {why}", refused={n: why for n in names})
            answer = r.json()
            if len(names) == 1:
                return [(names[0], str(answer["server"]["id"]), at)]
            servers = list(conn.compute.servers(reservation_id=answer["reservation_id"], name=f"^{base}"))
        finally:
            self._pool.put(conn)
        # the cloud names them from the base (``<base>001`` on the embedded cloud, ``<base>-1`` on Nova's default):
        # matched to the requested names by their number
        by_number = sorted(servers, key=lambda s: _number(s.name))
        out = [(n, str(s.id), at) for n, s in zip(names, by_number, strict=False)]
        if len(out) < len(names):
            missing = names[len(out) :]
            raise CloudError(
                f"the cloud shows {len(out)} of {len(names)} servers after accepting the batch",
                accepted=out,
                refused={n: "not shown by the API after the batch" for n in missing},
            )
        return out

    def list_vms(self, run_id: str) -> list[Vm]:
        prefix = f"cp-{run_id}-"
        servers = self.conn.compute.servers(details=True, name=f"^{prefix}", all_projects=False)
        return [self._to_vm(s) for s in servers if s.name.startswith(prefix)]

    def act(self, ids: list[str], action: str) -> dict[str, str]:
        call = {"start": "start_server", "stop": "stop_server", "reboot": "reboot_server"}[action]
        errors: dict[str, str] = {}
        for vid in ids:
            try:
                if action == "reboot":
                    self.conn.compute.reboot_server(vid, "SOFT")
                else:
                    getattr(self.conn.compute, call)(vid)
            except Exception as exc:
                errors[vid] = _sdk_error(exc)
        return errors

    def delete(self, ids: list[str]) -> dict[str, str]:
        errors: dict[str, str] = {}
        for vid in ids:
            try:
                self.conn.compute.delete_server(vid, ignore_missing=True)
            except Exception as exc:
                errors[vid] = _sdk_error(exc)
        return errors

    def leftovers(self, run_id: str, ids: list[str]) -> dict[str, list[str]]:
        left: dict[str, list[str]] = {}
        groups = [g.name for g in self.conn.compute.server_groups() if g.name.startswith(f"cp-{run_id}-")]
        if groups:
            left["server groups"] = groups
        return left

    def create_group(self, run_id: str, policy: str) -> str:
        try:
            g = self.conn.compute.create_server_group(name=f"cp-{run_id}-grp-{policy}", policy=policy)
        except Exception as exc:
            raise CloudError(f"server group {policy}: {_sdk_error(exc)}") from None
        return str(g.id)

    def delete_group(self, group: str) -> None:
        self.conn.compute.delete_server_group(group, ignore_missing=True)

    def describe(self) -> dict[str, Any]:
        return {
            "driver": self.name,
            "simulated": False,
            "image": self.image_name,
            "flavour": self.flavour_name,
            "boots_guests": self.boots_guests,
        }

    def warm(self) -> None:
        """Authenticate the pool's connections before a timed window (outside it)."""
        self._pool.put(self._borrow())

    def close(self) -> None:
        with self._made_lock:
            made, self._made = self._made, []
        for c in made:  # the pool's and every thread's
            c.close()

    def cleanup_run(self, run_id: str, timeout_s: float = 300.0) -> list[str]:
        """Stacks, servers, server groups, volumes, users and projects named ``cp-<run id>-…``, deleted (found by
        name, so a killed run's leftovers are found by a new connection)."""
        prefix = f"cp-{run_id}-"
        left: list[str] = []
        for st in self.conn.orchestration.stacks():
            if st.name.startswith(prefix):
                left += self.delete_stack((st.name, st.id), timeout_s)
        for g in self.conn.compute.server_groups():
            if g.name.startswith(prefix):
                self.conn.compute.delete_server_group(g.id, ignore_missing=True)
        left += self.delete_named(prefix, timeout_s)
        left += self.access_cleanup(run_id)
        return left

    # -- roles: placement, rebuild, flavours -------------------------------------------------------------------
    def hosts(self) -> list[str]:
        return sorted({s.host for s in self.conn.compute.services(binary="nova-compute") if s.state == "up"})

    def where(self, ids: list[str]) -> dict[str, Where]:
        """Host, zone and rack of each server: the host from the admin API, the zone from the aggregate with an
        availability zone that holds the host, the rack from an aggregate's ``rack`` property."""
        zone_of: dict[str, str] = {}
        rack_of: dict[str, str] = {}
        for agg in self.conn.compute.aggregates():
            for h in agg.hosts or []:
                if agg.availability_zone:
                    zone_of[h] = agg.availability_zone
                rack = (agg.metadata or {}).get("rack")
                if rack:
                    rack_of[h] = rack
        out: dict[str, Where] = {}
        for vid in ids:
            s = self.conn.compute.get_server(vid)
            host = s.compute_host or s.hypervisor_hostname
            out[vid] = Where(
                host=host,
                zone=zone_of.get(host or ""),
                rack=rack_of.get(host or ""),
                reported_zone=s.availability_zone,
                state=STATES.get(str(s.status).upper(), OTHER),
                fault=(s.fault or {}).get("message", "") if isinstance(s.fault, dict) else "",
            )
        return out

    def booted(self, vid: str) -> Booted:
        s = self.conn.compute.get_server(vid)
        fl = s.flavor or {}
        image = s.image.id if s.image is not None and getattr(s.image, "id", None) else None
        addresses = sorted(a.get("addr", "") for addrs in (s.addresses or {}).values() for a in addrs)
        return Booted(
            id=s.id,
            name=s.name,
            state=STATES.get(str(s.status).upper(), OTHER),
            image=image,
            vcpus=fl.get("vcpus"),
            ram_mb=fl.get("ram"),
            flavour=fl.get("original_name") or fl.get("name"),
            addresses=addresses,
            created=s.created_at,
            host=s.compute_host,
            fault=(s.fault or {}).get("message", "") if isinstance(s.fault, dict) else "",
        )

    def image_id(self, name: str) -> str:
        return self._find_image(name)

    def rebuild(self, vid: str, image: str) -> None:
        s = self.conn.compute.get_server(vid)
        self.conn.compute.rebuild_server(s, image=self._find_image(image), name=s.name)

    def flavours(self) -> list[Flavour]:
        return [
            Flavour(name=f.name, id=f.id, vcpus=int(f.vcpus), ram_mb=int(f.ram))
            for f in self.conn.compute.flavors(details=True)
        ]


class EmbeddedOpenStackDriver(OpenStackDriver):
    """The driver of the embedded cloud: it stops the cloud when it is closed."""

    def __init__(self, cloud: Any) -> None:
        self.cloud = cloud
        super().__init__(
            cloud.connect,
            image="cp-image-a",
            flavour="cp.tiny",
            second_image="cp-image-b",
            boots_guests=False,
            label="embedded OpenStack (fake hypervisor)",
        )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "embedded": self.cloud.describe()}

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.cloud.stop()


def start_embedded_openstack(cache_dir: Path | None, progress: Callable[[str], None] | None = None) -> ComputeDriver:
    from clauseproof.core.settings import default_cache
    from clauseproof.targets.cloud.openstack import EmbeddedOpenStack

    cloud = EmbeddedOpenStack(cache_dir or Path(default_cache()), progress=progress)
    cloud.start()
    try:
        return EmbeddedOpenStackDriver(cloud)
    except BaseException:
        cloud.stop()
        raise


def vendor_openstack(spec: str, p: dict[str, Any]) -> ComputeDriver:
    """A vendor's OpenStack from a cloud profile: the ``clouds.yaml`` entry ``cloud`` (credentials stay in
    clouds.yaml / secure.yaml or the OS_* environment, never in the profile)."""
    from clauseproof.core.errors import ClauseproofError

    for needed in ("cloud", "image", "size"):
        if needed not in p:
            raise ClauseproofError(f"{spec}: [cloud] has no {needed}", fix=f"add {needed} = ... under [cloud]")

    def connect(**over: Any) -> Any:
        import openstack

        return openstack.connect(cloud=p["cloud"], app_name="clauseproof", api_timeout=60, **over)

    try:
        return OpenStackDriver(
            connect,
            image=p["image"],
            flavour=p["size"],
            second_image=p.get("second_image"),
            concurrency=int(p.get("concurrency", 10)),
            network=p.get("network"),
            label=f"OpenStack {p['cloud']}",
        )
    except CloudError as exc:
        raise ClauseproofError(f"{spec}: {exc}", fix="name an image and a flavour the cloud has") from None
    except Exception as exc:
        raise ClauseproofError(
            f"{spec}: cannot reach the OpenStack cloud {p['cloud']!r}: {_sdk_error(exc)}",
            checked="clouds.yaml (OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack/clouds.yaml)",
            fix="check the cloud's entry and its credentials",
        ) from None
