"""Background load inside a case: the OLTP workload run by Locust in separate processes.

The load runs as ``locust -f clauseproof.workloads.locust_oltp --headless`` subprocesses (one, or several
sharing the users, to use more cores), never inside the pytest process: the harness itself is
not patched by gevent, and the load generator's CPU is its own.  Each process appends a
JSON line per second (requests, failures, latency percentiles, every write's completion time,
every error); :class:`LoadResult` merges them and answers per window: throughput, errors, the
largest gap between successive write commits, and write latency percentiles.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clauseproof.core import masking, reaper, shipped
from clauseproof.core.errors import ClauseproofError
from clauseproof.core.evidence import client_cost
from clauseproof.targets.base import Target
from clauseproof.targets.host.processes import own_code_user

LOCUSTFILE = shipped.WORKLOADS / "locust_oltp.py"


def target_url(target: Target) -> str:
    """The workload's ``--host`` for a target, names escaped (the password travels in CLAUSEPROOF_PASSWORD)."""
    from sqlalchemy import URL

    ep = target.address()
    pg = target.dialect == "postgresql"
    url = URL.create(
        "postgresql" if pg else "mysql",
        username=ep.user,
        host=ep.host,
        port=ep.port,
        database=ep.database if pg else target.namespace,
    )
    return url.render_as_string(hide_password=False)


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


@dataclass
class Window:
    label: str
    start: float
    end: float


@dataclass
class LoadResult:
    lines: list[dict[str, Any]]
    windows: list[Window]
    users: int
    rate_per_user: float
    processes: int
    client_cpu_s: float
    wall_s: float
    stderr_tail: str = ""
    exit_codes: list[int] = field(default_factory=list)

    def client(self) -> dict[str, Any]:
        """How much of the machine the load generator took: its processes' CPU over their whole life, as cores and
        per 1,000 requests (``./run bench --only oltp`` gives pgbench's figure to compare with)."""
        requests = sum(sum(line["requests"].values()) for line in self.lines)
        return {
            "processes": self.processes,
            "cpu_s": self.client_cpu_s,
            "wall_s": self.wall_s,
            "cores": round(self.client_cpu_s / self.wall_s, 2) if self.wall_s > 0 else None,
            "requests": requests,
            "cpu_ms_per_1000_requests": client_cost(self.client_cpu_s, requests)["cpu_ms_per_1000"],
        }

    def writes(self, start: float, end: float) -> list[tuple[float, float]]:
        return sorted(
            (float(t), float(ms)) for line in self.lines for t, ms in line["writes"] if start <= float(t) < end
        )

    def errors(self, start: float = 0.0, end: float = float("inf")) -> list[str]:
        return [e for line in self.lines if start <= line["t"] + 1 and line["t"] < end for e in line["errors"]]

    def window_stats(self, w: Window) -> dict[str, Any]:
        """Throughput, errors, the largest gap between successive write commits, write latency."""
        writes = self.writes(w.start, w.end)
        stamps = [w.start] + [t for t, _ in writes] + [w.end]
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        lat = [ms for _, ms in writes]
        seconds = max(w.end - w.start, 1e-9)
        requests = sum(
            sum(line["requests"].values()) for line in self.lines if w.start <= line["t"] + 0.5 < w.end + 0.5
        )
        return {
            "window": w.label,
            "seconds": round(seconds, 3),
            "writes": len(writes),
            "writes_per_s": round(len(writes) / seconds, 1),
            "requests_approx": requests,
            "max_commit_gap_s": round(max(gaps), 4) if gaps else None,
            "write_p50_ms": _quantile(lat, 0.50),
            "write_p99_ms": _quantile(lat, 0.99),
            "write_max_ms": max(lat) if lat else None,
            "errors": len(self.errors(w.start, w.end)),
        }

    def series(self) -> dict[str, Any]:
        """Per-second totals over all processes, for the report's plot."""
        by_t: dict[int, dict[str, Any]] = {}
        for line in self.lines:
            b = by_t.setdefault(line["t"], {"n": 0, "fail": 0, "p50": [], "p95": [], "p99": [], "max": []})
            b["n"] += sum(line["requests"].values())
            b["fail"] += sum(line["failures"].values())
            for k in ("p50", "p95", "p99", "max"):
                if line[f"{k}_ms"] is not None:
                    b[k].append(line[f"{k}_ms"])
        ts = sorted(by_t)
        t0 = ts[0] if ts else 0
        return {
            "t": [t - t0 for t in ts],
            "t0": t0,
            "requests_per_s": [by_t[t]["n"] for t in ts],
            "failures_per_s": [by_t[t]["fail"] for t in ts],
            # several processes: the worst process's percentile (an upper bound, said in the plot)
            **{f"{k}_ms": [max(by_t[t][k]) if by_t[t][k] else None for t in ts] for k in ("p50", "p95", "p99", "max")},
            "windows": [{"label": w.label, "start": w.start - t0, "end": w.end - t0} for w in self.windows],
        }


