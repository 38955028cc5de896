"""The private network of the embedded clusters: a cut drops what passes between nodes and nothing else (the
harness still reaches a cut-off node), a heal restores it, and what a killed run made is removed by ``reap``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from clauseproof.core import reaper
from clauseproof.targets.faults import netns
from clauseproof.targets.faults.netns import Network

pytestmark = pytest.mark.skipif(bool(netns.available()), reason=netns.available() or "")


def _names() -> tuple[str, str]:
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return ns, links


@pytest.fixture()
def net() -> Iterator[Network]:
    n = Network()
    n.create(3)
    yield n
    n.remove()
    ns, links = _names()
    assert n.tag not in ns and n.bridge not in links


def _listen(net: Network, i: int) -> subprocess.Popen[bytes]:
    """A TCP echo-less listener on node ``i`` port 7000 (answers 'hi' to each connection)."""
    code = (
        "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f"s.bind(('{net.host(i)}', 7000)); s.listen(); print('up', flush=True)\n"
        "while True:\n    c, _ = s.accept(); c.sendall(b'hi'); c.close()"
    )
    p = subprocess.Popen([*net.exec_prefix(i), sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"up\n"
    return p


def _reaches(net: Network, src: int | None, dst: int) -> bool:
    """Whether node ``src`` (None: the harness) gets the listener's answer on node ``dst`` within 1 s."""
    if src is None:
        try:
            with socket.create_connection((net.host(dst), 7000), timeout=1) as s:
                return s.recv(2) == b"hi"
        except OSError:
            return False
    code = f"import socket; print(socket.create_connection(('{net.host(dst)}', 7000), timeout=1).recv(2))"
    done = subprocess.run([*net.exec_prefix(src), sys.executable, "-c", code], capture_output=True, timeout=10)
    return done.stdout.strip() == b"b'hi'"


def test_a_cut_node_loses_its_peers_but_not_the_harness_and_a_heal_restores_them(net: Network) -> None:
    listeners = [_listen(net, i) for i in (1, 2)]
    try:
        assert _reaches(net, 2, 1) and _reaches(net, 1, 2) and _reaches(net, None, 1)
        net.isolate(1)
        assert not _reaches(net, 2, 1) and not _reaches(net, 1, 2)  # both ways
        assert _reaches(net, None, 1) and _reaches(net, 3, 2)  # the harness's path and the others' stay
        net.heal(1)
        assert _reaches(net, 2, 1) and _reaches(net, 1, 2)
    finally:
        for p in listeners:
            p.kill()
            p.wait()


OWNER = textwrap.dedent(
    """
    import time
    from clauseproof.targets.faults.netns import Network
    n = Network()
    n.create(2)
    n.isolate(1)
    print(n.tag, n.bridge, flush=True)
    time.sleep(300)
    """
)


def test_a_killed_runs_namespaces_and_bridge_are_reaped() -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE)
    assert owner.stdout is not None
    tag, bridge = owner.stdout.readline().decode().split()
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    ns, links = _names()
    assert f"cp-{tag}-1" in ns and bridge in links
    reaped = reaper.reap_registered()
    assert f"network {bridge} (2 namespaces)" in reaped
    ns, links = _names()
    assert tag not in ns and bridge not in links
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and reaper.reap_registered():
        time.sleep(0.1)
    assert not list(reaper.registry().glob(f"net-{owner.pid}-*.json"))
