"""Embedded replicated topologies: a primary and N replicas, behind a proxy, all on loopback.

- ``embedded-postgresql-replicated``: PostgreSQL primary + N streaming replicas (one
  ``pg_basebackup``, copied N times), behind pgpool-II in streaming-replication mode with
  statement-level load balancing: one endpoint that splits reads from writes by itself.
- ``embedded-mariadb-replicated``: MariaDB primary + N GTID replicas; Debian ships no proxy that
  splits MySQL reads from writes automatically, so this is the two-endpoint form: writes go to
  the primary, reads to an HAProxy endpoint that balances new connections over the replicas.

Memory per instance is kept small (shared_buffers / innodb_buffer_pool_size 64 MB) so that
1 + 5 fit on a 2-core machine; the settings are recorded in the evidence.  The target's own
endpoint is the write endpoint; :meth:`topology` describes the rest for the SX-RDS-2 checks.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from clauseproof.core import reaper
from clauseproof.core.errors import ClauseproofError
from clauseproof.core.i18n import Text, msg
from clauseproof.targets.base import Endpoint, Target
from clauseproof.targets.clusters.topology import Node, Topology, pool_nodes
from clauseproof.targets.host.folders import free_port, make_private_folder
from clauseproof.targets.host.processes import _tail, haproxy_drop, service_user
from clauseproof.targets.single.embedded import START_TIMEOUT_S, STOP_TIMEOUT_S, EmbeddedServer
from clauseproof.targets.single.mariadb import EmbeddedMariaDB
from clauseproof.targets.single.postgres import EmbeddedPostgres

DEFAULT_REPLICAS = 5
#: Clients the proxies must accept at once (the balance check uses 50).
PROXY_CLIENTS = 64
PG_NODE_SETTINGS = {
    "shared_buffers": "64MB",
    "max_connections": "120",
    "wal_level": "replica",
    "max_wal_senders": "16",
    "hot_standby": "on",
    "hot_standby_feedback": "on",
}
MARIADB_NODE_SETTINGS = {"innodb_buffer_pool_size": "64M", "max_connections": "200"}
#: How pgpool-II (and every TCP client) proves the password to the PostgreSQL nodes.  pgpool-II opens a connection
#: to each of the 6 nodes per client session; with SCRAM (4096 PBKDF2 rounds each) 50 clients arriving at once
#: waited 2.5 s (median) to 3.8 s for a connection, against 0.8 s / 1.8 s without authentication: md5 keeps the
#: password required at the cost of one hash per connection.
PG_NODE_AUTH = "md5"


class Helper:
    """A proxy process (pgpool-II, HAProxy) in the foreground of its own session, in ``folder``."""

    def __init__(
        self,
        name: str,
        args: list[str],
        folder: Path,
        port: int,
        stop_signal: int,
        host: str = "127.0.0.1",
        user: str | None = None,
    ) -> None:
        """``args`` may start with a prefix that execs the program (``ip netns exec``: it then listens on ``host``
        inside a namespace); ``user``: the OS user it runs as (where the harness is root; its own group only)."""
        self.name, self.args, self.folder, self.port, self.stop_signal = name, args, folder, port, stop_signal
        self.host, self.user = host, user
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = folder / f"{name}.log"

    def start(self) -> None:
        as_user: dict[str, Any] = {}
        if self.user and os.geteuid() == 0:
            as_user = {"user": self.user, "group": pwd.getpwnam(self.user).pw_gid, "extra_groups": []}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.folder, **as_user
            )
        (self.folder / f"{self.name}-leader.pid").write_text(str(self.proc.pid))  # for reap_stale
        reaper.register(self.name, self.proc.pid, self.folder)  # kept outside the folder: the group and its shm
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ClauseproofError(
                    f"{self.name} exited at start (status {self.proc.returncode}); its log:\n    {_tail(self.log)}",
                    checked=" ".join(self.args),
                )
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.5):
                return
            time.sleep(0.05)
        raise ClauseproofError(
            f"{self.name} did not listen on {self.host}:{self.port} within {START_TIMEOUT_S} s; its log:\n    "
            + _tail(self.log),
            checked=" ".join(self.args),
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # the leader only: pgpool-II shuts its children down itself (a child signalled
            # directly may die first and be respawned by a leader that has not heard yet)
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError):  # children left behind by the leader
            os.killpg(self.proc.pid, signal.SIGKILL)
        reaper.unregister(self.proc.pid)
        self.proc = None


class ReplicatedTopology(Target):
    """Shared life cycle: a primary, replicas started in parallel, a proxy."""

    kind = "embedded"

    def __init__(self, label: str, namespace: str, bindir: Path | None, *, replicas: int = DEFAULT_REPLICAS) -> None:
        super().__init__(label, namespace)
        self.bindir_option = bindir
        self.n_replicas = replicas
        self.primary: EmbeddedServer | None = None
        self.replicas: list[EmbeddedServer] = []
        self.proxy: Helper | None = None
        self.folder: Path | None = None
        self.read_endpoint: Endpoint | None = None

    def local_nodes(self) -> list[tuple[str, int, Path]]:
        servers = [s for s in [self.primary, *self.replicas] if s is not None]
        return [n for s in servers for n in s.local_nodes()]

    def _start_replicas(self, servers: list[EmbeddedServer]) -> None:
        self.replicas = servers
        with ThreadPoolExecutor(max_workers=len(servers)) as pool:
            failures = [f for f in (pool.submit(s.start) for s in servers)]
        for f in failures:
            exc = f.exception()
            if exc is not None:
                raise exc

    def stop(self) -> None:
        if self.proxy is not None:
            with contextlib.suppress(Exception):
                self.proxy.stop()
            self.proxy = None
        for r in self.replicas:
            with contextlib.suppress(Exception):
                r.stop()
        self.replicas = []
        if self.primary is not None:
            with contextlib.suppress(Exception):
                self.primary.stop()
            self.primary = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        self.endpoint = self.read_endpoint = None

    def stop_replica(self, index: int) -> None:
        """Stop one replica (a positive control: the topology then has one replica fewer)."""
        self.replicas[index].stop_server()

    def node_settings(self) -> dict[str, str]:
        raise NotImplementedError

    def proxy_description(self) -> Text | str:
        raise NotImplementedError

    def topology(self) -> Topology:
        assert self.primary is not None and self.primary.endpoint is not None
        assert self.endpoint is not None and self.read_endpoint is not None
        return Topology(
            dialect=self.dialect,
            namespace=self.namespace,
            primary=Node("primary", self.primary.endpoint, weight=0.0),
            replicas=[Node(f"replica{i}", r._ep(), 1.0) for i, r in enumerate(self.replicas, 1)],
            write=self.endpoint,
            read=self.read_endpoint,
            automatic_split=self.endpoint == self.read_endpoint,
            proxy=self.proxy_description(),
            source=msg("topology_started_here", n=len(self.replicas)),
        )

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["server_host"] = "the client machine (embedded)"
        d["folder"] = str(self.folder) if self.folder else None
        d["node_settings"] = self.node_settings()
        if self.primary is not None and self.endpoint is not None and self.read_endpoint is not None:
            d["topology"] = self.topology().describe()
        return d

    def server_environment(self) -> dict[str, Any]:
        """The primary's version and settings (the replicas run the same binaries and settings)."""
        assert self.primary is not None
        return self.primary.server_environment()


