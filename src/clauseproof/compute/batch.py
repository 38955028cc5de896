"""Batch operations on VMs, timed per VM: create, delete, start, stop, reboot.

The clock starts before the first API call.  Per VM the record holds when the API accepted
it, when it was first seen in the target state, and (optionally) when a TCP connection to a
given port succeeded.  The batch time is the slowest VM.  States are polled at a configurable
interval, so every time is known to within that interval (stated in the evidence).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from clauseproof.compute.base import FAILED, GONE, RUNNING, STOPPED, CloudError, ComputeDriver, Vm, vm_names


@dataclass
class VmTiming:
    name: str
    id: str = ""
    accepted_s: float | None = None
    #: First poll that saw the VM in the target state (seconds from the batch start).
    reached_s: float | None = None
    reachable_s: float | None = None
    final_state: str = ""
    error: str = ""


@dataclass
class BatchResult:
    operation: str
    target_state: str
    count: int
    poll_interval_s: float
    timeout_s: float
    #: Slowest VM to reach the target state (None when one never did).
    seconds: float | None
    vms: list[VmTiming]
    polls: int
    failures: list[str] = field(default_factory=list)
    leftovers: dict[str, list[str]] = field(default_factory=dict)
    meaning: str = ""

    @property
    def failure_rate(self) -> float:
        return len(self.failures) / self.count if self.count else 0.0

    def evidence(self) -> dict[str, Any]:
        return asdict(self)


def _reachable(address: str | None, port: int, timeout: float = 0.5) -> bool:
    if not address:
        return False
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _poll(
    driver: ComputeDriver,
    run_id: str,
    timings: dict[str, VmTiming],
    done: Callable[[Vm | None], bool],
    t0: float,
    poll_s: float,
    timeout_s: float,
    reach_port: int | None = None,
) -> int:
    """Poll until every VM in ``timings`` (by id) is done, or the timeout; return the number of polls."""
    polls = 0
    while True:
        polls += 1
        seen = {v.id: v for v in driver.list_vms(run_id)}
        now = time.perf_counter() - t0
        waiting = False
        for vid, t in timings.items():
            vm = seen.get(vid)
            t.final_state = vm.state if vm else GONE
            if t.reached_s is None and done(vm):
                t.reached_s = round(now, 4)
            elif t.reached_s is None and vm is not None and vm.state == FAILED and not t.error:
                t.error = f"the provider reports the VM failed (after {now:.1f} s)"
            if reach_port is not None and t.reached_s is not None and t.reachable_s is None and vm is not None:
                if _reachable(vm.address, reach_port):
                    t.reachable_s = round(time.perf_counter() - t0, 4)
            if t.error:
                continue
            if t.reached_s is None or (reach_port is not None and t.reachable_s is None):
                waiting = True
        if not waiting or now > timeout_s:
            return polls
        time.sleep(poll_s)


def _finish(result: BatchResult, attr: str = "reached_s") -> BatchResult:
    for t in result.vms:
        if getattr(t, attr) is None and not t.error:
            t.error = f"not {result.target_state} within {result.timeout_s:g} s (last seen {t.final_state})"
        if t.error:
            result.failures.append(f"{t.name} ({t.id or 'no id'}): {t.error}")
    times = [getattr(t, attr) for t in result.vms]
    result.seconds = None if any(x is None for x in times) or not times else max(times)
    return result


def create_batch(
    driver: ComputeDriver,
    run_id: str,
    count: int,
    *,
    poll_s: float = 0.5,
    timeout_s: float = 600.0,
    reach_port: int | None = None,
    group: str | None = None,
    prefix: str = "vm",
) -> BatchResult:
    """Create ``count`` VMs and wait until each runs (and, with ``reach_port``, accepts a TCP connection)."""
    names = vm_names(run_id, count, prefix)
    timings = {n: VmTiming(n) for n in names}
    driver.warm()  # connections and logins: outside the timed window
    t0 = time.perf_counter()  # before the first API call
    error = ""
    refused: dict[str, str] = {}
    try:
        accepted = driver.create(run_id, names, group)
    except CloudError as exc:
        accepted, error, refused = exc.accepted, str(exc), exc.refused
    for name, vid, at in accepted:
        timings[name].id, timings[name].accepted_s = vid, round(at - t0, 4)
    by_id = {t.id: t for t in timings.values() if t.id}
    polls = 0
    if by_id:
        polls = _poll(
            driver, run_id, by_id, lambda vm: vm is not None and vm.state == RUNNING, t0, poll_s, timeout_s, reach_port
        )
    for t in timings.values():
        if not t.id:
            why = refused.get(t.name) or error
            t.error = f"refused by the provider: {why}" if why else "not accepted by the API"
    result = BatchResult(
        operation="create",
        target_state="running" + (f" and reachable on TCP port {reach_port}" if reach_port else ""),
        count=count,
        poll_interval_s=poll_s,
        timeout_s=timeout_s,
        seconds=None,
        vms=list(timings.values()),
        polls=polls,
        meaning="created = the API reports the VM running"
        + (f" and a TCP connection to port {reach_port} succeeds" if reach_port else "")
        + "; the clock starts before the first API call; the batch time is the slowest VM",
    )
    return _finish(result, "reachable_s" if reach_port else "reached_s")


def _issue(
    driver: ComputeDriver,
    run_id: str,
    ids: list[str],
    verb: str,
    call: Callable[[list[str]], dict[str, str]],
    done: Callable[[Vm | None], bool],
    poll_s: float,
    timeout_s: float,
) -> tuple[dict[str, VmTiming], int]:
    """One API call for ``ids`` (the clock starts before it), then poll until each VM is done."""
    names = {v.id: v.name for v in driver.list_vms(run_id)}
    timings = {vid: VmTiming(names.get(vid, vid), vid) for vid in ids}
    t0 = time.perf_counter()
    errors = call(ids)
    accepted = round(time.perf_counter() - t0, 4)
    for vid, t in timings.items():
        if vid in errors:
            t.error = f"{verb} refused: {errors[vid]}"
        else:
            t.accepted_s = accepted
    pending = {vid: t for vid, t in timings.items() if not t.error}
    polls = _poll(driver, run_id, pending, done, t0, poll_s, timeout_s) if pending else 0
    return timings, polls


def delete_batch(
    driver: ComputeDriver, run_id: str, ids: list[str], *, poll_s: float = 0.5, timeout_s: float = 600.0
) -> BatchResult:
    """Delete VMs and wait until each is gone from the API or terminated."""
    timings, polls = _issue(
        driver, run_id, ids, "delete", driver.delete, lambda vm: vm is None or vm.state == GONE, poll_s, timeout_s
    )
    result = BatchResult(
        operation="delete",
        target_state="gone (absent from the API or terminated)",
        count=len(ids),
        poll_interval_s=poll_s,
        timeout_s=timeout_s,
        seconds=None,
        vms=list(timings.values()),
        polls=polls,
        meaning="deleted = the VM is absent from the API or reported terminated; the clock starts before the "
        "delete call; the batch time is the slowest VM",
    )
    _finish(result)
    result.leftovers = {k: v for k, v in driver.leftovers(run_id, ids).items() if v}
    return result


def act_batch(
    driver: ComputeDriver, run_id: str, ids: list[str], action: str, *, poll_s: float = 0.5, timeout_s: float = 300.0
) -> BatchResult:
    """start / stop / reboot, each timed to the target state (running / stopped / running again)."""
    want = STOPPED if action == "stop" else RUNNING
    timings, polls = _issue(
        driver,
        run_id,
        ids,
        action,
        lambda batch: driver.act(batch, action),
        lambda vm: vm is not None and vm.state == want,
        poll_s,
        timeout_s,
    )
    meaning = f"{action} done = the API reports the VM {want}"
    if action == "reboot":
        meaning += (
            "; a reboot is seen only as 'running' again where the API shows no rebooting state, so its "
            "time is an upper bound of the API's acknowledgement, not proof the guest restarted"
        )
    result = BatchResult(
        operation=action,
        target_state=want,
        count=len(ids),
        poll_interval_s=poll_s,
        timeout_s=timeout_s,
        seconds=None,
        vms=list(timings.values()),
        polls=polls,
        meaning=meaning,
    )
    return _finish(result)


def delete_prefixed(
    driver: ComputeDriver, run_id: str, prefix: str, *, poll_s: float = 0.5, timeout_s: float = 600.0
) -> BatchResult | None:
    """Delete (and wait for) every VM of ``run_id`` named ``cp-<run id>-<prefix>…`` the API still shows: what one
    case created, found by name, so that a server the case lost track of is deleted too."""
    ids = [v.id for v in driver.list_vms(run_id) if v.name.startswith(f"cp-{run_id}-{prefix}") and v.state != GONE]
    return delete_batch(driver, run_id, ids, poll_s=poll_s, timeout_s=timeout_s) if ids else None


def cleanup(driver: ComputeDriver, run_id: str, *, timeout_s: float = 300.0, poll_s: float = 1.0) -> list[str]:
    """Delete every VM of ``run_id`` the API still shows; return what is left after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive = [v for v in driver.list_vms(run_id) if v.state != GONE]
        if not alive:
            return []
        driver.delete([v.id for v in alive])
        if time.monotonic() > deadline:
            return [f"{v.name} ({v.id}, {v.state})" for v in driver.list_vms(run_id) if v.state != GONE]
        time.sleep(poll_s)


@contextlib.contextmanager
def run_vms(driver: ComputeDriver, run_id: str, left: list[str], timeout_s: float = 120.0) -> Iterator[None]:
    """Delete whatever this run created when the block ends, also on failure, Ctrl-C and SIGTERM.

    ``left`` receives what could not be deleted (for the evidence)."""
    previous = signal.getsignal(signal.SIGTERM)

    def _term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    with contextlib.suppress(ValueError):  # not in the main thread: the plugin's handler stays
        signal.signal(signal.SIGTERM, _term)
    try:
        yield
    finally:
        try:
            left.extend(cleanup(driver, run_id, timeout_s=timeout_s, poll_s=min(0.5, timeout_s / 4)))
        finally:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, previous)
