"""A Patroni node of :mod:`clauseproof.targets.clusters.patroni`: its addresses, its REST API, its configuration."""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clauseproof.targets.host.processes import haproxy_drop

NODES = 3
#: Patroni's leader key lives ``TTL`` seconds without renewal (20 s, the least Patroni 4 accepts: it raises a
#: smaller one to 20); the loop runs every ``LOOP_WAIT`` seconds.  A killed leader is replaced after at most about
#: TTL + LOOP_WAIT.
TTL, LOOP_WAIT, RETRY_TIMEOUT = 20, 1, 4
START_TIMEOUT_S = 90
HTTP_TIMEOUT_S = 1.0


@dataclass
class Node:
    name: str
    pg_port: int
    rest_port: int
    folder: Path
    patroni: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"
    index: int = 0


#: no proxy from the environment between the harness and the nodes
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
#: the REST API's user for changes (its password is the cluster's, made at start)
REST_USER = "clauseproof"


def rest_change(node: Node, path: str, body: bytes, method: str, auth: str, timeout: float) -> Any:
    """A change through ``node``'s Patroni REST API, with the cluster's credentials (``auth``: user:password)."""
    request = urllib.request.Request(
        f"http://{node.host}:{node.rest_port}{path}",
        data=body,
        method=method,
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(auth.encode()).decode(),
        },
    )
    return HTTP.open(request, timeout=timeout)


def rest(node: Node, path: str, timeout: float = HTTP_TIMEOUT_S) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of ``node``'s Patroni REST API (0 and {} when it does not answer)."""
    try:
        with HTTP.open(f"http://{node.host}:{node.rest_port}{path}", timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        with contextlib.suppress(ValueError):
            return e.code, json.loads(e.read() or b"{}")
        return e.code, {}
    except (OSError, ValueError):
        return 0, {}


def itself(node: Node) -> dict[str, Any]:
    """What ``node``'s own Patroni says of it (``GET /patroni``: ``state``, ``role``), or {} when it does not
    answer as that node.  The cluster's view (``GET /cluster``) is built from member keys in etcd, and a killed
    node's key keeps its last state until its TTL (20 s) runs out: a node killed a moment ago still shows there as
    streaming, and a frozen leader just woken as a running replica while it is still a primary."""
    body = rest(node, "/patroni")[1]
    return body if body.get("patroni", {}).get("name") == node.name else {}


def streaming_replica(own: dict[str, Any]) -> bool:
    """Whether a node's own word (:func:`itself`) is that of a replica streaming from its leader.  "running" alone
    is not enough: a killed leader started again runs as a replica for a moment, cannot stream (its timeline forked
    from the new leader's), and is stopped for pg_rewind and started again (seen: 4 s later)."""
    return (own.get("state"), own.get("role"), own.get("replication_state")) == ("running", "replica", "streaming")


def said(own: dict[str, Any]) -> str:
    """A node's own word in brief, for an error: its role, state and replication state, or that it gave none."""
    return " ".join(str(own[k]) for k in ("role", "state", "replication_state") if k in own) or "no answer as itself"


def serving(own: dict[str, Any]) -> bool:
    """Whether a node's own word is that of a running primary or a streaming replica."""
    return streaming_replica(own) or (own.get("state"), own.get("role")) == ("running", "primary")


def patroni_config(
    node: Node,
    scope: str,
    password: str,
    rest_auth: str,
    etcd: list[str],
    tls: Path,
    clients: str,
    synchronous: bool,
    bindir: Path,
) -> dict[str, Any]:
    """Patroni's configuration of ``node``: its REST API (changes need ``rest_auth``), etcd over mutual TLS, the
    cluster's timing, and PostgreSQL's authentication (TCP only from ``clients``, with the cluster's password)."""
    auth = {"username": "postgres", "password": password}
    where = f"{node.host}:{node.rest_port}"
    rest_user, rest_password = rest_auth.split(":", 1)
    return {
        "scope": scope,
        "name": node.name,
        "restapi": {
            "listen": where,
            "connect_address": where,
            "authentication": {"username": rest_user, "password": rest_password},
        },
        "ctl": {"insecure": False},
        "etcd3": {
            "hosts": etcd,
            "protocol": "https",
            "cacert": str(tls / "ca.pem"),
            "cert": str(tls / "patroni.pem"),
            "key": str(tls / "patroni-key.pem"),
        },
        "bootstrap": {
            "dcs": {
                "ttl": TTL,
                "loop_wait": LOOP_WAIT,
                "retry_timeout": RETRY_TIMEOUT,
                "synchronous_mode": synchronous,
                "postgresql": {
                    "use_pg_rewind": True,
                    "parameters": {
                        "shared_buffers": "64MB",
                        "max_connections": 100,
                        "wal_level": "replica",
                        "hot_standby": "on",
                        "wal_log_hints": "on",
                        "max_wal_senders": 10,
                        "max_replication_slots": 10,
                    },
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"auth-local": "trust"}],
        },
        "postgresql": {
            "listen": f"{node.host}:{node.pg_port}",
            "connect_address": f"{node.host}:{node.pg_port}",
            "data_dir": str(node.folder / "data"),
            "bin_dir": str(bindir),
            "pgpass": str(node.folder / "pgpass"),
            "authentication": {"superuser": auth, "replication": auth, "rewind": auth},
            "parameters": {"unix_socket_directories": str(node.folder)},
            "pg_hba": [
                "local all all trust",
                f"host all all {clients} scram-sha-256",
                f"host replication all {clients} scram-sha-256",
            ],
        },
    }


def haproxy_config(port: int, nodes: list[Node]) -> str:
    """HAProxy in front of the nodes: the write port reaches the node whose Patroni answers ``GET /primary``."""
    servers = "".join(f"    server {n.name} {n.host}:{n.pg_port} check port {n.rest_port}\n" for n in nodes)
    return (
        "global\n    maxconn 400\n"
        + haproxy_drop()
        + "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 120s\n    timeout server 120s\n"
        "listen write\n"
        f"    bind 127.0.0.1:{port}\n"
        "    option httpchk GET /primary\n"
        "    http-check expect status 200\n"
        "    default-server inter 200ms fall 2 rise 1 on-marked-down shutdown-sessions\n"
        f"{servers}"
    )
