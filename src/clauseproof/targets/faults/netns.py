"""A private network for an embedded cluster: one network namespace per node on a bridge, so that a node can be
cut off from its peers (the isolate fault of the failover suite) without touching anything else on the machine.

- a bridge ``cpbr<tag>`` in the root namespace holds ``10.A.B.254/24`` (the harness, HAProxy, the clients);
- node ``i`` runs in namespace ``cp-<tag>-<i>`` behind a veth pair, at ``10.A.B.i``; ``10.A.B.0/24`` is a subnet
  no interface or route of this machine uses;
- :meth:`Network.isolate` loads an nftables table inside the node's namespace that drops every packet to and
  from the other nodes (silently, as a cut cable does; the harness's own address still reaches the node, so its
  probers see what the node does while it is cut off), and :meth:`Network.heal` deletes that table;
- everything is recorded with the reaper (``reap`` removes the namespaces and the bridge of a run that was
  killed) and removed by :meth:`Network.remove`.

Namespaces need root; :func:`available` says why they cannot be used otherwise.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import secrets
import shutil
import subprocess
from pathlib import Path

from clauseproof.core import reaper
from clauseproof.core.errors import ClauseproofError

HARNESS = 254
TIMEOUT_S = 10.0


def available() -> str:
    """ "" when namespaces and nftables can be used here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install iproute2 nftables; ./run installs them)"
    return ""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise ClauseproofError(f"ip {' '.join(args)} did not finish within {TIMEOUT_S:g} s") from None
    if check and done.returncode != 0:
        raise ClauseproofError(f"ip {' '.join(args)} failed: {done.stderr.strip()}", checked="ip " + " ".join(args))
    return done


def _used_subnets() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Every IPv4 network an address or route of the root namespace covers."""
    out = []
    for line in _ip("-4", "-o", "addr", "show").stdout.splitlines() + _ip("-4", "route", "show").stdout.splitlines():
        for word in line.split():
            if word[0].isdigit() and ("/" in word or word.count(".") == 3):
                try:
                    out.append(ipaddress.ip_network(word, strict=False))
                except ValueError:
                    continue
    return out


class Network:
    """See the module's docstring.  ``Network()`` then :meth:`create`; :meth:`add` for a node added later."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.bridge = f"cpbr{self.tag}"
        used = _used_subnets()
        rng = random.Random()
        for _ in range(200):
            net = ipaddress.ip_network(f"10.{rng.randrange(200, 250)}.{rng.randrange(0, 256)}.0/24")
            if not any(net.overlaps(u) for u in used):
                self.subnet = net
                break
        else:
            raise ClauseproofError("no free 10.200-249.x.0/24 subnet for the cluster's private network")
        self.namespaces: dict[int, str] = {}
        self.isolated: set[int] = set()
        self._entry: Path | None = None

    def host(self, i: int) -> str:
        return str(self.subnet.network_address + i)

    @property
    def harness(self) -> str:
        """The address the harness (and HAProxy) reach the nodes from."""
        return self.host(HARNESS)

    def namespace(self, i: int) -> str:
        return f"cp-{self.tag}-{i}"

    def create(self, nodes: int) -> None:
        self._record()
        _ip("link", "add", self.bridge, "type", "bridge")
        self._record()
        _ip("addr", "add", f"{self.harness}/{self.subnet.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i in range(1, nodes + 1):
            self.add(i)

    def add(self, i: int) -> None:
        """Namespace ``i`` with its veth on the bridge, at :meth:`host` ``(i)``."""
        ns, veth = self.namespace(i), f"cpv{self.tag}{i}"
        _ip("netns", "add", ns)
        self.namespaces[i] = ns
        self._record()
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("link", "set", veth, "master", self.bridge, "up")
        _ip("-n", ns, "addr", "add", f"{self.host(i)}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")

    def drop(self, i: int) -> None:
        """Namespace ``i`` removed (its veth goes with it); the processes in it must be stopped first."""
        ns = self.namespaces.pop(i, None)
        if ns is not None:
            _ip("netns", "del", ns, check=False)
            self._record()

    def exec_prefix(self, i: int, user: str | None = None) -> list[str]:
        """The command prefix that runs a program in namespace ``i`` (as ``user``, where given); both steps exec,
        so the process started keeps the pid of the prefix."""
        prefix = ["ip", "netns", "exec", self.namespaces[i]]
        if user:
            prefix += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
        return prefix

    def isolate(self, i: int) -> None:
        """Drop every packet between node ``i`` and the other nodes (both ways), inside its namespace."""
        peers = ", ".join(self.host(j) for j in self.namespaces if j != i)
        rules = (
            "table inet cp_isolate {\n"
            f"  chain input {{ type filter hook input priority 0; ip saddr {{ {peers} }} drop; }}\n"
            f"  chain output {{ type filter hook output priority 0; ip daddr {{ {peers} }} drop; }}\n"
            "}\n"
        )
        self._nft(i, ["-f", "-"], rules)
        self.isolated.add(i)

    def heal(self, i: int) -> None:
        if i in self.isolated:
            self._nft(i, ["delete", "table", "inet", "cp_isolate"])
            self.isolated.discard(i)

    def _nft(self, i: int, args: list[str], stdin: str = "") -> None:
        command = ["ip", "netns", "exec", self.namespaces[i], "nft", *args]
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        if done.returncode != 0:
            raise ClauseproofError(
                f"nft in {self.namespaces[i]} failed: {done.stderr.strip()}", checked=" ".join(command)
            )

    def remove(self) -> None:
        """Every namespace and the bridge removed; the reaper's record with them."""
        for i in list(self.namespaces):
            self.drop(i)
        _ip("link", "del", self.bridge, check=False)
        if self._entry is not None:
            self._entry.unlink(missing_ok=True)
            self._entry = None

    def _record(self) -> None:
        """What exists now, written for ``reap`` (see :func:`clauseproof.core.reaper.reap_networks`)."""
        self._entry = reaper.register_network(self.tag, self.bridge, sorted(self.namespaces.values()))

    def describe(self) -> dict[str, object]:
        return {
            "subnet": str(self.subnet),
            "bridge": self.bridge,
            "namespaces": dict(sorted(self.namespaces.items())),
            "harness": self.harness,
        }

    def __repr__(self) -> str:
        return json.dumps(self.describe())