class ReplicatedPostgres(ReplicatedTopology):
    """PostgreSQL primary + N streaming replicas behind pgpool-II (one splitting endpoint)."""

    dialect = "postgresql"

    def __init__(
        self,
        label: str,
        namespace: str,
        bindir: Path | None,
        *,
        replicas: int = DEFAULT_REPLICAS,
        load_balance: bool = True,
    ) -> None:
        super().__init__(label, namespace, bindir, replicas=replicas)
        #: False: pgpool sends every read to the primary (a positive control for the balance check).
        self.load_balance = load_balance
        self.pgpool_version = ""

    def node_settings(self) -> dict[str, str]:
        return dict(PG_NODE_SETTINGS)

    def proxy_description(self) -> Text | str:
        mode = msg("pgpool_balancing" if self.load_balance else "pgpool_balancing_off")
        return msg("pgpool_described", pgpool=self.pgpool_version or "pgpool-II", mode=mode, auth=PG_NODE_AUTH)

    def start(self) -> None:
        pgpool = shutil.which("pgpool") or "/usr/sbin/pgpool"
        if not os.access(pgpool, os.X_OK):
            raise ClauseproofError(
                "pgpool (pgpool-II) not found",
                checked="PATH and /usr/sbin/pgpool",
                fix="install the Debian package pgpool2 (apt-get install pgpool2); ./run installs it",
            )
        try:
            self.folder = make_private_folder("pgpool", service_user("postgres"))  # pgpool-II runs as postgres
            primary = EmbeddedPostgres(
                f"{self.label}/primary",
                self.namespace,
                self.bindir_option,
                settings=self.node_settings(),
                tcp_auth=PG_NODE_AUTH,
            )
            self.primary = primary
            primary.start()
            assert primary.folder is not None
            base = primary.folder / "base"
            primary._run(
                [
                    primary.tool("pg_basebackup"),
                    *primary.socket_args(),
                    "-D",
                    str(base),
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                ],
                "pg_basebackup for the replicas",
            )
            p = primary._ep()
            self._start_replicas(
                [
                    EmbeddedPostgres(
                        f"{self.label}/replica{i}",
                        self.namespace,
                        self.bindir_option,
                        data_source=base,
                        standby=True,
                        create_namespace=False,
                        password=primary.password,
                        tcp_auth=PG_NODE_AUTH,
                        settings={
                            **self.node_settings(),
                            # through the primary's socket: the password stays out of the replicas' settings
                            "primary_conninfo": f"host={primary.folder} port={p.port} user={p.user} "
                            f"application_name=replica{i}",
                        },
                    )
                    for i in range(1, self.n_replicas + 1)
                ]
            )
            shutil.rmtree(base, ignore_errors=True)
            self._start_pgpool(pgpool)
        except BaseException:
            self.stop()
            raise

    def _start_pgpool(self, pgpool: str) -> None:
        assert self.folder is not None and self.primary is not None
        folder = self.folder
        port, pcp_port = free_port(), free_port()
        lines = {
            "backend_clustering_mode": "'streaming_replication'",
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "socket_dir": f"'{folder}'",
            "pcp_listen_addresses": "'127.0.0.1'",
            "pcp_port": str(pcp_port),
            "pcp_socket_dir": f"'{folder}'",
            "pid_file_name": f"'{folder / 'pgpool.pid'}'",
            "logdir": f"'{folder}'",
            "wd_ipc_socket_dir": f"'{folder}'",
            "memqcache_oiddir": f"'{folder / 'oiddir'}'",
            "use_watchdog": "off",
            "enable_pool_hba": "on",
            "pool_passwd": f"'{folder / 'pool_passwd'}'",
            "num_init_children": str(PROXY_CLIENTS),
            "max_pool": "1",
            "load_balance_mode": "on" if self.load_balance else "off",
            "statement_level_load_balance": "on",
            "sr_check_period": "0",
            "sr_check_user": "'postgres'",
            "health_check_period": "0",
            "failover_on_backend_error": "off",
            "log_destination": "'stderr'",
        }
        nodes = [self.primary, *self.replicas]
        for i, node in enumerate(nodes):
            ep = node._ep()
            lines[f"backend_hostname{i}"] = f"'{ep.host}'"
            lines[f"backend_port{i}"] = str(ep.port)
            lines[f"backend_weight{i}"] = "0" if i == 0 else "1"
            lines[f"backend_flag{i}"] = "'DISALLOW_TO_FAILOVER'"
            lines[f"backend_application_name{i}"] = "'primary'" if i == 0 else f"'replica{i}'"
        (folder / "pgpool.conf").write_text("".join(f"{k} = {v}\n" for k, v in lines.items()))
        (folder / "pcp.conf").write_text("")
        # clients authenticate to pgpool, and pgpool to the servers, with the primary's password (which the
        # replicas share); pool_passwd holds it as text, in the run's 0700 folder, removed with it
        (folder / "pool_hba.conf").write_text(f"host all all 127.0.0.1/32 {PG_NODE_AUTH}\n")
        (folder / "pool_passwd").write_text(f"postgres:TEXT{self.primary.password}\n")
        (folder / "pool_passwd").chmod(0o600)
        user = service_user("postgres")
        if user:
            for path in folder.iterdir():
                shutil.chown(path, user=user)
        version = subprocess.run([pgpool, "--version"], capture_output=True, text=True, check=False)
        self.pgpool_version = (version.stdout or version.stderr).strip().split(" (")[0]
        self.proxy = Helper(
            "pgpool",
            [
                pgpool,
                "-n",
                "-f",
                str(folder / "pgpool.conf"),
                "-F",
                str(folder / "pcp.conf"),
                "-a",
                str(folder / "pool_hba.conf"),
            ],
            folder,
            port,
            signal.SIGINT,  # fast shutdown (SIGTERM waits for clients to disconnect)
            user=user,
        )
        self.proxy.start()
        self.endpoint = self.read_endpoint = Endpoint(
            "127.0.0.1", port, "postgres", "postgres", password=self.primary.password
        )
        self._wait_pgpool_nodes()

    def _wait_pgpool_nodes(self) -> None:
        """Wait until pgpool knows the primary and every standby."""
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT_S
        last = ""
        while time.monotonic() < deadline:
            try:
                with self.connect(in_namespace=False) as conn:
                    rows = pool_nodes(conn)
                roles = [r.get("role") for r in rows]
                if roles.count("primary") == 1 and roles.count("standby") == len(self.replicas):
                    return
                last = f"SHOW POOL_NODES roles: {roles}"
            except psycopg.Error as exc:
                last = str(exc).strip()
            time.sleep(0.2)
        raise ClauseproofError(f"pgpool-II did not see the primary and {len(self.replicas)} standbys: {last}")


