"""The embedded OpenStack's one-time and per-start set-up: the cache (API paste files, migrated databases), the
service users and the catalog (new passwords and ports each start), and what the cloud offers (zones, racks,
flavours, images, volume types).  Mixed into :class:`~clauseproof.targets.cloud.openstack.EmbeddedOpenStack`."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.cloud.openstack_conf import (
    CACHE_VERSION,
    DATABASES,
    LAYOUT,
    PACKAGES,
    PASTE,
    S3_FLAVOURS,
    SERVICE_USERS,
    VOLUME_TYPES,
    flavour_name,
)  # fmt: skip
from clauseproof.targets.host.folders import free_port, make_private_folder
from clauseproof.targets.host.processes import own_code_user


def _versions() -> str:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *PACKAGES], capture_output=True, text=True, timeout=30
    ).stdout
    return hashlib.sha256(f"{CACHE_VERSION}\n{out}".encode()).hexdigest()[:12]


class OpenStackSetup:
    """Needs the cloud's ``cache_dir``, ``folder``, ``db``, ``ports``, ``passwords``, ``hosts``, ``unbootable``,
    ``image_ids``, ``progress``, ``connect``, ``_manage``, ``_write_folders`` and ``_write_configs``."""

    cache_dir: Path
    folder: Path | None
    db: Any
    ports: dict[str, int]
    passwords: dict[str, str]
    hosts: list[str]
    unbootable: tuple[str, ...]
    image_ids: dict[str, str]
    progress: Any
    connect: Any
    _manage: Any
    _write_folders: Any
    _write_configs: Any

    # -- the cache: paste files and migrated databases -------------------------------------------------------
    def _cache(self) -> Path:
        base = self.cache_dir / "openstack"
        base.mkdir(parents=True, exist_ok=True)
        key = _versions()
        folder = base / key
        with open(base / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a second run at the same moment waits, then reuses it
            if (folder / "ready.json").exists():
                return folder
            shutil.rmtree(folder, ignore_errors=True)
            work = Path(tempfile.mkdtemp(prefix=f"{key}.building-", dir=base))
            try:
                self.progress("embedded OpenStack: first start on this machine — building its cache (a few minutes)")
                self._unpack_paste(work / "paste")
                self._build_databases(work)
                (work / "ready.json").write_text(json.dumps({"built": time.time(), "versions": key}))
                os.replace(work, folder)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            return folder

    def _unpack_paste(self, dest: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="clauseproof-openstack-debs-") as tmp:
            packages = sorted({p for p, _, _ in PASTE.values()})
            got = subprocess.run(["apt-get", "download", *packages], cwd=tmp, capture_output=True, text=True,
                                 timeout=300)  # fmt: skip
            if got.returncode != 0:
                raise ClauseproofError(
                    f"apt-get download {' '.join(packages)} failed: {got.stderr.strip()[-400:]}",
                    checked="the API paste files of Debian's OpenStack packages",
                    fix="make Debian's package mirror reachable (apt-get update), then start again",
                )
            for deb in Path(tmp).glob("*.deb"):
                subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "x")], check=True, timeout=120)
            for service, (_, path, name) in PASTE.items():
                (dest / service).mkdir(parents=True, exist_ok=True)
                shutil.copy(Path(tmp) / "x" / path, dest / service / name)
        subprocess.run(["chmod", "-R", "a+rX", str(dest)], check=True)

    def _build_databases(self, work: Path) -> None:
        from clauseproof.targets.single.mariadb import EmbeddedMariaDB

        db = EmbeddedMariaDB("openstack-db-build", "clauseproof", None, create_namespace=False)
        db.start()
        try:
            self.db = db
            with db.connect(in_namespace=False) as conn, conn.cursor() as cur:
                for name in DATABASES:
                    cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
            assert db.folder is not None
            self.folder = make_private_folder("openstack-build", own_code_user().name)
            self._write_folders()
            self.ports = {k: free_port() for k in ("keystone", "nova", "glance", "cinder", "heat", "rabbit")}
            self._write_configs(work / "paste")
            manage = [
                ("keystone", ["keystone.cmd.manage", "--config-file", "{c}/keystone/keystone.conf", "db_sync"]),
                ("placement", ["placement.cmd.manage", "--config-file", "{c}/placement/placement.conf", "db",
                               "sync"]),
                ("glance", ["glance.cmd.manage", "--config-file", "{c}/glance/glance-api.conf", "db_sync"]),
                ("cinder", ["cinder.cmd.manage", "--config-file", "{c}/cinder/cinder.conf", "db", "sync"]),
                ("heat", ["heat.cmd.manage", "--config-file", "{c}/heat/heat.conf", "db_sync"]),
            ]  # fmt: skip
            nova = "{c}/nova/nova.conf"
            url = "{scheme}://{username}:{password}@{hostname}:{port}/{path}"
            nova_steps = [
                ["nova.cmd.manage", "--config-file", nova, "api_db", "sync"],
                ["nova.cmd.manage", "--config-file", nova, "cell_v2", "map_cell0", "--database_connection",
                 url + "_cell0"],
                ["nova.cmd.manage", "--config-file", nova, "cell_v2", "create_cell", "--name", "cell1",
                 "--database_connection", url, "--transport-url", "{scheme}://{username}:{password}@{hostname}:{port}/"],
                ["nova.cmd.manage", "--config-file", nova, "db", "sync"],
            ]  # fmt: skip

            def chain(steps: list[tuple[str, list[str]]]) -> None:
                for what, args in steps:
                    self._manage(what, args)

            with ThreadPoolExecutor(3) as pool:
                jobs = [pool.submit(chain, [step]) for step in manage]
                jobs.append(pool.submit(chain, [("nova", s) for s in nova_steps]))
                for job in jobs:
                    job.result()
            db.stop_server()
            shutil.copytree(db.folder / "data", work / "data", symlinks=True)
        finally:
            db.stop()
            self.db = None
            if self.folder is not None:
                shutil.rmtree(self.folder, ignore_errors=True)
                self.folder = None

    def _register(self) -> None:
        """Service users (new passwords), the service project, the catalog's endpoints on this start's ports, and
        Heat's domain."""
        conn = self.connect()
        ident = conn.identity
        service_project = ident.find_project("service", domain_id="default") or ident.create_project(
            name="service", domain_id="default"
        )
        admin_role = ident.find_role("admin")
        for name in ("member", "reader", "service", "heat_stack_owner", "heat_stack_user"):
            ident.find_role(name) or ident.create_role(name=name)
        for name in SERVICE_USERS:
            u = ident.find_user(name, domain_id="default")
            if u is None:
                u = ident.create_user(name=name, domain_id="default", password=self.passwords[name])
            else:
                ident.update_user(u, password=self.passwords[name])
            ident.assign_project_role_to_user(service_project, u, admin_role)
            ident.assign_project_role_to_user(service_project, u, ident.find_role("service"))
        heat_domain = ident.find_domain("heat") or ident.create_domain(name="heat", description="Heat stack users")
        hda = ident.find_user("heat_domain_admin", domain_id=heat_domain.id)
        if hda is None:
            hda = ident.create_user(name="heat_domain_admin", domain_id=heat_domain.id,
                                    password=self.passwords["heat_domain_admin"])  # fmt: skip
        else:
            ident.update_user(hda, password=self.passwords["heat_domain_admin"])
        ident.assign_domain_role_to_user(heat_domain, hda, admin_role)
        admin = ident.find_user("admin", domain_id="default")
        admin_project = ident.find_project("admin", domain_id="default")
        ident.assign_project_role_to_user(admin_project, admin, ident.find_role("heat_stack_owner"))
        p = self.ports
        catalog = {
            "placement": ("placement", f"http://127.0.0.1:{p['placement']}"),
            "compute": ("nova", f"http://127.0.0.1:{p['nova']}/v2.1"),
            "image": ("glance", f"http://127.0.0.1:{p['glance']}"),
            "volumev3": ("cinderv3", f"http://127.0.0.1:{p['cinder']}/v3/%(project_id)s"),
            "block-storage": ("cinder", f"http://127.0.0.1:{p['cinder']}/v3/%(project_id)s"),
            "orchestration": ("heat", f"http://127.0.0.1:{p['heat']}/v1/%(tenant_id)s"),
            "network": ("neutron", f"http://127.0.0.1:{p['network']}"),
        }
        services = {s.type: s for s in ident.services()}
        endpoints = list(ident.endpoints())
        for kind, (name, url) in catalog.items():
            svc = services.get(kind) or ident.create_service(name=name, type=kind)
            for ep in endpoints:
                if ep.service_id == svc.id:
                    ident.delete_endpoint(ep)
            for interface in ("public", "internal", "admin"):
                ident.create_endpoint(service_id=svc.id, interface=interface, url=url, region_id="RegionOne")
        conn.close()

    def _prepare_cloud(self) -> None:
        conn = self.connect()
        # zones and racks: one aggregate per zone (an availability zone) and per rack (a property)
        aggs = {a.name: a for a in conn.compute.aggregates()}
        for zone in sorted({LAYOUT[h][0] for h in self.hosts}):
            agg = aggs.get(zone) or conn.compute.create_aggregate(name=zone, availability_zone=zone)
            for h in self.hosts:
                if LAYOUT[h][0] == zone and h not in (agg.hosts or []):
                    agg = conn.compute.add_host_to_aggregate(agg, h)
        for rack in sorted({LAYOUT[h][1] for h in self.hosts}):
            agg = aggs.get(rack) or conn.compute.create_aggregate(name=rack)
            conn.compute.set_aggregate_metadata(agg, {"rack": rack})
            for h in self.hosts:
                if LAYOUT[h][1] == rack and h not in (agg.hosts or []):
                    agg = conn.compute.add_host_to_aggregate(agg, h)
        have = {f.name for f in conn.compute.flavors()}
        wanted = {"cp.tiny": (1, 64, 1)} | {flavour_name(v, g): (v, g * 1024, 10) for v, g in S3_FLAVOURS}
        for name, (vcpus, ram, disk) in wanted.items():
            if name not in have:
                fl = conn.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk, is_public=True)
                if name in self.unbootable:  # the cheat: listed, and no host has the trait it requires
                    conn.compute.create_flavor_extra_specs(fl, {"trait:CUSTOM_CLAUSEPROOF_NO_HOST": "required"})
        for name in ("cp-image-a", "cp-image-b"):
            image = conn.image.find_image(name)
            if image is None:
                image = conn.image.create_image(
                    name=name, data=f"clauseproof tiny image {name}\n".encode(), disk_format="raw",
                    container_format="bare", visibility="public", allow_duplicates=True,
                )  # fmt: skip
            self.image_ids[name] = image.id
        types = {t.name: t for t in conn.block_storage.types()}
        for vt, medium in VOLUME_TYPES.items():
            # Cinder's fake driver names every back end "fake": a type cannot choose one.  Said in the type, so that
            # Cinder lets a clone change type (it does only between types of one back end name, SX-ECS-7)
            t = types.get(vt) or conn.block_storage.create_type(
                name=vt, description=f"clauseproof stand-in: {medium} (a label)"
            )
            if (t.extra_specs or {}).get("volume_backend_name") != "fake":
                conn.block_storage.update_type_extra_specs(t, volume_backend_name="fake")
        conn.close()
