"""What a run starts in the background, recorded outside the folders it works in, and reaped when the run died.

Every helper process the harness starts in a session of its own (pgpool-II with its ~70 children, HAProxy,
the Locust load generators, mariadbd) is written down in a registry folder of this user's (outside the
temporary folders a clean-up deletes): its process group, start time, command, and the run that owns it.

The registry is trusted to name what root may kill and delete, so it lives where no other local user can
write: ``/run/clauseproof`` for root, ``$XDG_RUNTIME_DIR/clauseproof`` or ``<tmp>/clauseproof-run-<uid>``
otherwise (``CLAUSEPROOF_RUNTIME_DIR`` overrides); a folder there that is a link, not owned by the effective
user, or open to others is refused, never used.  And each entry is checked again before it is acted on: only
folders named ``clauseproof-*`` that are no links, process groups whose leader still has the recorded start
time and command, and namespaces and bridges named as :mod:`clauseproof.targets.faults.netns` names them.  After a
SIGKILL, ``reap`` finds each entry whose owner is gone, kills the whole process group, removes the System V
shared-memory segments its processes created (pgpool-II leaves ~129 MiB), and the entry's folder; a private
network (:mod:`clauseproof.targets.faults.netns`) is recorded the same way and its namespaces and bridge deleted.

Children that must not outlive the run at all (the load generators, which would go on writing into a
vendor's database) also get a parent-death signal (``prctl(PR_SET_PDEATHSIG)``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from clauseproof.core.errors import ClauseproofError

log = logging.getLogger("clauseproof.reaper")

PR_SET_PDEATHSIG = 1
RUNTIME_ENV = "CLAUSEPROOF_RUNTIME_DIR"
#: the names the harness gives what it makes: folders, a private network's bridge and namespaces
FOLDER_NAME = re.compile(r"clauseproof-[A-Za-z0-9._-]+")
BRIDGE_NAME = re.compile(r"cpbr[0-9a-f]{6}")
NAMESPACE_NAME = re.compile(r"cp-[0-9a-f]{6}-[0-9]{1,3}")
ENTRY_NAME = re.compile(r"(net-)?[0-9]+-[0-9A-Za-z_-]+\.json")


def _default_runtime() -> Path:
    if os.geteuid() == 0 and os.path.isdir("/run") and os.access("/run", os.W_OK):
        return Path("/run/clauseproof")
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg and os.path.isdir(xdg):
        return Path(xdg) / "clauseproof"
    return Path(tempfile.gettempdir()) / f"clauseproof-run-{os.geteuid()}"


def private_folder(path: Path, what: str) -> Path:
    """``path`` made (0700) or found, and refused unless it is a real folder of the effective user's that no one
    else may enter: a folder someone else made first in a shared place is never trusted."""
    try:
        path.mkdir(mode=0o700, parents=False, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        raise ClauseproofError(
            f"cannot make {what} {path}: {exc.strerror}",
            fix=f"set {RUNTIME_ENV} to a folder of yours that only you can enter (mode 0700)",
        ) from None
    problem = ""
    if not stat.S_ISDIR(st.st_mode):
        problem = "it is not a folder (a link or a file stands there)"
    elif st.st_uid != os.geteuid():
        problem = f"it belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()})"
    elif st.st_mode & 0o077:
        problem = f"others may enter it (mode {stat.S_IMODE(st.st_mode):04o}, not 0700)"
    if problem:
        raise ClauseproofError(
            f"{what} {path} is not private: {problem}; the harness will not act on what it names",
            checked="that the folder is no link, belongs to the effective user and has mode 0700",
            fix=f"remove it (someone else may have made it first), or set {RUNTIME_ENV} to a private folder",
        )
    return path


def runtime_dir() -> Path:
    """This user's private runtime folder (see the module's docstring)."""
    given = os.environ.get(RUNTIME_ENV, "")
    return private_folder(Path(given) if given else _default_runtime(), "the runtime folder")


def registry() -> Path:
    """This user's registry folder (0700, private), outside every folder the harness deletes."""
    return private_folder(runtime_dir() / "registry", "the reaper's registry")


