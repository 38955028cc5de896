"""``embedded-mariadb-galera``: 3 MariaDB nodes in one Galera cluster (Debian ``galera-4``) — every node takes
SQL writes (certification-based, virtually synchronous replication), and only the primary component (a majority
of the nodes) takes them.

Each node is a ``mariadbd`` with the wsrep provider, its own configuration file and data directory in one
``clauseproof-galera-*`` folder, in a network namespace of its own where the harness runs as root
(:mod:`clauseproof.targets.faults.netns`; loopback otherwise).  ``node1`` bootstraps the cluster
(``--wsrep-new-cluster``); the others join by a state snapshot transfer made with mariadb-backup (the donor
keeps taking writes).  A node
restarted after a kill joins again by an incremental transfer from a peer's write-set cache, or a snapshot.

Clients connect to any node: :meth:`GaleraCluster.connect` hands out the nodes in turn, skipping one that does not
answer (as a client with a multi-host failover list does).  There is no leader: :meth:`leader` names the node a
fault hits (the first synced node of the primary component).  Faults: kill, freeze, isolate (a node cut off is
not in the primary component and must refuse writes, MariaDB error 1047); scale out and in.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clauseproof.core import masking, reaper
from clauseproof.core.errors import ClauseproofError
from clauseproof.core.i18n import Text, msg
from clauseproof.targets.base import Endpoint, Target
from clauseproof.targets.faults import netns
from clauseproof.targets.faults.netns import Network
from clauseproof.targets.host import processes
from clauseproof.targets.host.folders import free_port, make_private_folder
from clauseproof.targets.host.processes import _tail, _working_in, kill_processes
from clauseproof.targets.single.embedded import _mysql_user
from clauseproof.targets.single.mariadb import EmbeddedMariaDB

NODES = 3
PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
#: Galera's failure detection: a silent node is suspected after evs.suspect_timeout and dropped from the component by
#: then, or at the latest after evs.inactive_timeout.  The stand-in's own settings, shorter than Galera's defaults
#: (5 s, 15 s, install 7.5 s) so that the failover suite's freezes need not hold as long (issue #36); the evidence
#: records them as the stand-in's, not a vendor's.  Keep-alives go every second (evs.keepalive_period).
SUSPECT_S, INACTIVE_S, INSTALL_S = 3, 8, 7
START_TIMEOUT_S = 120


@dataclass
class GaleraNode:
    name: str
    index: int
    host: str
    port: int
    gcomm: int
    ist: int
    sst: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None


class GaleraCluster(Target):
    """The multi-writer HA target; see the module's docstring."""

    kind = "embedded"
    dialect = "mysql"
    #: every node of the primary component takes writes: the failover judge's rule is "a node outside the
    #: primary component takes none", not "one writable node"
    multi_writer = True

    def __init__(self, label: str, namespace: str, bindir: Path | None) -> None:
        super().__init__(label, namespace)
        self.binaries = EmbeddedMariaDB(label + "-binaries", namespace, bindir)  # finds the binaries only
        self.folder: Path | None = None
        self.password = masking.new_secret()
        self.sst_password = masking.new_secret()
        self.nodes: list[GaleraNode] = []
        #: the nodes clients are handed (a load balancer's list): a new node once it is synced, a removed one
        #: taken out before it stops; a killed or frozen node stays (clients find out)
        self.serving: list[GaleraNode] = []
        self.cluster_name = "cp-" + secrets.token_hex(4)
        self.server_user = _mysql_user() if os.geteuid() == 0 else None
        self.net: Network | None = None
        self.no_network = ""
        self._turn = itertools.count()

    # -- start ------------------------------------------------------------------------------
    def start(self) -> None:
        missing = [
            what
            for what, ok in (
                ("galera-4", PROVIDER.exists()),
                ("mariadb-backup", shutil.which("mariadb-backup") is not None),
                ("socat", shutil.which("socat") is not None),
            )
            if not ok
        ]
        if missing:
            raise ClauseproofError(
                f"{self.label} needs {', '.join(missing)}, not installed",
                fix=f"apt-get install {' '.join(missing)} (./run installs them)",
            )
        self.folder = make_private_folder("galera", self.server_user)
        try:
            self.no_network = netns.available()
            if not self.no_network:
                self.net = Network()
                self.net.create(NODES)
            for i in range(1, NODES + 1):
                self._new_node(i, launch=False)
            self._install(self.nodes[0])
            self._launch(self.nodes[0], bootstrap=True)
            self.wait_rejoin(self.nodes[0], START_TIMEOUT_S, size=1)
            for node in self.nodes[1:]:  # one snapshot transfer at a time
                self._launch(node)
                self.wait_rejoin(node, START_TIMEOUT_S, size=node.index)
            self.serving = list(self.nodes)
            first = self.nodes[0]
            self.endpoint = Endpoint(first.host, first.port, "root", "", password=self.password)
            self.create_namespace()
        except BaseException:
            self.stop()
            raise

    def _host(self, i: int) -> str:
        return self.net.host(i) if self.net else "127.0.0.1"

    def _new_node(self, i: int, launch: bool = True) -> GaleraNode:
        assert self.folder is not None
        if self.net is not None and i not in self.net.namespaces:
            self.net.add(i)
        node = GaleraNode(
            f"node{i}", i, self._host(i), free_port(), free_port(), free_port(), free_port(), self.folder / f"node{i}"
        )
        (node.folder / "data").mkdir(parents=True, mode=0o700)
        if self.server_user:
            for path in (node.folder, node.folder / "data"):
                shutil.chown(path, user=self.server_user)
        self.nodes.append(node)
        self._write_config()
        if launch:
            self._launch(node)
        return node

    def _write_config(self) -> None:
        """Every node's configuration file (the cluster address lists every node; written again on a scale)."""
        members = ",".join(f"{n.host}:{n.gcomm}" for n in self.nodes)
        for n in self.nodes:
            settings = {
                "datadir": n.folder / "data",
                "socket": n.folder / "mariadbd.sock",
                "port": n.port,
                "bind-address": n.host,
                "pid-file": n.folder / "mariadbd.pid",
                "log-error": n.folder / "server.log",
                "skip-name-resolve": 1,
                "binlog_format": "ROW",
                "default_storage_engine": "InnoDB",
                "innodb_autoinc_lock_mode": 2,
                "innodb_buffer_pool_size": "128M",
                "innodb_flush_log_at_trx_commit": 1,
                "wsrep_on": "ON",
                "wsrep_provider": PROVIDER,
                "wsrep_cluster_name": self.cluster_name,
                "wsrep_cluster_address": f"gcomm://{members}",
                "wsrep_node_name": n.name,
                "wsrep_node_address": f"{n.host}:{n.gcomm}",
                "wsrep_provider_options": f'"gmcast.listen_addr=tcp://{n.host}:{n.gcomm};'
                f"ist.recv_addr={n.host}:{n.ist};evs.suspect_timeout=PT{SUSPECT_S}S;"
                f'evs.inactive_timeout=PT{INACTIVE_S}S;evs.install_timeout=PT{INSTALL_S}S"',
                "wsrep_sst_receive_address": f"{n.host}:{n.sst}",
                "wsrep_sst_method": "mariabackup",
                "wsrep_sst_auth": f"cp_sst:{self.sst_password}",
                **({"user": self.server_user} if self.server_user else {}),
            }
            text = "[mysqld]\n" + "".join(f"{k}={v}\n" for k, v in settings.items())
            path = n.folder / "my.cnf"
            path.write_text(text)
            path.chmod(0o600)
            if self.server_user:
                shutil.chown(path, user=self.server_user)

    def _install(self, node: GaleraNode) -> None:
        """node1's data directory, and the accounts every node gets by its snapshot: root over TCP from the harness
        with this cluster's password, the snapshot transfer's account through the socket."""
        assert self.folder is not None
        self.binaries.server_user = self.server_user
        self.binaries.install_db(node.folder / "data")
        harness = self.net.harness if self.net else "127.0.0.1"
        pw, sst = (p.replace("\\", "\\\\").replace("'", "\\'") for p in (self.password, self.sst_password))
        init = node.folder / "init.sql"
        init.write_text(
            "DELETE FROM mysql.global_priv WHERE User = 'root' AND Host NOT IN ('localhost', '127.0.0.1');\n"
            "FLUSH PRIVILEGES;\n"
            f"CREATE OR REPLACE USER 'root'@'{harness}' IDENTIFIED BY '{pw}';\n"
            f"GRANT ALL PRIVILEGES ON *.* TO 'root'@'{harness}' WITH GRANT OPTION;\n"
            f"CREATE OR REPLACE USER 'cp_sst'@'localhost' IDENTIFIED BY '{sst}';\n"
            "GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, REPLICA MONITOR ON *.* TO 'cp_sst'@'localhost';\n"
        )
        init.chmod(0o600)
        if self.server_user:
            shutil.chown(init, user=self.server_user)

    def _launch(self, node: GaleraNode, bootstrap: bool = False) -> None:
        """Start ``node``'s mariadbd (in its namespace) in a session of its own; it joins the cluster (or makes it)."""
        assert self.folder is not None
        server, _ = self.binaries.binaries()
        args = [str(server), f"--defaults-file={node.folder / 'my.cnf'}"]
        if bootstrap:
            args += ["--wsrep-new-cluster", f"--init-file={node.folder / 'init.sql'}"]
        prefix = self.net.exec_prefix(node.index) if self.net else []
        with open(node.folder / "mariadbd.out", "ab") as out:
            node.proc = subprocess.Popen(
                [*prefix, *args], stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=node.folder
            )
        reaper.register(node.name, node.proc.pid, None)

    # -- state ------------------------------------------------------------------------------
    def connect_node(self, node: GaleraNode | None, timeout: float = 2.0) -> Any:
        """An autocommit connection to ``node`` (None: the next node in turn that answers), outside the
        namespace."""
        from clauseproof.targets.pymysql_conn import connect as connect_mysql

        if node is None:
            return self.connect(in_namespace=False)
        return connect_mysql(
            host=node.host,
            port=node.port,
            user="root",
            password=self.password,
            connect_timeout=max(1, int(timeout)),
            read_timeout=30,  # a frozen node never answers; a commit waits for the component at most this long
            write_timeout=30,
            autocommit=True,
        )

    def connect(self, *, in_namespace: bool = True) -> Any:
        """A connection to the next node in turn that answers within 1 s (a client's multi-host list)."""
        last: Exception | None = None
        start = next(self._turn)
        nodes = list(self.serving)
        for k in range(len(nodes)):
            node = nodes[(start + k) % len(nodes)]
            try:
                conn = self.connect_node(node, timeout=1)
            except Exception as exc:
                last = exc
                continue
            if in_namespace:
                with conn.cursor() as cur:
                    cur.execute(f"USE {self.namespace}")
            return conn
        raise ClauseproofError(f"{self.label}: no node answered ({last})")

    def status(self, node: GaleraNode, timeout: float = 1.0) -> dict[str, str]:
        """The node's ``wsrep_%`` status ({} when it does not answer)."""
        try:
            conn = self.connect_node(node, timeout)
        except Exception:
            return {}
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION max_statement_time = 1")
                cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep_%'")
                return {k: str(v) for k, v in cur.fetchall()}
        except Exception:
            return {}
        finally:
            conn.close()

    @staticmethod
    def _synced(s: dict[str, str]) -> bool:
        return s.get("wsrep_cluster_status") == "Primary" and s.get("wsrep_local_state_comment") == "Synced"

    def leader(self) -> GaleraNode | None:
        """No node leads a Galera cluster: the node a fault hits, the first synced node of the primary component."""
        return next((n for n in self.nodes if self._synced(self.status(n))), None)

    def sync_standby(self) -> GaleraNode | None:
        return None

    def ready(self) -> bool:
        return all(
            self._synced(s) and s.get("wsrep_cluster_size") == str(len(self.nodes))
            for s in (self.status(n) for n in self.nodes)
        )

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds until every node is synced in one primary component of all of them."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            self._check_running()
            if self.ready():
                return time.monotonic() - started
            time.sleep(0.25)
        seen = {n.name: self.status(n).get("wsrep_local_state_comment") for n in self.nodes}
        raise ClauseproofError(f"{self.label}: the nodes were not all synced within {timeout:g} s (seen: {seen})")

    def _check_running(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is not None:
                raise ClauseproofError(
                    f"{self.label}: mariadbd {node.name} exited (status {node.proc.returncode}); its log:\n    "
                    + _tail(node.folder / "server.log")
                )

    def wait_rejoin(
        self, node: GaleraNode, timeout: float = 90.0, since: float | None = None, size: int | None = None
    ) -> float:
        """Seconds (from ``since``, else now) until ``node`` is synced in the primary component of ``size`` nodes
        (default: all of them); an error with its log after ``timeout``."""
        started = time.monotonic() if since is None else since
        want = str(size or len(self.nodes))
        while time.monotonic() - started < timeout:
            if node.proc is not None and node.proc.poll() is not None:
                break
            s = self.status(node)
            if self._synced(s) and s.get("wsrep_cluster_size") == want:
                if node not in self.serving and self.serving:  # an added node: handed to clients from now
                    self.serving.append(node)
                return time.monotonic() - started
            time.sleep(0.25)
        raise ClauseproofError(
            f"{node.name} did not join the primary component ({want} nodes, synced) within {timeout:g} s; its log:"
            "\n    " + _tail(node.folder / "server.log")
        )

    # -- faults -----------------------------------------------------------------------------
    def faults(self) -> dict[str, Text | str]:
        return {
            "kill": "",
            "freeze": "",
            "isolate": self.no_network,
            "switchover": msg("galera_no_switchover"),
            "scale": "",
        }

    def switchover(self, node: GaleraNode) -> float:
        """No leader to switch over: :meth:`faults` says so, and the suite asks it first."""
        raise ClauseproofError(
            str(self.faults()["switchover"]), checked=f"{self.label}: a switchover away from {node.name}"
        )

    threshold_source = msg("threshold_galera", inactive=INACTIVE_S)

    def thresholds(self) -> dict[str, float]:
        return {"freeze_s": INACTIVE_S + 5.0}

    def _processes(self, node: GaleraNode) -> set[int]:
        pids = set(_working_in(str(node.folder)))
        if node.proc is not None:
            pids.add(node.proc.pid)
        return pids

    def kill_node(self, node: GaleraNode) -> float:
        """SIGKILL the node's mariadbd (and a transfer it runs); the instant the signal went out."""
        at = processes.kill(self._processes(node), node.folder)
        if node.proc is not None:
            node.proc.wait(10)
            reaper.unregister(node.proc.pid)
            node.proc = None
        return at

    def start_node(self, node: GaleraNode, timeout: float = 90.0) -> float:
        started = time.monotonic()
        self._launch(node)
        return self.wait_rejoin(node, timeout, started)

    def freeze_node(self, node: GaleraNode) -> float:
        """SIGSTOP the node's mariadbd (and a transfer it runs); the instant the signals went out."""
        return processes.freeze(self._processes(node), node.folder)

    def thaw_node(self, node: GaleraNode) -> None:
        processes.thaw(self._processes(node))

    def isolate_node(self, node: GaleraNode) -> float:
        """Cut ``node`` off from the other nodes inside its namespace (the harness still reaches it); the instant
        the rules were in place."""
        assert self.net is not None, self.no_network
        self.net.isolate(node.index)
        return time.monotonic()

    def heal_node(self, node: GaleraNode) -> None:
        if self.net is not None:
            self.net.heal(node.index)

    def add_node(self) -> GaleraNode:
        """Scale out: a new node joins by a snapshot transfer from a donor that keeps taking writes."""
        return self._new_node(max(n.index for n in self.nodes) + 1)

    def remove_node(self, node: GaleraNode, timeout: float = 60.0) -> None:
        """Scale in: the node taken out of the clients' list, then its mariadbd shut down cleanly (it leaves the
        component); its folder removed."""
        if node in self.serving:
            self.serving.remove(node)
        if node.proc is not None:
            processes.stop_one(node.proc, timeout, f"{node.name}'s mariadbd", node.folder / "server.log")
            node.proc = None
        kill_processes(set(_working_in(str(node.folder))))
        self.nodes.remove(node)
        shutil.rmtree(node.folder, ignore_errors=True)
        self._write_config()
        if self.net is not None and node.index > NODES:
            self.net.drop(node.index)

    # -- evidence ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "nodes": [{"name": n.name, "host": n.host, "port": n.port, "gcomm": n.gcomm} for n in self.nodes],
            "network": self.net.describe() if self.net else f"loopback ({self.no_network})",
            "galera": {
                "provider": str(PROVIDER),
                "state_transfer": "mariabackup",
                "evs.suspect_timeout_s": SUSPECT_S,
                "evs.inactive_timeout_s": INACTIVE_S,
                "evs.install_timeout_s": INSTALL_S,
                "detection": "the stand-in's own, shorter than Galera's defaults (5 s, 15 s, 7.5 s)",
            },
            "clients": "any node, in turn (a multi-host list); no proxy",
        }

    def server_environment(self) -> dict[str, Any]:
        env = super().server_environment()
        s = self.status(self.nodes[0]) if self.nodes else {}
        env["settings"].update({k: s.get(k, "") for k in ("wsrep_provider_version", "wsrep_cluster_size")})
        return env

    # -- stop -------------------------------------------------------------------------------
    def stop(self) -> None:
        for node in self.nodes:
            self.thaw_node(node)
            self.heal_node(node)
        processes.stop_all([n.proc for n in self.nodes if n.proc is not None])
        for node in self.nodes:
            node.proc = None
            kill_processes(set(_working_in(str(node.folder))))
        self.nodes, self.serving = [], []
        if self.net is not None:
            self.net.remove()
            self.net = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
