"""What a run starts in the background, recorded outside the folders it works in, and reaped when the run died.

Every helper process the harness starts in a session of its own (pgpool-II with its ~70 children, HAProxy,
the Locust load generators, mariadbd) is written down in a registry folder of this user's (outside the
temporary folders a clean-up deletes): its process group, start time, and the run that owns it.  After a
SIGKILL, ``reap`` finds each entry whose owner is gone, kills the whole process group, removes the System V
shared-memory segments its processes created (pgpool-II leaves ~129 MiB), and the entry's folder; a private
network (:mod:`clauseproof.targets.netns`) is recorded the same way and its namespaces and bridge deleted.

Children that must not outlive the run at all (the load generators, which would go on writing into a
vendor's database) also get a parent-death signal (``prctl(PR_SET_PDEATHSIG)``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1


def registry() -> Path:
    """This user's registry folder (0700), outside every folder the harness deletes."""
    folder = Path(tempfile.gettempdir()) / f".clauseproof-registry-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (tells a reused pid from the one recorded)."""
    fields = _stat(pid)
    return None if fields is None else int(fields[19])


def _pgrp(pid: int) -> int | None:
    fields = _stat(pid)
    return None if fields is None or fields[0] == "Z" else int(fields[2])


def register(kind: str, pid: int, folder: Path | None = None) -> Path:
    """Record a process (the leader of its own process group) as this run's."""
    entry = registry() / f"{os.getpid()}-{pid}.json"
    entry.write_text(
        json.dumps(
            {
                "kind": kind,
                "pid": pid,
                "start": _start_time(pid),
                "owner": os.getpid(),
                "owner_start": _start_time(os.getpid()),
                "folder": str(folder) if folder else None,
            }
        )
    )
    return entry


def register_network(tag: str, bridge: str, namespaces: list[str]) -> Path:
    """Record (or re-record) a private network this run made: its bridge and namespaces (``reap`` removes them)."""
    entry = registry() / f"net-{os.getpid()}-{tag}.json"
    entry.write_text(
        json.dumps(
            {
                "kind": "network",
                "bridge": bridge,
                "namespaces": namespaces,
                "owner": os.getpid(),
                "owner_start": _start_time(os.getpid()),
            }
        )
    )
    return entry


def _reap_network(entry: dict[str, Any]) -> str:
    """Delete a dead run's namespaces and bridge (its processes were reaped first, by their own entries)."""
    for ns in entry.get("namespaces", []):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False, timeout=10)
    subprocess.run(["ip", "link", "del", entry["bridge"]], capture_output=True, check=False, timeout=10)
    return f"network {entry['bridge']} ({len(entry.get('namespaces', []))} namespaces)"


def unregister(pid: int) -> None:
    (registry() / f"{os.getpid()}-{pid}.json").unlink(missing_ok=True)


#: Set by the harness in a child's environment: the child calls :func:`die_with_parent` at start.
PARENT_ENV = "CLAUSEPROOF_PARENT_PID"


def die_with_parent(parent: int) -> None:
    """Called first thing in a child that must not outlive the run (the load generator): SIGTERM when its
    parent dies, whatever kills the parent (a SIGKILL included)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def pdeathsig() -> None:
    """A ``preexec_fn`` for a child that is not the harness's own Python (LiteLLM's proxy, say): SIGTERM when the
    harness dies (the setting survives exec)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def group_members(pgid: int) -> list[int]:
    """Live processes of the process group ``pgid``."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _pgrp(int(p)) == pgid]


def shm_segments(creators: set[int]) -> list[int]:
    """System V shared-memory segments created by ``creators`` (from /proc/sysvipc/shm)."""
    out = []
    with contextlib.suppress(OSError):
        lines = Path("/proc/sysvipc/shm").read_text().splitlines()
        head = lines[0].split()
        for line in lines[1:]:
            row = dict(zip(head, line.split(), strict=False))
            if int(row["cpid"]) in creators:
                out.append(int(row["shmid"]))
    return out


def remove_shm(creators: set[int]) -> None:
    """Remove the segments ``creators`` made (a SIGKILLed PostgreSQL or pgpool-II leaves its own behind)."""
    for shmid in shm_segments(creators):
        subprocess.run(["ipcrm", "-m", str(shmid)], capture_output=True, check=False)


def _owner_alive(entry: dict[str, Any]) -> bool:
    start = _start_time(int(entry["owner"]))
    return start is not None and start == entry.get("owner_start")


def reap_registered() -> list[str]:
    """Kill what dead runs registered (whole process groups), remove their shared memory and folders."""
    reaped, networks = [], []
    for path in sorted(registry().glob("*.json")):
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if _owner_alive(entry):
            continue
        if entry.get("kind") == "network":
            networks.append((path, entry))  # after the processes that run in it
            continue
        pgid = int(entry["pid"])
        leader_ours = _start_time(pgid) == entry.get("start")
        members = group_members(pgid)
        if members and (leader_ours or _start_time(pgid) is None):  # the leader may be gone, its children not
            creators = {pgid, *members}
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while group_members(pgid) and time.monotonic() < deadline:
                time.sleep(0.05)
            remove_shm(creators)
        if entry.get("folder"):
            shutil.rmtree(entry["folder"], ignore_errors=True)
        path.unlink(missing_ok=True)
        reaped.append(f"{entry['kind']} (process group {pgid}, {len(members)} processes)")
    for path, entry in networks:
        reaped.append(_reap_network(entry))
        path.unlink(missing_ok=True)
    return reaped
