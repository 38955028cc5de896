"""SIGKILL at any moment, in every suite, then one ``clauseproof reap``: no process, listening port, shared-memory
segment, temporary folder, network namespace or bridge of the harness remains.  Slow (about 7 minutes):
``./run slow -k kill_matrix``."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SUITES = (
    "bulk_load",
    "backup",
    "encryption",
    "replication",
    "online_ddl",
    "compute",
    "failover",
    "failover-galera",
    "sync",
    "sync-mariadb",
    "containers",
    "gateway",
    "gateway-openai",
)
#: a suite's variants: the folder and the options
VARIANTS = {
    "failover-galera": ("failover", ["--cp-target=embedded-mariadb"]),
    "sync": ("sync", ["--cp-target=embedded-postgresql"]),  # the PostgreSQL nodes and their relays
    "sync-mariadb": ("sync", ["--cp-target=embedded-mariadb", "-k", "not across"]),  # the binlog capture process
    "containers": ("bulk_load", ["--cp-target=containers"]),  # labelled containers, removed by reap
    "gateway-openai": ("gateway", ["-k", "openai"]),  # LiteLLM's proxy and the fake vendors
}
#: Seconds after the run's start at which it is killed: while servers start, while data is built, while cases run.
MOMENTS = (2.0, 6.0, 14.0)
#: How long what the kill left may take to go once ``reap`` has returned (a client tool whose server is gone).
SETTLE_S = 15.0

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Proc:
    pid: int
    start: str
    cmdline: str


def _harness_processes() -> set[Proc]:
    """Processes of the harness: a command line or working folder in a ``clauseproof-`` folder, a load generator,
    or a descendant of one (a server's workers)."""
    info: dict[int, tuple[int, str, str]] = {}
    for d in glob.glob("/proc/[0-9]*"):
        try:
            pid = int(d[6:])
            stat = Path(d, "stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            cmd = Path(d, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            try:
                cwd = os.readlink(f"{d}/cwd")
            except OSError:
                cwd = ""
            info[pid] = (int(fields[1]), fields[19], f"{cmd} (in {cwd})")
        except (OSError, ValueError, IndexError):
            continue
    ours = ("/clauseproof-", "locust_oltp", "binlog_sync")
    marked = {p for p, (_, _, text) in info.items() if any(o in text for o in ours)}
    out = set()
    me = os.getpid()
    for pid, (_, start, text) in info.items():
        p, hops = pid, 0
        while p in info and p > 1 and hops < 20:
            if p == me:  # this self-test's own children (none are the harness under test)
                break
            if p in marked:
                out.add(Proc(pid, start, text[:160]))
                break
            p, hops = info[p][0], hops + 1
    return out


def _listening() -> set[str]:
    out = set()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(f).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A":
                out.add(parts[1])
    return out


def _shm() -> set[str]:
    """Segments as "shmid (created by pid, nattch)"."""
    lines = Path("/proc/sysvipc/shm").read_text().splitlines()
    head = lines[0].split()
    rows = [dict(zip(head, line.split(), strict=False)) for line in lines[1:]]
    return {f"{r['shmid']} (cpid {r['cpid']}, nattch {r['nattch']}, size {r['size']})" for r in rows}


def _folders() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "clauseproof-*")))


def _networks() -> set[str]:
    """The harness's network namespaces (``cp-*``) and bridges and veths (``cpbr*``, ``cpv*``)."""
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout.split()
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in links.splitlines() if ":" in line]
    return {n for n in ns if n.startswith("cp-")} | {n for n in names if n.startswith(("cpbr", "cpv"))}


def _containers() -> set[str]:
    """The harness's containers (by their run label), where an engine answers."""
    from clauseproof.core.errors import ClauseproofError
    from clauseproof.targets.containers import engine

    try:
        cl = engine.client(timeout=2)
    except ClauseproofError:
        return set()
    try:
        return {c.name for c in cl.containers.list(all=True, filters={"label": engine.LABEL_RUN}, ignore_removed=True)}
    finally:
        cl.close()


def _snapshot() -> dict[str, set]:
    return {
        "processes": _harness_processes(),
        "ports": _listening(),
        "shm": _shm(),
        "folders": _folders(),
        "networks": _networks(),
        "containers": _containers(),
    }


def _left(before: dict[str, set]) -> dict[str, set]:
    now = _snapshot()
    return {k: v for k, v in ((k, now[k] - before[k]) for k in now) if v}


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("suite", SUITES)
def test_kill_matrix(project: pytest.Pytester, suite: str, moment: float) -> None:
    before = _snapshot()
    log = project.path / "run.log"
    with open(log, "wb") as out:
        folder, options = VARIANTS.get(suite, (suite, []))
        run = subprocess.Popen(
            [sys.executable, "-m", "pytest", f"suites/{folder}", "--cp-scale=0.01", "-p", "no:randomly", *options],
            cwd=project.path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            run.wait(moment)
            finished = True
        except subprocess.TimeoutExpired:
            finished = False
            run.send_signal(signal.SIGKILL)  # the run itself; what it started lives on in its own sessions
            run.wait()
    reap = subprocess.run(
        [sys.executable, "-m", "clauseproof.cli", "reap"], capture_output=True, text=True, timeout=120, check=False
    )
    assert reap.returncode == 0, reap.stderr
    t0 = time.monotonic()
    left = _left(before)
    first = dict(left)
    while left and time.monotonic() - t0 < SETTLE_S:
        time.sleep(0.25)
        left = _left(before)
    settle = time.monotonic() - t0
    print(
        f"{suite} killed at {moment} s (finished first: {finished}); reaped: {reap.stdout.strip()!r}; "
        f"nothing left {settle:.1f} s after reap"
    )
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    assert not left, f"left after SIGKILL at {moment} s and reap:\n{left}\n(just after reap: {first})\nrun log:\n{tail}"