class BackgroundLoad:
    """Start the workload against ``target``; mark windows while the case works; stop and read the result."""

    def __init__(
        self,
        target: Target,
        schema: str,
        *,
        users: int = 16,
        rate_per_user: float = 0.0,
        weights: str = "settle=4,lookup=10,transfer=2,report=1",
        processes: int = 1,
        limit_s: float = 600.0,
        cpus: str = "",
    ) -> None:
        """``cpus``: a ``taskset`` CPU list (``"1"``, ``"2-3"``) the load generator's processes are pinned to, so that
        its CPU is kept apart from a server pinned elsewhere; empty: wherever the kernel puts them."""
        self.target, self.schema = target, schema
        self.users, self.rate, self.weights = users, rate_per_user, weights
        self.processes, self.limit_s = max(1, processes), limit_s
        self.pin = ["taskset", "-c", cpus] if cpus else []
        self.folder = Path(tempfile.mkdtemp(prefix="clauseproof-load-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.windows: list[Window] = []
        self._cpu0 = 0.0
        self._t0 = 0.0

    def start(self, ready_timeout_s: float = 60.0) -> None:
        env = masking.child_env()
        ep = self.target.address()
        if ep.password:
            env["CLAUSEPROOF_PASSWORD"] = ep.password
        env[reaper.PARENT_ENV] = str(os.getpid())  # the load generator dies with this process, however it dies
        runs_as = own_code_user()  # not root: it writes its series into a folder of its own
        runs_as.give(self.folder)
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._cpu0 = ru.ru_utime + ru.ru_stime
        self._t0 = time.time()
        share = [
            self.users // self.processes + (1 if i < self.users % self.processes else 0) for i in range(self.processes)
        ]
        for i, users in enumerate(share):
            if users == 0:
                continue
            cmd = [
                *self.pin, sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
                "--host", target_url(self.target), "--cp-schema", self.schema, "--cp-weights", self.weights,
                "--cp-rate", str(self.rate), "--cp-series", str(self.folder / f"series-{i}.jsonl"),
                "-u", str(users), "-r", str(max(users, 1) * 10), "-t", f"{int(self.limit_s)}s", "--stop-timeout", "5",
            ]  # fmt: skip
            with open(self.folder / f"locust-{i}.log", "wb") as log:
                proc = subprocess.Popen(
                    cmd,
                    cwd=self.folder,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    **runs_as.popen(),
                )
            self.procs.append(proc)
            reaper.register("locust", proc.pid, self.folder)
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                self.stop()
                raise ClauseproofError(
                    "the load generator exited at start; its log:\n    " + self._tail(), checked=" ".join(cmd)
                )
            if all((self.folder / f"series-{i}.jsonl").exists() for i in range(len(self.procs))):
                return
            time.sleep(0.1)
        self.stop()
        raise ClauseproofError(f"the load generator produced no requests within {ready_timeout_s:g} s: " + self._tail())

    def _tail(self) -> str:
        out = []
        for log in sorted(self.folder.glob("locust-*.log")):
            out += log.read_text(errors="replace").splitlines()[-6:]
        return "\n    ".join(out)

    @contextlib.contextmanager
    def window(self, label: str) -> Iterator[Window]:
        """Mark a window (wall clock, as the series records) around the block."""
        w = Window(label, time.time(), 0.0)
        try:
            yield w
        finally:
            w.end = time.time()
            self.windows.append(w)

    def stop(self) -> LoadResult:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        codes = []
        for p in self.procs:
            try:
                codes.append(p.wait(30))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                codes.append(p.wait())
            reaper.unregister(p.pid)
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        lines = []
        for f in sorted(self.folder.glob("series-*.jsonl")):
            lines += [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
        result = LoadResult(
            lines=sorted(lines, key=lambda x: x["t"]),
            windows=list(self.windows),
            users=self.users,
            rate_per_user=self.rate,
            processes=len(self.procs),
            client_cpu_s=round(ru.ru_utime + ru.ru_stime - self._cpu0, 2),
            wall_s=round(time.time() - self._t0, 2),
            stderr_tail=self._tail(),
            exit_codes=codes,
        )
        shutil.rmtree(self.folder, ignore_errors=True)
        self.procs = []
        return result
