"""SX-ECS-7 on an OpenStack cloud (:class:`~clauseproof.compute.roles.Clone`, judged in
:mod:`clauseproof.compute.clone`).

OpenStack has no single "clone a server" call; the clone is what a console does with the public APIs: each of the
source's disks cloned by the block-storage service (a volume made from the source volume, with the new disk type —
Cinder records the source on the new volume), then a server booted from the cloned system disk, with the cloned
data disk, in the other zone with the other flavour.  The source server boots from a volume so that its system
disk can be cloned; every disk is deleted with its server (``delete_on_termination``).
"""

from __future__ import annotations

import math
import time
from typing import Any

from clauseproof.compute.base import TAG, CloudError
from clauseproof.compute.roles import Disk

#: Nova's microversion for the boots: 2.67 (a volume type in a block device mapping is not needed: the volumes are
#: made first), 2.37 (``networks: none``)
MICROVERSION = "2.79"


class OpenStackClones:
    """Mixed into the OpenStack driver (``conn``: the admin's connection; ``flavour_name`` the batch's flavour)."""

    conn: Any
    flavour_name: str
    boots_guests: bool
    #: how the last clone's disks got their type (said in the evidence)
    clone_how: str = ""

    # -- the plan: what a clone crosses -----------------------------------------------------------------------------
    def clone_plan(self) -> dict[str, Any]:
        zones = sorted(z.name for z in self.conn.compute.availability_zones() if z.name != "internal"
                       and (z.state or {}).get("available", True))  # fmt: skip
        # Cinder's catch-all "__DEFAULT__" names no medium: not a type to clone from or to
        types = sorted(t.name for t in self.conn.block_storage.types() if t.name != "__DEFAULT__")
        flavours = sorted(self.conn.compute.flavors(details=True), key=lambda f: (f.vcpus, f.ram, f.name))
        src = next((f for f in flavours if f.name == self.flavour_name), flavours[0] if flavours else None)
        dst = next((f for f in flavours if src is not None and (f.vcpus, f.ram) != (src.vcpus, src.ram)), None)
        missing = [what for what, ok in (("zone", len(zones) >= 2), ("disk type", len(types) >= 2),
                                         ("flavour", dst is not None)) if not ok]  # fmt: skip
        plan: dict[str, Any] = {"zones": zones, "disk_types": types, "missing": missing}
        if not missing and src is not None and dst is not None:
            plan["from"] = {"zone": zones[0], "flavour": src.name, "vcpus": int(src.vcpus), "ram_mb": int(src.ram),
                            "disk_type": types[0]}  # fmt: skip
            plan["to"] = {"zone": zones[1], "flavour": dst.name, "vcpus": int(dst.vcpus), "ram_mb": int(dst.ram),
                          "disk_type": types[1]}  # fmt: skip
        return plan

    def disk_zones(self) -> list[str]:
        return sorted(z.name for z in self.conn.block_storage.availability_zones())

    # -- making servers with disks -------------------------------------------------------------------------------------
    def _wait_volumes(self, ids: list[str], timeout_s: float = 120.0, type_: str | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            vols = {v: self.conn.block_storage.get_volume(v) for v in ids}
            status = {v: x.status if type_ is None or x.volume_type == type_ else "retyping" for v, x in vols.items()}
            bad = {v: s for v, s in status.items() if s == "error"}
            if bad:
                raise CloudError(f"the block storage failed to make {', '.join(bad)}")
            if all(s == "available" for s in status.values()):
                return
            if time.monotonic() > deadline:
                raise CloudError(f"volumes not available after {timeout_s:.0f} s: {status}")
            time.sleep(0.5)

    def _boot_from(self, run_id: str, name: str, system: str, data: str, *, zone: str, flavour: str) -> str:
        fl = self.conn.compute.find_flavor(flavour, ignore_missing=False)
        bdm = [
            {"boot_index": 0, "uuid": system, "source_type": "volume", "destination_type": "volume",
             "delete_on_termination": True},
            {"boot_index": -1, "uuid": data, "source_type": "volume", "destination_type": "volume",
             "delete_on_termination": True},
        ]  # fmt: skip
        body = {"server": {"name": name, "flavorRef": fl.id, "networks": "none", "availability_zone": zone,
                           "block_device_mapping_v2": bdm, "metadata": {TAG: run_id}}}  # fmt: skip
        r = self.conn.compute.post("/servers", json=body, microversion=MICROVERSION)
        if r.status_code >= 400:
            raise CloudError(f"HTTP {r.status_code}: {r.text[:300]}")
        vid = str(r.json()["server"]["id"])
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            s = self.conn.compute.get_server(vid)
            if s.status in ("ACTIVE", "ERROR"):
                break
            time.sleep(0.5)
        return vid

    def create_cloneable(self, run_id: str, name: str, *, zone: str, flavour: str, disk_type: str) -> str:
        bs = self.conn.block_storage
        # on a cloud that boots guests the system disk holds the batch's image (as large as the image asks); the fake
        # volume driver copies no image, so the stand-in's is a blank volume marked bootable
        image: dict[str, Any] = {"size": 1}
        if self.boots_guests:
            img = self.conn.image.get_image(getattr(self, "_image_id", None))
            need = max(int(img.min_disk or 0), math.ceil((img.size or 0) / 2**30), 1)
            image = {"image_id": img.id, "size": need}
        system = bs.create_volume(name=f"{name}-system", volume_type=disk_type, metadata={TAG: run_id}, **image)
        data = bs.create_volume(name=f"{name}-data", size=1, volume_type=disk_type, metadata={TAG: run_id})
        self._wait_volumes([system.id, data.id], timeout_s=600)
        if not self.boots_guests:
            bs.set_volume_bootable_status(system, True)
        return self._boot_from(run_id, name, system.id, data.id, zone=zone, flavour=flavour)

    def clone_server(self, run_id: str, source: str, name: str, *, zone: str, flavour: str, disk_type: str) -> str:
        bs = self.conn.block_storage
        made: dict[str, str] = {}
        retype: list[str] = []
        for d in self.disks(source):
            common = {"name": f"{name}-{d.role}", "size": d.size_gb or 1, "source_volume_id": d.id,
                      "metadata": {TAG: run_id}}  # fmt: skip
            try:
                v = bs.create_volume(volume_type=disk_type, **common)
            except Exception as exc:  # Cinder clones into another type only on the same back end: clone, then retype
                if "volume_type" not in str(exc):
                    raise
                v = bs.create_volume(**common)
                retype.append(v.id)
            made[d.role] = v.id
        if set(made) != {"system", "data"}:
            raise CloudError(f"the source has disks {sorted(made)}, not a system and a data disk")
        self._wait_volumes(list(made.values()))
        self.clone_how = "cloned with the new type" if not retype else "cloned, then retyped (migrated) to the new type"
        for vid in retype:  # the type's back end may be another: Cinder moves the data (on demand)
            bs.retype_volume(vid, disk_type, migration_policy="on-demand")
        if retype:
            self._wait_volumes(retype, timeout_s=600, type_=disk_type)
        bs.set_volume_bootable_status(made["system"], True)
        return self._boot_from(run_id, name, made["system"], made["data"], zone=zone, flavour=flavour)

    def disks(self, vid: str) -> list[Disk]:
        """The server's volumes, its system disk first (the one mounted at the server's root device)."""
        s = self.conn.compute.get_server(vid)
        root = s.root_device_name
        attached = sorted(self.conn.compute.volume_attachments(vid), key=lambda a: a.device or "")
        out = []
        for i, a in enumerate(attached):
            v = self.conn.block_storage.get_volume(a.volume_id)
            system = a.device == root if root else i == 0
            out.append(Disk(id=v.id, role="system" if system else "data", type=v.volume_type,
                            zone=v.availability_zone, source=v.source_volume_id, size_gb=v.size))  # fmt: skip
        return sorted(out, key=lambda d: d.role != "system")

    def delete_clone_set(self, run_id: str, timeout_s: float) -> list[str]:
        """Delete the case's servers (their disks go with them) and any disk of the case left without one."""
        return self.delete_named(f"cp-{run_id}-clone-", timeout_s)

    def delete_named(self, prefix: str, timeout_s: float) -> list[str]:
        """Delete every server, then every volume, named ``prefix…`` (a volume can go once its server is gone);
        what is still there after ``timeout_s``."""
        for s in self.conn.compute.servers(name=f"^{prefix}"):
            self.conn.compute.delete_server(s.id, ignore_missing=True)
        deadline = time.monotonic() + timeout_s
        left: list[str] = []
        last_error = ""
        while time.monotonic() < deadline:
            servers = [s for s in self.conn.compute.servers(name=f"^{prefix}") if s.status != "DELETED"]
            volumes = [v for v in self.conn.block_storage.volumes(details=True) if (v.name or "").startswith(prefix)]
            for v in volumes:
                if v.status in ("available", "error"):
                    try:  # "available" is shown a moment before the detach is recorded: tried again next round
                        self.conn.block_storage.delete_volume(v.id, ignore_missing=True)
                    except Exception as exc:
                        last_error = str(exc)
            left = [f"server {s.name} ({s.status})" for s in servers]
            left += [f"volume {v.name} ({v.status})" for v in volumes]
            if not left:
                return []
            time.sleep(1)
        return left + ([f"(last refusal: {last_error[:200]})"] if last_error else [])
