"""What the HA clusters (:mod:`~clauseproof.targets.clusters.patroni`, :mod:`~clauseproof.targets.clusters.galera`)
and the sync stand-ins
(:mod:`~clauseproof.targets.sync.logical`, :mod:`~clauseproof.targets.sync.binlog`) do to a node's processes: start them
together, kill them (SIGKILL), freeze and thaw them (SIGSTOP, SIGCONT), stop one node cleanly, stop them all."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from clauseproof.core import reaper
from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.base import Target
from clauseproof.targets.host.folders import _tail, _working_in, kill_processes
from clauseproof.targets.single.postgres import EmbeddedPostgres


def kill(pids: set[int], folder: Path) -> float:
    """SIGKILL ``pids``, then whatever works in ``folder`` still (a process forked between the scan and the kill),
    as a machine dying would; the instant the first signals went out.  The System V segments they made go with
    them (a dead postmaster's would outlive the harness if it were killed before the restart)."""
    at = time.monotonic()
    kill_processes(pids)
    kill_processes(set(_working_in(str(folder))))
    return at


def freeze(pids: set[int], folder: Path) -> float:
    """SIGSTOP ``pids`` and then whatever works in ``folder`` that was not among them (a process forked between
    the scan and the signal); the instant the first signals went out."""
    at = time.monotonic()
    for _ in range(2):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        pids = set(_working_in(str(folder))) - pids
    return at


def thaw(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def stop_one(proc: subprocess.Popen[bytes], timeout: float, what: str, log: Path) -> None:
    """SIGTERM ``proc`` and wait for it (unregistered from the reaper once gone); an error naming ``what`` with
    the tail of its ``log`` after ``timeout``."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise ClauseproofError(f"{what} did not stop within {timeout:g} s; its log:\n    " + _tail(log)) from None
    reaper.unregister(proc.pid)


def stop_all(procs: list[subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    """SIGTERM every process still running, then wait for each; a process group still there after ``timeout`` is
    SIGKILLed.  Never raises."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reaper.unregister(proc.pid)


def start_together(targets: Iterable[Target]) -> None:
    """Start ``targets`` at once, in threads; the first error is raised once all have finished (the caller stops
    what did start)."""
    errors: list[BaseException] = []

    def one(t: Target) -> None:
        try:
            t.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(t,)) for t in targets]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]


def kill_postgres(node: EmbeddedPostgres) -> None:
    """SIGKILL an embedded PostgreSQL whole, as its machine dying; its ``postmaster.pid`` goes too, so that it can
    be started again (it then recovers from its WAL)."""
    assert node.folder is not None
    pid_file = node.data_dir / "postmaster.pid"
    pids = {int(pid_file.read_text().split()[0])} if pid_file.exists() else set()
    kill(pids, node.folder)
    pid_file.unlink(missing_ok=True)