class ReplicatedMariaDB(ReplicatedTopology):
    """MariaDB primary + N GTID replicas; writes to the primary, reads through HAProxy (two endpoints)."""

    dialect = "mysql"

    def node_settings(self) -> dict[str, str]:
        return dict(MARIADB_NODE_SETTINGS)

    def proxy_description(self) -> Text | str:
        return msg("haproxy_described")

    def start(self) -> None:
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.access(haproxy, os.X_OK):
            raise ClauseproofError(
                "haproxy not found",
                checked="PATH and /usr/sbin/haproxy",
                fix="install the Debian package haproxy (apt-get install haproxy); ./run installs it",
            )
        try:
            installer = EmbeddedMariaDB(self.label, self.namespace, self.bindir_option)
            self.folder = folder = make_private_folder("mariadbrep", installer.server_user)
            template = folder / "template"
            installer.install_db(template)
            primary = EmbeddedMariaDB(
                f"{self.label}/primary",
                self.namespace,
                self.bindir_option,
                data_source=template,
                settings={
                    **self.node_settings(),
                    "server_id": "1",
                    "log_bin": "binlog",
                    "binlog_format": "ROW",
                    "gtid_strict_mode": "ON",
                },
            )
            self.primary = primary
            primary.start()
            self._start_replicas(
                [
                    EmbeddedMariaDB(
                        f"{self.label}/replica{i}",
                        self.namespace,
                        self.bindir_option,
                        data_source=template,
                        create_namespace=False,
                        password=primary.password,
                        settings={**self.node_settings(), "server_id": str(i + 1), "read_only": "ON"},
                    )
                    for i in range(1, self.n_replicas + 1)
                ]
            )
            shutil.rmtree(template, ignore_errors=True)
            p = primary._ep()
            for r in self.replicas:
                with r.connect(in_namespace=False) as conn, conn.cursor() as cur:
                    cur.execute(
                        "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, MASTER_PASSWORD=%s, "
                        "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
                        (p.host, p.port, p.user, p.password),
                    )
                    cur.execute("START SLAVE")
            self.endpoint = p
            self._start_haproxy(haproxy)
        except BaseException:
            self.stop()
            raise

    def _start_haproxy(self, haproxy: str) -> None:
        assert self.folder is not None
        port = free_port()
        servers = "".join(
            f"    server replica{i} {r._ep().host}:{r._ep().port} weight 1\n" for i, r in enumerate(self.replicas, 1)
        )
        (self.folder / "haproxy.cfg").write_text(
            "global\n"
            f"    maxconn {PROXY_CLIENTS * 4}\n" + haproxy_drop() + "defaults\n"
            "    mode tcp\n"
            "    timeout connect 5s\n"
            "    timeout client 120s\n"
            "    timeout server 120s\n"
            "listen read\n"
            f"    bind 127.0.0.1:{port}\n"
            "    balance roundrobin\n"
            f"{servers}"
        )
        self.proxy = Helper(
            "haproxy", [haproxy, "-db", "-f", str(self.folder / "haproxy.cfg")], self.folder, port, signal.SIGTERM
        )
        self.proxy.start()
        assert self.primary is not None
        self.read_endpoint = Endpoint("127.0.0.1", port, "root", "", password=self.primary.password)