def is_own_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder the harness makes: absolute, named ``clauseproof-*``, no link on the way."""
    p = Path(path)
    if not p.is_absolute() or not FOLDER_NAME.fullmatch(p.name) or ".." in p.parts:
        return False
    try:
        return os.path.realpath(p) == str(p) and stat.S_ISDIR(os.lstat(p).st_mode)
    except OSError:
        return False


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


def _command(pid: int) -> str:
    """The program ``pid`` runs (its executable: unlike the command line, a process cannot retitle it)."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _write_entry(path: Path, entry: dict[str, Any]) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(entry))
    return path


def register(kind: str, pid: int, folder: Path | None = None) -> Path:
    """Record a process (the leader of its own process group) as this run's."""
    return _write_entry(
        registry() / f"{os.getpid()}-{pid}.json",
        {
            "kind": kind,
            "pid": pid,
            "start": _start_time(pid),
            "command": _command(pid),
            "owner": os.getpid(),
            "owner_start": _start_time(os.getpid()),
            "folder": str(folder) if folder else None,
        },
    )


def register_network(tag: str, bridge: str, namespaces: list[str]) -> Path:
    """Record (or re-record) a private network this run made: its bridge and namespaces (``reap`` removes them)."""
    return _write_entry(
        registry() / f"net-{os.getpid()}-{tag}.json",
        {
            "kind": "network",
            "bridge": bridge,
            "namespaces": namespaces,
            "owner": os.getpid(),
            "owner_start": _start_time(os.getpid()),
        },
    )


def _reap_network(entry: dict[str, Any]) -> str:
    """Delete a dead run's namespaces and bridge (its processes were reaped first, by their own entries); names
    the harness does not make are left alone."""
    bridge, namespaces = entry.get("bridge"), entry.get("namespaces")
    if not isinstance(bridge, str) or not BRIDGE_NAME.fullmatch(bridge) or not isinstance(namespaces, list):
        log.warning("left alone: a registry entry naming %r, not a bridge the harness makes", bridge)
        return ""
    ours = [ns for ns in namespaces if isinstance(ns, str) and NAMESPACE_NAME.fullmatch(ns)]
    for ns in ours:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False, timeout=10)
    subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False, timeout=10)
    if len(ours) < len(namespaces):
        foreign = sorted(set(map(str, namespaces)) - set(ours))
        log.warning("left alone: namespaces the harness does not name so: %s", foreign)
    return f"network {bridge} ({len(ours)} namespaces)"


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


def _read_entry(path: Path) -> dict[str, Any] | None:
    """A registry entry, or None when it is not one the harness wrote (a link, another owner, not its shape)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or not ENTRY_NAME.fullmatch(path.name):
            return None
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("owner"), int) or not isinstance(entry.get("kind"), str):
        return None
    if entry["kind"] != "network" and not (isinstance(entry.get("pid"), int) and entry["pid"] > 1):
        return None
    return entry


def reap_registered() -> list[str]:
    """Kill what dead runs registered (whole process groups), remove their shared memory and folders."""
    reaped, networks = [], []
    for path in sorted(registry().glob("*.json")):
        entry = _read_entry(path)
        if entry is None:
            log.warning("left alone: %s in the registry is not an entry the harness wrote", path)
            continue
        if _owner_alive(entry):
            continue
        if entry.get("kind") == "network":
            networks.append((path, entry))  # after the processes that run in it
            continue
        pgid = int(entry["pid"])
        leader_start = _start_time(pgid)
        # the leader is the one recorded (start time and command), or gone while its group lives on (a live
        # group keeps its id from being reused)
        leader_ours = leader_start == entry.get("start") and _command(pgid) == entry.get("command", _command(pgid))
        members = group_members(pgid)
        if members and (leader_ours or leader_start is None):
            creators = {pgid, *members}
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while group_members(pgid) and time.monotonic() < deadline:
                time.sleep(0.05)
            remove_shm(creators)
        folder = entry.get("folder")
        if isinstance(folder, str) and is_own_folder(folder):
            shutil.rmtree(folder, ignore_errors=True)
        path.unlink(missing_ok=True)
        reaped.append(f"{entry['kind']} (process group {pgid}, {len(members)} processes)")
    for path, entry in networks:
        done = _reap_network(entry)
        if done:
            reaped.append(done)
            path.unlink(missing_ok=True)
    return reaped
