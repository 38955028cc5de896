"""``embedded-postgresql-ha``: 3 PostgreSQL nodes managed by Patroni over a 3-member etcd cluster (Raft), with
synchronous replication and HAProxy routing writes by Patroni's REST health checks — the layout users deploy.

Everything runs in one ``clauseproof-ha-*`` folder (reaped after a crash like every embedded server):
etcd members ``etcd1..3``, Patroni nodes ``node1..3`` (each starts its own PostgreSQL, as the ``postgres`` user
when the harness runs as root), and HAProxy, whose write port sends a connection to the node answering 200 on
Patroni's ``GET /primary``.  The target's endpoint is HAProxy's write port; :meth:`leader` asks Patroni which
node leads.  Faults: :meth:`kill_node` (recovered by :meth:`start_node`), :meth:`freeze_node` (lifted by
:meth:`thaw_node`, then :meth:`wait_rejoin`), :meth:`isolate_node` (lifted by :meth:`heal_node`) and
:meth:`switchover`.  Where the harness runs as root each node and its etcd member live in a network namespace of
their own (:mod:`clauseproof.targets.faults.netns`), so that a node can be cut off; elsewhere all is on loopback and the
isolate fault says why it cannot be applied.

No other local user gets in or disturbs a measurement: etcd speaks mutual TLS on its client and peer ports with
certificates of a CA made for this cluster (:mod:`clauseproof.targets.clusters.tls`: no certificate, no answer),
Patroni's REST API takes a change (``PATCH /config``, ``POST /switchover`` …) only with the cluster's own random
credentials, PostgreSQL only with its password over TCP; etcd, Patroni and PostgreSQL run as ``postgres`` and
HAProxy as ``haproxy`` where the harness runs as root.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from clauseproof.core import masking, reaper
from clauseproof.core.errors import ClauseproofError
from clauseproof.core.i18n import Text, msg
from clauseproof.targets.base import Endpoint, Target
from clauseproof.targets.clusters.patroni_node import (
    HTTP_TIMEOUT_S,
    LOOP_WAIT,
    NODES,
    REST_USER,
    RETRY_TIMEOUT,
    START_TIMEOUT_S,
    TTL,
    Node,
    haproxy_config,
    itself,
    patroni_config,
    rest,
    rest_change,
    said,
    serving,
    streaming_replica,
)
from clauseproof.targets.clusters.replicated import Helper
from clauseproof.targets.clusters.tls import RunCA
from clauseproof.targets.faults import netns
from clauseproof.targets.faults.netns import Network
from clauseproof.targets.host import processes
from clauseproof.targets.host.folders import free_port, make_private_folder
from clauseproof.targets.host.processes import _tail, _working_in, kill_processes
from clauseproof.targets.single.postgres import EmbeddedPostgres


class PatroniCluster(Target):
    """The HA target; see the module's docstring."""

    kind = "embedded"
    dialect = "postgresql"

    def __init__(self, label: str, namespace: str, bindir: Path | None) -> None:
        super().__init__(label, namespace)
        self.pg = EmbeddedPostgres(label + "-binaries", namespace, bindir)  # finds the binaries only
        self.folder: Path | None = None
        self.password = masking.new_secret()
        #: the REST API's credentials for changes (Patroni refuses an unsafe method without them)
        self.rest_auth = f"{REST_USER}:{masking.new_secret()}"
        self.ca: RunCA | None = None
        self.tls: Path | None = None
        self.nodes: list[Node] = []
        self.etcd: list[Helper] = []
        self.proxy: Helper | None = None
        self.scope = "cp-" + secrets.token_hex(4)
        #: Patroni and PostgreSQL run as ``postgres`` where the harness runs as root.
        self.server_user = "postgres" if os.geteuid() == 0 else None
        #: Patroni from PyPI (the harness's own, ≥ 3.0.3), copied into the cluster's folder and run by the system
        #: Python, which the postgres user can run (the harness's interpreter may sit in a private home), on the
        #: libraries of Debian's patroni package.  Debian 12's own Patroni 3.0.2 overwrites a leader key it no
        #: longer holds after a pause longer than the TTL (patroni/patroni#2689): the freeze trials lose
        #: acknowledged writes on it.
        self.python = "/usr/bin/python3"
        #: synchronous_mode (Patroni); False only while a self-test makes the cluster asynchronous
        self.synchronous = True
        self.patroni: list[str] = []
        self.patroni_version = ""
        self._patroni_env: dict[str, str] = {}
        #: the private network (a namespace per node) where namespaces can be made; loopback otherwise
        self.net: Network | None = None
        self.no_network = ""

    # -- start ------------------------------------------------------------------------------
    def start(self) -> None:
        for tool in ("etcd", "haproxy"):
            if shutil.which(tool) is None:
                raise ClauseproofError(
                    f"{self.label} needs {tool}, which is not installed",
                    fix="apt-get install etcd-server patroni haproxy (./run installs them)",
                )
        self.folder = make_private_folder("ha", self.server_user)
        try:
            self.no_network = netns.available()
            if not self.no_network:
                self.net = Network()
                self.net.create(NODES)
            self._install_patroni()
            self._make_certificates()
            self._start_etcd()
            self._start_patroni()
            self.wait_ready(START_TIMEOUT_S)
            port = self._start_haproxy()
            self.endpoint = Endpoint("127.0.0.1", port, "postgres", "postgres", password=self.password)
            self._create_namespace()
        except BaseException:
            self.stop()
            raise

    def _install_patroni(self) -> None:
        """Copy the harness's Patroni package where the server user can read it; the command that runs it."""
        assert self.folder is not None
        spec = importlib.util.find_spec("patroni")
        if spec is None or spec.origin is None or not Path(self.python).exists():
            raise ClauseproofError(
                f"{self.label} needs Patroni (PyPI) in the harness's environment and {self.python}",
                fix="./run installs both (pip install -e '.[all]'; apt-get install patroni for its libraries)",
            )
        lib = self.folder / "python"
        shutil.copytree(Path(spec.origin).parent, lib / "patroni", ignore=shutil.ignore_patterns("__pycache__"))
        if self.server_user:
            for path in [lib, *lib.rglob("*")]:
                shutil.chown(path, user=self.server_user)
        self.patroni = [self.python, "-m", "patroni"]
        self.patroni_version = importlib.metadata.version("patroni")
        self._patroni_env = {"PYTHONPATH": str(lib), "PYTHONDONTWRITEBYTECODE": "1"}

    def host(self, i: int) -> str:
        """Node ``i``'s address: its namespace's, else loopback."""
        return self.net.host(i) if self.net else "127.0.0.1"

    def _prefix(self, i: int, user: str | None = None) -> list[str]:
        return self.net.exec_prefix(i, user) if self.net else []

    def _make_certificates(self) -> None:
        """The cluster's CA, a certificate for each etcd member (its address) and one for Patroni's clients."""
        assert self.folder is not None
        self.tls = self.folder / "tls"
        self.tls.mkdir(mode=0o700)
        if self.server_user:
            shutil.chown(self.tls, user=self.server_user)
        self.ca = RunCA(self.scope)
        self.ca.write_ca(self.tls, self.server_user)
        for i in range(1, NODES + 1):
            self.ca.issue(self.tls, f"etcd{i}", [self.host(i), "127.0.0.1"], self.server_user)
        self.ca.issue(self.tls, "patroni", ["127.0.0.1"], self.server_user)

    def _as_server_user(self, i: int) -> list[str]:
        """The prefix that runs a cluster process as the server's user (in node ``i``'s namespace, where there is
        one)."""
        if self.net is not None:
            return self._prefix(i, self.server_user)
        if self.server_user:
            u = self.server_user
            return ["setpriv", f"--reuid={u}", f"--regid={u}", "--init-groups", "--"]
        return []

    def _start_etcd(self) -> None:
        """An etcd member beside each node (in its namespace: a cut-off node loses its member with it), speaking
        mutual TLS with this cluster's certificates on both ports, as the server's user."""
        assert self.folder is not None and self.tls is not None
        ports = [(free_port(), free_port()) for _ in range(NODES)]
        cluster = ",".join(f"etcd{i}=https://{self.host(i)}:{p}" for i, (_, p) in enumerate(ports, 1))
        ca = self.tls / "ca.pem"
        for i, (client, peer) in enumerate(ports, 1):
            h = self.host(i)
            data = self.folder / f"etcd{i}"
            data.mkdir(mode=0o700)
            if self.server_user:
                shutil.chown(data, user=self.server_user)
            cert, key = self.tls / f"etcd{i}.pem", self.tls / f"etcd{i}-key.pem"
            args = [
                *self._as_server_user(i),
                "etcd",
                f"--name=etcd{i}",
                f"--data-dir={data}",
                f"--listen-client-urls=https://{h}:{client}",
                f"--advertise-client-urls=https://{h}:{client}",
                f"--listen-peer-urls=https://{h}:{peer}",
                f"--initial-advertise-peer-urls=https://{h}:{peer}",
                f"--initial-cluster={cluster}",
                f"--initial-cluster-token={self.scope}",
                "--initial-cluster-state=new",
                "--enable-v2=false",
                f"--cert-file={cert}",
                f"--key-file={key}",
                "--client-cert-auth",
                f"--trusted-ca-file={ca}",
                f"--peer-cert-file={cert}",
                f"--peer-key-file={key}",
                "--peer-client-cert-auth",
                f"--peer-trusted-ca-file={ca}",
            ]
            helper = Helper(f"etcd{i}", args, self.folder, client, signal.SIGTERM, host=h)
            helper.start()
            self.etcd.append(helper)

    def _config(self, node: Node) -> dict[str, Any]:
        assert self.folder is not None and self.tls is not None
        clients = str(self.net.subnet) if self.net else "127.0.0.1/32"
        etcd = [f"{e.host}:{e.port}" for e in self.etcd]
        return patroni_config(node, self.scope, self.password, self.rest_auth, etcd, self.tls, clients,
                              self.synchronous, self.pg.bindir())  # fmt: skip

    def _start_patroni(self) -> None:
        for i in range(1, NODES + 1):
            self._new_node(i)

    def _new_node(self, i: int) -> Node:
        """Node ``i``'s folder and configuration, and its Patroni launched (a member of the cluster from now)."""
        assert self.folder is not None
        if self.net is not None and i not in self.net.namespaces:
            self.net.add(i)
        node = Node(f"node{i}", free_port(), free_port(), self.folder / f"node{i}", host=self.host(i), index=i)
        node.folder.mkdir(mode=0o700)
        config = node.folder / "patroni.yml"
        config.write_text(json.dumps(self._config(node)))  # JSON is YAML
        config.chmod(0o600)
        if self.server_user:
            shutil.chown(node.folder, user=self.server_user)
            shutil.chown(config, user=self.server_user)
        self.nodes.append(node)
        self._launch(node)
        return node

    def _launch(self, node: Node) -> None:
        """Start ``node``'s Patroni (which starts its PostgreSQL) in a session of its own."""
        assert self.folder is not None
        user = self.server_user
        kwargs: dict[str, Any] = {}
        if user and self.net is None:
            kwargs = {"user": user, "group": pwd.getpwnam(user).pw_gid}
        prefix = self._prefix(node.index, user)  # in its namespace, the user changed by setpriv there
        with open(node.folder / "patroni.log", "ab") as out:
            node.patroni = subprocess.Popen(
                [*prefix, *self.patroni, str(node.folder / "patroni.yml")],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=node.folder,
                env=masking.child_env({"HOME": str(node.folder), **self._patroni_env}),
                **kwargs,
            )
        reaper.register(node.name, node.patroni.pid, self.folder)

    def start_node(self, node: Node, timeout: float = 60.0) -> float:
        """Start a killed node again; seconds until Patroni reports it running as a replica (it rejoins, rewound
        with pg_rewind where needed)."""
        started = time.monotonic()
        self._launch(node)
        return self.wait_rejoin(node, timeout, started)

    def wait_rejoin(self, node: Node, timeout: float = 60.0, since: float | None = None) -> float:
        """Seconds (from ``since``, else now) until ``node`` streams as a replica; an error with its log after that."""
        started = time.monotonic() if since is None else since
        while time.monotonic() - started < timeout:
            members = rest(node, "/cluster")[1].get("members", [])
            listed = any(m.get("name") == node.name and m.get("role") in ("replica", "sync_standby") for m in members)
            if listed and streaming_replica(itself(node)):  # its own word, not a dead node's member key
                return time.monotonic() - started
            time.sleep(0.25)
        raise ClauseproofError(
            f"{node.name} did not rejoin as a replica within {timeout:g} s; its log:\n    "
            + _tail(node.folder / "patroni.log")
        )

    def ready(self) -> bool:
        """One leader, a named synchronous standby and every node running.  Before a synchronous standby is named a
        commit is acknowledged by the leader alone, and a kill loses it (seen: a table made right after start was
        gone after the failover); Patroni also refuses a switchover without one."""
        for n in self.nodes:
            members = rest(n, "/cluster")[1].get("members", [])
            if members:
                roles = [m.get("role") for m in members if m.get("state") in ("running", "streaming")]
                synchronous = "sync_standby" in roles or not self.synchronous
                whole = roles.count("leader") == 1 and synchronous and len(roles) == len(self.nodes)
                return whole and all(serving(itself(m)) for m in self.nodes)  # each node's word, not its key
        return False

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds until :meth:`ready` (at start; between trials: the previous fault's node back, a standby synchronous
        again) and HAProxy's write port reaches the leader (its checks follow Patroni's within a few hundred ms); an
        error with a Patroni that exited and its log, or each node's own word after ``timeout``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            for node in self.nodes:
                if node.patroni is not None and node.patroni.poll() is not None:
                    raise ClauseproofError(
                        f"Patroni {node.name} exited (status {node.patroni.returncode}); its log:\n    "
                        + _tail(node.folder / "patroni.log")
                    )
            if self.ready() and (self.proxy is None or self.writable(None, timeout=1.0)):
                return time.monotonic() - started
            time.sleep(0.25)
        seen = {n.name: said(itself(n)) for n in self.nodes}  # what ready() judged by
        raise ClauseproofError(
            f"{self.label}: no leader with a synchronous standby and {len(self.nodes) - 1} streaming replicas within "
            f"{timeout:g} s (each node's own word: {seen}); node1's log:\n    "
            + _tail(self.nodes[0].folder / "patroni.log")
        )

    def _start_haproxy(self) -> int:
        """HAProxy's write port, once it reaches the leader."""
        assert self.folder is not None
        port = free_port()
        (self.folder / "haproxy.cfg").write_text(haproxy_config(port, self.nodes))
        self.proxy = Helper(
            "haproxy", ["haproxy", "-db", "-f", str(self.folder / "haproxy.cfg")], self.folder, port, signal.SIGTERM
        )
        self.proxy.start()
        # HAProxy starts every server as up until its checks say otherwise: ready once 5 connections in a row
        # reach a node that accepts writes
        deadline, in_a_row = time.monotonic() + 10, 0
        while time.monotonic() < deadline:
            in_a_row = in_a_row + 1 if self.writable(None, timeout=1.0) else 0
            if in_a_row == 5:
                return port
            time.sleep(0.1)
        raise ClauseproofError(f"{self.label}: HAProxy on 127.0.0.1:{port} did not reach the leader within 10 s")

    def _create_namespace(self) -> None:
        conn = self.connect_node(None)
        with conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {self.namespace}")
        conn.close()

    # -- use --------------------------------------------------------------------------------
    def connect_node(self, node: Node | None, timeout: float = 2.0) -> Any:
        """An autocommit connection to ``node`` (None: through HAProxy's write port)."""
        import psycopg

        port = self.proxy.port if node is None else node.pg_port  # type: ignore[union-attr]
        return psycopg.connect(
            host="127.0.0.1" if node is None else node.host,
            port=port,
            user="postgres",
            password=self.password,
            dbname="postgres",
            autocommit=True,
            connect_timeout=max(1, int(timeout)),
        )

    def connect(self, *, in_namespace: bool = True) -> Any:
        conn = self.connect_node(None)
        if in_namespace:
            with conn.cursor() as cur:
                cur.execute(f"SET search_path TO {self.namespace}")
        return conn

    def leader(self) -> Node | None:
        """The node Patroni names as leader (asked of every node that answers), or None."""
        return self._member("leader")

    def _member(self, role: str) -> Node | None:
        """The node Patroni's ``GET /cluster`` gives ``role`` (asked of every node that answers), or None."""
        for n in self.nodes:
            for m in rest(n, "/cluster")[1].get("members", []):
                if m.get("role") == role:
                    return next((x for x in self.nodes if x.name == m.get("name")), None)
        return None

    def writable(self, node: Node | None, timeout: float = 0.5) -> bool | None:
        """Whether ``node`` itself (None: the node HAProxy's write port reaches) accepts writes now
        (``pg_is_in_recovery()`` false), None if it does not answer."""
        try:
            conn = self.connect_node(node, timeout)
        except Exception:
            return None
        try:
            with conn.cursor() as cur:
                cur.execute("SET statement_timeout = 500")
                cur.execute("SELECT NOT pg_is_in_recovery()")
                row = cur.fetchone()
                return bool(row and row[0])
        except Exception:
            return None
        finally:
            conn.close()

    # -- faults -----------------------------------------------------------------------------
    def faults(self) -> dict[str, Text | str]:
        """Each fault of the failover suite → "" (all can be applied here; the cluster is the harness's own)."""
        return {"kill": "", "freeze": "", "isolate": self.no_network, "switchover": "", "scale": ""}

    #: where :meth:`thresholds` come from, in the evidence's words
    threshold_source = msg("threshold_patroni", ttl=TTL)

    def thresholds(self) -> dict[str, float]:
        """A freeze longer than the failure detection (the TTL), by 5 s; the acceptance plan's RTO otherwise."""
        return {"freeze_s": TTL + 5.0}

    def kill_consensus(self, count: int) -> float:
        """SIGKILL ``count`` etcd members (more than half: the Raft quorum of the leader lock is gone); the instant
        the signals went out.  :meth:`start_consensus` starts them again on their data."""
        at = time.monotonic()
        for e in self.etcd[:count]:
            if e.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(e.proc.pid, signal.SIGKILL)
                e.proc.wait()
                reaper.unregister(e.proc.pid)
                e.proc = None
        return at

    def start_consensus(self) -> None:
        for e in self.etcd:
            if e.proc is None:
                e.start()

    @staticmethod
    def _processes(node: Node) -> set[int]:
        """Every process of the node: its Patroni and whatever works in its folder (postmaster, backends)."""
        pids = set(_working_in(str(node.folder)))
        if node.patroni is not None:
            pids.add(node.patroni.pid)
        return pids

    def kill_node(self, node: Node) -> float:
        """SIGKILL every process of the node — Patroni, the postmaster and every backend (a backend outlives a
        killed postmaster and goes on committing on its open connection) — as the machine dying would; the
        ``time.monotonic()`` instant the signals went out (finding the processes takes tens of milliseconds, and
        writes acknowledged meanwhile are the old leader's, not a new one's)."""
        killed_at = processes.kill(self._processes(node), node.folder)
        if node.patroni is not None:
            node.patroni.wait(10)
            reaper.unregister(node.patroni.pid)
            node.patroni = None
        return killed_at

    def freeze_node(self, node: Node) -> float:
        """SIGSTOP every process of the node — Patroni, the postmaster, every backend — as a machine that stalls
        (a long GC or I/O pause, a VM paused) would; the instant the signals went out.  The node keeps its sockets,
        so clients and peers wait instead of being refused; :meth:`thaw_node` lifts it."""
        return processes.freeze(self._processes(node), node.folder)

    def thaw_node(self, node: Node) -> None:
        """SIGCONT every process of a frozen node: it wakes believing it still leads, and must find out it does not
        before it acknowledges a write."""
        processes.thaw(self._processes(node))

    def isolate_node(self, node: Node) -> float:
        """Cut ``node`` — its PostgreSQL, its Patroni and the etcd member beside it — off from the other nodes
        (every packet to and from them dropped inside its namespace), as a network partition would; the instant the
        rules were in place.  The harness's probers still reach it: a cut-off leader that goes on acknowledging
        writes is seen.  :meth:`heal_node` lifts it."""
        assert self.net is not None, self.no_network
        self.net.isolate(node.index)
        return time.monotonic()

    def heal_node(self, node: Node) -> None:
        if self.net is not None:
            self.net.heal(node.index)

    def add_node(self) -> Node:
        """Scale out: a new node joins the running cluster (Patroni makes its replica with pg_basebackup from the
        leader); returned once launched (:meth:`wait_rejoin` waits until it streams).  HAProxy is not told: the
        new node takes reads and could not lead before a reload (the scale trial changes no leader)."""
        return self._new_node(max(int(n.name.removeprefix("node")) for n in self.nodes) + 1)

    def remove_node(self, node: Node, timeout: float = 30.0) -> None:
        """Scale in: the node's Patroni stopped cleanly (it stops its PostgreSQL and leaves the cluster); the node
        is no longer a member and its folder is removed."""
        if node.patroni is not None:
            processes.stop_one(node.patroni, timeout, f"{node.name}'s Patroni", node.folder / "patroni.log")
            node.patroni = None
        kill_processes(set(_working_in(str(node.folder))))
        self.nodes.remove(node)
        shutil.rmtree(node.folder, ignore_errors=True)
        if self.net is not None and node.index > NODES:  # its etcd member stays: only an added node's namespace
            self.net.drop(node.index)

    def sync_standby(self) -> Node | None:
        """The node Patroni names synchronous standby, or None."""
        return self._member("sync_standby")

    def pause(self, on: bool, timeout: float = 10.0) -> bool:
        """Patroni's maintenance mode on or off (no automatic failover while on); True once a node reports it."""
        if not self.configure({"pause": on}):
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(bool(rest(m, "/cluster")[1].get("pause")) == on for m in self.nodes):
                return True
            time.sleep(0.2)
        return False

    def configure(self, change: dict[str, Any], timeout: float = 10.0) -> bool:
        """Change the cluster's dynamic configuration (``PATCH /config``); True once every running node's Patroni
        has it (its ``GET /config``) and a loop has passed, False if no node took the change."""
        body = json.dumps(change).encode()
        for n in self.nodes:
            try:
                rest_change(n, "/config", body, "PATCH", self.rest_auth, HTTP_TIMEOUT_S * 5).close()
            except OSError:
                continue
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                seen = [rest(m, "/config")[1] for m in self.nodes if m.patroni is not None]
                if seen and all(
                    all(c.get(k, False if v is False else None) == v for k, v in change.items()) for c in seen
                ):
                    time.sleep(LOOP_WAIT * 2)  # applied by each node's next loop
                    self.synchronous = bool(change.get("synchronous_mode", self.synchronous))
                    return True
                time.sleep(0.2)
            return False
        return False

    def switchover(self, node: Node) -> float:
        """A planned switchover away from the leader ``node`` through Patroni's REST API (``POST /switchover``); the
        instant it was asked.  A refusal is an error naming the node and Patroni's answer."""
        body = json.dumps({"leader": node.name}).encode()
        url = f"http://{node.host}:{node.rest_port}/switchover"
        asked = time.monotonic()
        try:
            rest_change(node, "/switchover", body, "POST", self.rest_auth, 30).close()
        except urllib.error.HTTPError as e:
            answer = e.read().decode(errors="replace")
            raise ClauseproofError(
                f"Patroni refused the switchover away from {node.name} (HTTP {e.code}): {answer[:200]}",
                checked=f"POST {url}",
            ) from None
        except OSError as e:
            raise ClauseproofError(
                f"the switchover away from {node.name} got no answer: {e}",
                checked=f"POST {url}",
            ) from None
        return asked

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "nodes": [
                {"name": n.name, "host": n.host, "postgresql": n.pg_port, "rest": n.rest_port} for n in self.nodes
            ],
            "etcd": [f"{e.host}:{e.port}" for e in self.etcd],
            "network": self.net.describe() if self.net else f"loopback ({self.no_network})",
            "patroni": {
                "version": self.patroni_version,
                "ttl": TTL,
                "loop_wait": LOOP_WAIT,
                "retry_timeout": RETRY_TIMEOUT,
                "synchronous_mode": self.synchronous,
            },
            "proxy": "HAProxy, writes to the node answering 200 on Patroni's GET /primary (checked every 200 ms)",
        }

    def server_environment(self) -> dict[str, Any]:
        conn = self.connect_node(None)
        with conn.cursor() as cur:
            cur.execute("SELECT version()")
            row = cur.fetchone()
        conn.close()
        return {"version": row[0] if row else "", "settings": {"synchronous_mode": "true (Patroni)"}}

    # -- stop -------------------------------------------------------------------------------
    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        for node in self.nodes:
            self.thaw_node(node)  # a frozen process would hold its SIGTERM until it is continued
            self.heal_node(node)  # a cut-off Patroni would wait for its peers
        processes.stop_all([n.patroni for n in self.nodes if n.patroni is not None])  # each stops its PostgreSQL
        for node in self.nodes:
            node.patroni = None
            # whatever is still working in the node's folder (by its folder, never by a stale postmaster.pid whose
            # number a new process may have taken)
            kill_processes(set(_working_in(str(node.folder))))
        for e in self.etcd:
            e.stop()
        self.etcd, self.nodes = [], []
        if self.net is not None:
            self.net.remove()
            self.net = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
