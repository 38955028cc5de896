"""What the HA clusters (:mod:`~clauseproof.targets.ha`, :mod:`~clauseproof.targets.galera`) do to a node's
processes: kill them (SIGKILL), freeze and thaw them (SIGSTOP, SIGCONT), stop one node cleanly, stop them all."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from clauseproof.core import reaper
from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.embedded import _tail, _working_in, kill_processes


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
