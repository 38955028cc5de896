"""Private folders for what the harness starts, free loopback ports, and the processes working in a folder:
found, killed, and reaped when the run that made them is gone (``clauseproof reap``)."""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

from clauseproof.core import reaper
from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.host.processes import _cmdline, _names, _pid_alive, _working_in, kill_processes

log = logging.getLogger("clauseproof.embedded")

FOLDER_PREFIX = "clauseproof-"


#: ``CLAUSEPROOF_PORT_RANGE=low-high``: :func:`free_port` takes ports from this range only (the self-tests give each
#: parallel worker a range of its own, below the kernel's ephemeral range, so that no two workers — and no client
#: socket's source port — take a port between its choice and the server's bind)
PORT_RANGE_ENV = "CLAUSEPROOF_PORT_RANGE"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    span = os.environ.get(PORT_RANGE_ENV, "")
    if span:
        import random

        low, high = (int(x) for x in span.split("-"))
        for port in random.sample(range(low, high + 1), min(200, high - low + 1)):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
        raise ClauseproofError(f"no free TCP port on 127.0.0.1 in {span} ({PORT_RANGE_ENV})")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stale_owner(folder: str) -> bool:
    """Whether ``folder`` is one this user's harness made (a real ``clauseproof-*`` folder whose ``owner.json`` this
    user wrote: no other local user can make one, whatever they put in a shared temp folder) and its run is gone."""
    if not reaper.is_own_folder(folder):
        return False
    owner_file = Path(folder) / "owner.json"
    try:
        st = os.lstat(owner_file)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return False
        owner = json.loads(owner_file.read_text())
        pid = int(owner.get("pid", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return False
    return pid > 1 and not _pid_alive(pid)


def reap_stale(tmp: str | None = None) -> list[str]:
    """Stop and remove embedded servers whose owning process is gone; return what was reaped."""
    reaped = []
    bases = [tmp] if tmp else list(dict.fromkeys([tempfile.gettempdir(), SHARED_TMP]))
    for folder in [f for b in bases for f in glob.glob(os.path.join(b, FOLDER_PREFIX + "*"))]:
        if not _stale_owner(folder):
            continue
        # servers (postmaster.pid, mariadbd.pid), helpers (pgpool.pid, haproxy.pid), and every process working in
        # the folder or naming it (initdb and its single-user postgres, pg_ctl, tar, cp of a data directory)
        pids = set(_working_in(folder))
        for pid_file in [Path(folder) / "data" / "postmaster.pid", *Path(folder).glob("*.pid")]:
            try:
                pid = int(pid_file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if _pid_alive(pid) and _names(_cmdline(pid), folder):
                pids.add(pid)
        kill_processes(pids)
        shutil.rmtree(folder, ignore_errors=True)
        reaped.append(folder)
    reaped += reaper.reap_registered()  # registered process groups: proxies, load generators, tools
    for f in reaped:
        log.warning("removed what a crashed run left: %s", f)
    return reaped


#: where server folders go when the caller's temp folder is private (a server user could not reach its folder there)
SHARED_TMP = "/tmp"


def _others_may_enter(path: str) -> bool:
    """Whether a user other than the owner can traverse every folder from / down to ``path``."""
    p = Path(path).resolve()
    return all(os.stat(q).st_mode & 0o001 for q in [p, *p.parents])


def server_folder_base(owner: str | None) -> str:
    """The temp folder to make a server's folder in: the caller's, unless the server runs as another user who could
    not reach it there (a private ``TMPDIR``, 0700, as CI runners and careful users set): then the machine's
    ``/tmp`` (the server's folder itself stays 0700, its user's)."""
    base = tempfile.gettempdir()
    if not owner or os.geteuid() != 0 or _others_may_enter(base):
        return base
    if os.path.isdir(SHARED_TMP) and _others_may_enter(SHARED_TMP):
        return SHARED_TMP
    raise ClauseproofError(
        f"the temp folder {base} is private and {SHARED_TMP} cannot be used: the server's user {owner} could not "
        "reach its folder",
        fix=f"point TMPDIR at a folder every user may traverse (mode 0711 or 1777), e.g. TMPDIR={SHARED_TMP}",
    )


def make_private_folder(engine: str, owner: str | None = None) -> Path:
    """A folder ``clauseproof-<engine>-*`` that only ``owner`` (the server's OS user, where the harness runs
    as root) and root may enter, with the ``owner.json`` that lets a later run reap it."""
    folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{engine}-", dir=server_folder_base(owner)))  # 0700
    (folder / "owner.json").write_text(json.dumps({"pid": os.getpid(), "engine": engine}))
    if owner and os.geteuid() == 0:
        shutil.chown(folder, user=owner)
    return folder


def open_for(path: Path, user: str | None) -> None:
    """Let ``user`` (a server's) read what the harness wrote under ``path`` (a backup, say; done outside every timed
    window)."""
    if user:
        subprocess.run(["chown", "-R", user, str(path)], check=True)
