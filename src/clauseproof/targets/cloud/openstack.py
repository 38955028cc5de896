"""The embedded OpenStack (``--cp-cloud=embedded-openstack``): a real control plane on loopback, from Debian's
packages (OpenStack Zed), started by the harness and stopped with it.

What runs: an embedded MariaDB (the services' databases) and a RabbitMQ node of the cloud's own; Keystone and
Placement under uWSGI; Nova's API, conductor, scheduler and :data:`COMPUTES` ``nova-compute`` services, each a
distinct host, on Nova's fake hypervisor (it boots nothing: the evidence says so, and VM timings on it are not
evidence); Glance with a file store and a tiny image; Cinder with two volume types on two back ends (Cinder's
fake volume driver: volumes exist in the API and the database, no bytes are stored); Heat.  The hosts are split
into two availability zones (``az1``, ``az2``) by host aggregates, and into two racks by an aggregate property
(``rack``), read back through the admin API.

Every service listens on 127.0.0.1 only, on a port chosen at start, with credentials generated at start (never a
default password): the database's root password, RabbitMQ's user, Keystone's admin and each service user are
new every start.  Everything runs as the harness's own-code user (RabbitMQ as ``rabbitmq``, MariaDB as
``mysql``), never root, in ``clauseproof-openstack-*`` folders registered with the reaper: stopped by
:meth:`EmbeddedOpenStack.stop`, on Ctrl-C/SIGTERM/SIGHUP, and by ``clauseproof reap`` after a SIGKILL.

The first start on a machine builds a cache (``<cache>/openstack/<versions>``): the services' API paste files
(from Debian's ``*-common`` packages, unpacked, never installed) and a database directory with every schema
migrated.  Later starts copy it; the cell mappings use Nova's URL templates, so the ports and passwords of a new
start apply without touching the cache.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from clauseproof.core import masking
from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.cloud import openstack_conf as conf
from clauseproof.targets.cloud.openstack_conf import (
    COMPUTES,
    LAYOUT,
    PACKAGES,
    PY,
    RABBIT,
    SERVICE_USERS,
    START_TIMEOUT_S,
    UWSGI,
)  # fmt: skip
from clauseproof.targets.cloud.openstack_setup import OpenStackSetup
from clauseproof.targets.host.folders import free_port, make_private_folder
from clauseproof.targets.host.processes import OwnProcesses, own_code_user, service_user, wait_port

log = logging.getLogger("clauseproof.openstack")


def _missing() -> list[str]:
    """The packages of :data:`PACKAGES` this machine lacks (by what they install)."""
    missing = []
    probe = subprocess.run(
        [PY, "-c", "import keystone, placement, nova, glance, cinder, heat"], capture_output=True, timeout=60
    ) if os.path.exists(PY) else None  # fmt: skip
    if probe is None or probe.returncode != 0:
        missing += [p for p in PACKAGES if p.startswith("python3-")]
    if not os.path.exists(UWSGI) or not os.path.exists("/usr/lib/uwsgi/plugins/python3_plugin.so"):
        missing += ["uwsgi-core", "uwsgi-plugin-python3"]
    if not os.path.exists(RABBIT):
        missing.append("rabbitmq-server")
    return missing


class EmbeddedOpenStack(OpenStackSetup, OwnProcesses):
    """The embedded cloud.  ``anti_affinity=False`` is SX-ECS-8's cheat (the policy stored, the filter removed);
    ``quota_instances`` caps the servers a project may have (SX-ECS-6's control); ``nova_policy`` overrides Nova's
    policy rules (SX-EDAS-1's cheats); ``unbootable`` flavours are listed but no host can place them (SX-ECS-S3's
    cheat: a trait no host has); ``computes`` hosts (≥ 2)."""

    label = "embedded-openstack"
    STOP_WAIT_S = 15

    def __init__(
        self,
        cache_dir: Path,
        *,
        computes: int = COMPUTES,
        anti_affinity: bool = True,
        quota_instances: int = 1000,
        nova_policy: dict[str, str] | None = None,
        unbootable: tuple[str, ...] = (),
        progress: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        if not 2 <= computes <= len(LAYOUT):
            raise ClauseproofError(f"the embedded cloud has 2 to {len(LAYOUT)} compute hosts, not {computes}")
        self.cache_dir = cache_dir
        self.computes = computes
        self.anti_affinity = anti_affinity
        self.quota_instances = quota_instances
        self.nova_policy = dict(nova_policy or {})
        self.unbootable = unbootable
        self.progress = progress or (lambda _m: None)
        self.hosts = list(LAYOUT)[:computes]
        self.db: Any = None
        self.ports: dict[str, int] = {}
        self.passwords = {u: masking.new_secret() for u in ("admin", "rabbit", "heat_domain_admin", *SERVICE_USERS)}
        self.startup_s: float | None = None
        self.phases: list[tuple[str, float]] = []
        self.image_ids: dict[str, str] = {}
        self._logs: dict[int, Path] = {}

    # -- what a client needs ------------------------------------------------------------------------------
    @property
    def keystone_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['keystone']}/v3"

    def auth(self) -> dict[str, Any]:
        """openstacksdk's ``connect`` arguments for the cloud's admin (the password never goes to results)."""
        return {
            "auth_url": self.keystone_url,
            "username": "admin",
            "password": self.passwords["admin"],
            "project_name": "admin",
            "user_domain_name": "Default",
            "project_domain_name": "Default",
            "region_name": "RegionOne",
            "interface": "public",
        }

    def describe(self) -> dict[str, Any]:
        return {
            "cloud": "embedded OpenStack (Debian's Zed packages) on loopback",
            "hypervisor": "Nova's fake virt driver: it boots nothing, so no guest exists and VM timings measure the "
            "control plane only",
            "compute_hosts": {h: {"zone": LAYOUT[h][0], "rack": LAYOUT[h][1]} for h in self.hosts},
            "scheduler_filters": list(self._filters()),
            "soft_anti_affinity_weight": 1.0 if self.anti_affinity else 0.0,
            "ram_weight_multiplier": "-1.0 (the stand-in packs servers onto the fullest host, so that any spreading "
            "seen comes from a group's policy, not from the scheduler's default spreading)",
            "quota_instances": self.quota_instances,
            "nova_policy_overrides": self.nova_policy,
            "unbootable_flavours": list(self.unbootable),
            "volume_backends": "Cinder's fake volume driver (volumes exist in the API, no bytes are stored)",
            "startup_s": self.startup_s,
            "startup_phases_s": dict(self.phases),
        }

    def _filters(self) -> tuple[str, ...]:
        if self.anti_affinity:
            return conf.FILTERS
        return tuple(f for f in conf.FILTERS if f != "ServerGroupAntiAffinityFilter")

    # -- start ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        missing = _missing()
        if missing:
            raise ClauseproofError(
                "the embedded OpenStack needs Debian's OpenStack packages; missing: " + " ".join(missing),
                checked=f"{PY} importing the services, {UWSGI}, {RABBIT}",
                fix="run through ./run with --cp-cloud=embedded-openstack (it installs them), or "
                f"apt-get install {' '.join(PACKAGES)}",
            )
        t0 = time.perf_counter()
        user = own_code_user()
        try:
            cache = self._cache()
            self._phase("cache", t0)
            self.folder = make_private_folder("openstack", user.name)
            self._write_folders()
            with ThreadPoolExecutor(2) as pool:
                db = pool.submit(self._start_db, cache / "data")
                rabbit = pool.submit(self._start_rabbit)
                db.result()
                rabbit.result()
            self._phase("database and message queue", t0)
            shutil.copytree(cache / "paste", self.folder / "paste")  # the services' user cannot reach the cache
            self._write_configs(self.folder / "paste")
            self._start_control()  # what needs no Keystone at start: imports while Keystone starts
            self._start_keystone()
            self._phase("keystone", t0)
            self._register()
            self._phase("service users and catalog", t0)
            self._start_services()
            self._phase("services listening", t0)
            self._wait_computes()
            self._phase("compute hosts registered", t0)
            self._prepare_cloud()
            self._phase("zones, racks, flavours, image, volume types", t0)
            self.startup_s = round(time.perf_counter() - t0, 1)
        except BaseException:
            self.stop()
            raise

    def _phase(self, name: str, t0: float) -> None:
        self.phases.append((name, round(time.perf_counter() - t0, 1)))
        self.progress(f"embedded OpenStack: {name} ({self.phases[-1][1]} s)")

    def _manage(self, what: str, args: list[str], timeout: float = 600) -> str:
        """A service's management command (``python3 -m <module> ...``), as the own-code user."""
        assert self.folder is not None
        module, *rest = args
        rest = [a.replace("{c}", str(self.folder)) if a.startswith("{c}") else a for a in rest]
        code = f"import sys; from {module} import main; sys.argv[0] = {what!r}; sys.exit(main())"
        got = subprocess.run(
            [PY, "-c", code, *rest], capture_output=True, text=True, timeout=timeout, cwd="/",
            env=self._env(), **own_code_user().popen(),
        )  # fmt: skip
        if got.returncode != 0:
            raise ClauseproofError(
                f"{what}: {' '.join(rest[2:])} failed (exit {got.returncode}): "
                + masking.mask(got.stderr.strip()[-800:]),
                checked="the embedded OpenStack's set-up",
            )
        return got.stdout

    def _env(self) -> dict[str, str]:
        assert self.folder is not None
        return {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(self.folder), "LANG": "C.UTF-8",
                "OS_KEYSTONE_CONFIG_DIR": str(self.folder / "keystone"),
                "OS_PLACEMENT_CONFIG_DIR": str(self.folder / "placement"),
                "OS_NOVA_CONFIG_DIR": str(self.folder / "nova")}  # fmt: skip

    # -- the parts ------------------------------------------------------------------------------------------
    def _write_folders(self) -> None:
        assert self.folder is not None
        for sub in ("keystone/fernet-keys", "keystone/credential-keys", "placement", "nova/lock", "nova/instances",
                    "glance/images", "glance/staging", "glance/tasks", "glance/lock", "cinder/lock", "heat", "logs",
                    "wsgi"):  # fmt: skip
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("keystone/fernet-keys", "keystone/credential-keys"):
            (self.folder / sub).chmod(0o700)  # the folder becomes the services' user's in _write_configs

    def _start_db(self, data: Path) -> None:
        from clauseproof.targets.single.mariadb import EmbeddedMariaDB

        db = EmbeddedMariaDB("openstack-db", "clauseproof", None, data_source=data, create_namespace=False,
                             settings={"max_connections": "1000", "innodb_flush_log_at_trx_commit": "2"})  # fmt: skip
        self.db = db  # set before the start: stop() then finds a half-started server
        db.start()

    def _start_rabbit(self) -> None:
        user = service_user("rabbitmq")
        folder = make_private_folder("openstack-rabbit", user)
        self.more_folders.append(folder)
        port, dist = free_port(), free_port()
        self.ports["rabbit"] = port
        (folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{port}\ndefault_user = clauseproof\n"
            f"default_pass = {self.passwords['rabbit']}\nloopback_users = none\n"
            "log.console = true\nlog.file = false\n"
        )
        (folder / "enabled_plugins").write_text("[].\n")
        if user:
            subprocess.run(["chown", "-R", user, str(folder)], check=True)
        env = {
            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(folder),  # its Erlang cookie: made there, 0400, its own
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": f"{folder.name}@localhost",
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_DIST_PORT": str(dist),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        saved, self.folder = self.folder, folder
        try:
            proc = self._spawn("openstack-rabbitmq", [RABBIT], folder / "rabbitmq.out", env, user=user)
        finally:
            self.folder = saved
        wait_port(port, proc, "RabbitMQ", folder / "rabbitmq.out", timeout=60)

    def _write_configs(self, paste: Path) -> None:
        assert self.folder is not None and self.db is not None
        f = self.folder
        for key in ("keystone", "nova", "glance", "cinder", "heat", "placement", "network"):
            self.ports.setdefault(key, free_port())
        p = self.ports
        db = f"mysql+pymysql://root:{self.db.password}@127.0.0.1:{self.db.endpoint.port}" if self.db.endpoint else ""
        transport = f"rabbit://clauseproof:{self.passwords['rabbit']}@127.0.0.1:{p.get('rabbit', 0)}/"
        keystone = f"http://127.0.0.1:{p['keystone']}/v3"

        def auth(user: str) -> str:
            return conf.AUTH.format(keystone=keystone, user=user, password=self.passwords[user])

        def write(path: str, text: str) -> None:
            target = f / path
            target.write_text(text)
            target.chmod(0o600)

        write("keystone/keystone.conf", conf.KEYSTONE.format(db=db, folder=f))
        shutil.copy(paste / "nova" / "api-paste.ini", f / "nova" / "api-paste.ini")  # Nova's WSGI app: paste first
        shutil.copy(paste / "glance" / "glance-api-paste.ini", f / "glance" / "glance-api-paste.ini")
        write("placement/placement.conf", conf.PLACEMENT.format(db=db, auth=auth("placement")))
        nova_common = {
            "transport": transport, "folder": f, "paste": paste, "auth": auth("nova"),
            "filters": ",".join(self._filters()), "soft_weight": 1.0 if self.anti_affinity else 0.0,
            "no_upcall": "false" if self.anti_affinity else "true",
            "quota_instances": self.quota_instances, "default_az": "az1",
        }  # fmt: skip
        write("nova/policy.yaml", json.dumps(self.nova_policy) + "\n")  # JSON is YAML
        databases = conf.NOVA_DATABASES.format(db=db)
        # the conductor refuses a group whose filter is not configured: it reads the full list; the scheduler reads
        # its own (without the anti-affinity filter in the cheat)
        write(
            "nova/nova.conf",
            conf.NOVA.format(
                host="cp-controller", databases=databases, **{**nova_common, "filters": ",".join(conf.FILTERS)}
            ),
        )
        write("nova/scheduler.conf", conf.NOVA.format(host="cp-controller", databases=databases, **nova_common))
        for host in self.hosts:  # a compute host reaches the databases through the conductor only
            write(f"nova/{host}.conf", conf.NOVA.format(host=host, databases="", **nova_common))
        write("glance/glance-api.conf", conf.GLANCE.format(port=p["glance"], db=db, folder=f, paste=paste,
                                                           auth=auth("glance")))  # fmt: skip
        write("cinder/cinder.conf", conf.CINDER.format(
            transport=transport, folder=f, port=p["cinder"], paste=paste, db=db, auth=auth("cinder"),
            auth_nova=auth("nova"), glance=f"http://127.0.0.1:{p['glance']}"))  # fmt: skip
        write("heat/heat.conf", conf.HEAT.format(
            transport=transport, port=p["heat"], domain_password=self.passwords["heat_domain_admin"], db=db,
            auth=auth("heat"), keystone=keystone, password=self.passwords["heat"], paste=paste))  # fmt: skip
        for name, module, factory, env in (
            ("keystone", "keystone.server.wsgi", "initialize_public_application",
             {"OS_KEYSTONE_CONFIG_DIR": str(f / "keystone")}),
            ("placement", "placement.wsgi", "init_application", {"OS_PLACEMENT_CONFIG_DIR": str(f / "placement")}),
            ("nova-api", "nova.api.openstack.compute.wsgi", "init_application",
             {"OS_NOVA_CONFIG_DIR": str(f / "nova"), "OS_NOVA_CONFIG_FILES": "api-paste.ini;nova.conf",
              # uWSGI's threads, not eventlet's: a patched thread blocks every request of the process
              "OS_NOVA_DISABLE_EVENTLET_PATCHING": "1"}),
            ("glance-api", "glance.common.wsgi_app", "init_app", {"OS_GLANCE_CONFIG_DIR": str(f / "glance")}),
        ):  # fmt: skip
            write(f"wsgi/{name}.py", conf.WSGI_SHIM.format(env=env, module=module, factory=factory))
        user = own_code_user()
        if user.name:
            subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", str(f)], check=True)

    def _uwsgi(self, name: str, port: int) -> Any:
        assert self.folder is not None
        args = [UWSGI, "--plugin", "python3", "--http11-socket", f"127.0.0.1:{port}", "--wsgi-file",
                str(self.folder / "wsgi" / f"{name}.py"), "--master", "--processes", "1", "--threads", "4",
                "--die-on-term", "--need-app", "--buffer-size", "65535", "--enable-threads",
                "--disable-logging", "--chdir", "/"]  # fmt: skip
        return self._logged(f"openstack-{name}", args, self.folder / "logs" / f"{name}.log")

    def _python(self, kind: str, module: str, config: str, *more: str) -> Any:
        assert self.folder is not None
        code = f"import sys; from {module} import main; sys.argv[0] = {kind!r}; sys.exit(main())"
        args = [PY, "-c", code, "--config-file", str(self.folder / config), *more]
        return self._logged(f"openstack-{kind}", args, self.folder / "logs" / f"{kind}.log")

    def _logged(self, kind: str, args: list[str], log_path: Path) -> Any:
        proc = self._spawn(kind, args, log_path, self._env(), own_code=True)
        self._logs[proc.pid] = log_path
        return proc

    def _wait_http(self, url: str, what: str, log_path: Path, proc: Any, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                last = f"it exited ({proc.returncode})"
                break
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status < 500:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    return
                last = f"HTTP {exc.code}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        tail = log_path.read_text(errors="replace").strip().splitlines()[-10:] if log_path.exists() else []
        raise ClauseproofError(
            f"{what} did not answer {url} within {timeout:g} s ({last}); its log ends:\n    "
            + "\n    ".join(masking.mask(t) for t in tail),
            checked="the embedded OpenStack's start",
        )

    def _start_keystone(self) -> None:
        assert self.folder is not None
        c = "{c}/keystone/keystone.conf"
        user = own_code_user()
        owner = ["--keystone-user", str(user.uid), "--keystone-group", str(user.gid)] if user.name else []
        url = self.keystone_url
        steps = [
            ["keystone.cmd.manage", "--config-file", c, "fernet_setup", *owner],
            ["keystone.cmd.manage", "--config-file", c, "credential_setup", *owner],
            # the admin (a new password each start) and the identity endpoint
            ["keystone.cmd.manage", "--config-file", c, "bootstrap", f"--bootstrap-password={self.passwords['admin']}",
             "--bootstrap-admin-url", url, "--bootstrap-internal-url", url, "--bootstrap-public-url", url,
             "--bootstrap-region-id", "RegionOne"],
        ]  # fmt: skip
        with ThreadPoolExecutor(len(steps)) as pool:  # three at once; uWSGI starts once the keys exist
            jobs = [pool.submit(self._manage, "keystone-manage", step) for step in steps]
            jobs[0].result()
            jobs[1].result()
            proc = self._uwsgi("keystone", self.ports["keystone"])
            jobs[2].result()
        self._wait_http(url, "Keystone", self._logs[proc.pid], proc)

    def connect(self, **over: Any) -> Any:
        import openstack

        return openstack.connect(**{**self.auth(), **over}, app_name="clauseproof", load_yaml_config=False,
                                 load_envvars=False, api_timeout=60)  # fmt: skip

    def _start_control(self) -> None:
        """Nova's conductor, Placement and Nova's API: they import (seconds each) while Keystone
        starts; the compute hosts come after, when the conductor answers (a compute host that asks too early waits
        10 s per attempt)."""
        self._start_workload("openstack-network-stub", "network_stub", self.ports["network"],
                             "the network stub (Nova's queries about ports)")  # fmt: skip
        self._service_procs: list[tuple[str, Any, str | None]] = [
            ("Nova conductor", self._python("nova-conductor", "nova.cmd.conductor", "nova/nova.conf"), None),
            ("Placement", self._uwsgi("placement", self.ports["placement"]),
             f"http://127.0.0.1:{self.ports['placement']}/"),
            ("Nova API", self._uwsgi("nova-api", self.ports["nova"]), f"http://127.0.0.1:{self.ports['nova']}/"),
        ]  # fmt: skip

    def _start_services(self) -> None:
        procs = self._service_procs  # the scheduler asks Placement (through Keystone) at start
        procs.append(
            ("Nova scheduler", self._python("nova-scheduler", "nova.cmd.scheduler", "nova/scheduler.conf"), None)
        )
        for host in self.hosts:
            procs.append((f"nova-compute {host}", self._python(f"nova-compute-{host}", "nova.cmd.compute",
                                                                f"nova/{host}.conf"), None))  # fmt: skip
        procs += [
            ("Glance", self._uwsgi("glance-api", self.ports["glance"]),
             f"http://127.0.0.1:{self.ports['glance']}/"),
            ("Cinder API", self._python("cinder-api", "cinder.cmd.api", "cinder/cinder.conf"),
             f"http://127.0.0.1:{self.ports['cinder']}/"),
            ("Cinder scheduler", self._python("cinder-scheduler", "cinder.cmd.scheduler", "cinder/cinder.conf"),
             None),
            ("Cinder volume", self._python("cinder-volume", "cinder.cmd.volume", "cinder/cinder.conf"), None),
            ("Heat API", self._python("heat-api", "heat.cmd.api", "heat/heat.conf"),
             f"http://127.0.0.1:{self.ports['heat']}/"),
            ("Heat engine", self._python("heat-engine", "heat.cmd.engine", "heat/heat.conf"), None),
        ]  # fmt: skip
        for what, proc, url in procs:
            if url:
                self._wait_http(url, what, self._logs[proc.pid], proc, timeout=START_TIMEOUT_S)

    def _check_alive(self) -> None:
        for what, proc, _ in getattr(self, "_service_procs", []):
            if proc.poll() is not None:
                log_path = self._logs[proc.pid]
                tail = log_path.read_text(errors="replace").strip().splitlines()[-8:] if log_path.exists() else []
                raise ClauseproofError(f"{what} of the embedded OpenStack exited ({proc.returncode}); its log ends:"
                                       "\n    " + "\n    ".join(masking.mask(t) for t in tail))  # fmt: skip

    def _wait_computes(self) -> None:
        conn = self.connect()
        deadline = time.monotonic() + START_TIMEOUT_S
        seen: set[str] = set()
        while time.monotonic() < deadline:
            self._check_alive()
            up = {s.host for s in conn.compute.services(binary="nova-compute") if s.state == "up"}
            hyper = {h.name for h in conn.compute.hypervisors()}
            seen = up & hyper
            if set(self.hosts) <= seen:
                conn.close()
                return
            time.sleep(1)
        conn.close()
        raise ClauseproofError(
            f"the embedded OpenStack's compute hosts did not register within {START_TIMEOUT_S} s: "
            f"{sorted(set(self.hosts) - seen)} missing",
            checked="Nova's service list and hypervisors",
        )

    def stop(self) -> None:
        super().stop()
        db = self.db
        if db is not None:
            with contextlib.suppress(Exception):
                db.stop()
            self.db = None

    @contextlib.contextmanager
    def running(self) -> Iterator[EmbeddedOpenStack]:
        self.start()
        try:
            yield self
        finally:
            self.stop()
