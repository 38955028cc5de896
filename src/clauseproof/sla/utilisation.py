"""SX-SLA-3: the resource utilisation of a target's nodes (CPU, memory, disk), sampled while a declared load runs.

Three ways to read a node, each giving cumulative CPU seconds (busy and total) and memory and disk in use:

- :class:`ProcessTreeSampler`, an embedded server on this machine: the server's process tree from ``/proc``
  (CPU seconds of every process under the server's main pid, memory as their summed PSS — shared buffers
  counted once, not once per backend — and the bytes of its data directory), each as a share of this
  machine (cores, ``MemTotal``, the data directory's filesystem).  The machine also runs the harness and its
  load generator, which are not the node's work: the server's own share is what is judged, and the whole
  machine's figures are recorded beside it.
- :class:`PrometheusSampler`, a vendor's node through its node_exporter (``node_cpu_seconds_total``,
  ``node_memory_MemAvailable_bytes`` / ``MemTotal``, ``node_filesystem_avail_bytes`` / ``size`` of a mountpoint).
- :class:`CommandSampler`, a vendor's command printing one JSON object ``{"cpu_busy_s", "cpu_total_s",
  "memory_used_bytes", "memory_total_bytes", "disk_used_bytes", "disk_total_bytes"}``.

CPU utilisation is judged as the highest average over any ``window_s`` of the load (1 s samples are noise);
memory and disk as their highest sample.  The cheapest cheats: a node that refuses the load (idle, so "low
utilisation") — the load must have been served, errors none and throughput within 95 % of the offered rate, else
the rows are NOT SHOWN saying so; and a sampler that reads the wrong machine or a static file — the node's CPU
counters must have moved with the load (busy CPU seconds under load above those of the same time idle), else
NOT SHOWN: "the samples did not follow the load".
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.sections import Section

HTTP_TIMEOUT_S = 5.0
MAX_SAMPLES = 100_000


@dataclass
class Reading:
    """One read of a node: cumulative CPU seconds, and memory and disk in use, in bytes."""

    t: float
    cpu_busy_s: float
    cpu_total_s: float
    memory_used: float
    memory_total: float
    disk_used: float
    disk_total: float
    machine: dict[str, float] = field(default_factory=dict)  # the whole machine's figures, where they differ


class Sampler(Protocol):
    name: str

    def read(self) -> Reading: ...

    def describe(self) -> str: ...


def _clk() -> int:
    return int(os.sysconf("SC_CLK_TCK"))


def _proc_stat_cpu() -> tuple[float, float]:
    """This machine's (busy, total) CPU seconds since boot, all cores, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return (total - idle) / _clk(), total / _clk()


def _meminfo() -> dict[str, float]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        k, _, v = line.partition(":")
        parts = v.split()
        if parts:
            out[k] = float(parts[0]) * 1024
    return out


def _tree(root: int) -> list[int]:
    """``root`` and every process under it."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _dir_bytes(path: Path) -> float:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return float(total)


class ProcessTreeSampler:
    """An embedded server's share of this machine: its process tree's CPU and PSS, its data directory's bytes."""

    def __init__(self, name: str, pid: int, data_dir: Path) -> None:
        self.name, self.pid, self.data_dir = name, pid, data_dir
        self.cores = os.cpu_count() or 1
        self._exited_cpu = 0.0
        self._last: dict[int, float] = {}

    def describe(self) -> str:
        return (
            f"{self.name}: the server's process tree (pid {self.pid}) from /proc on the machine it shares with the "
            f"harness ({self.cores} cores); memory as summed PSS; disk as the bytes of {self.data_dir}"
        )

    def read(self) -> Reading:
        t = time.time()
        cpu, pss = 0.0, 0.0
        now: dict[int, float] = {}
        for pid in _tree(self.pid):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                c = (float(stat[11]) + float(stat[12])) / _clk()  # utime + stime
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except (OSError, IndexError, ValueError):
                continue
            now[pid] = c
            cpu += c
            for line in rollup.splitlines():
                if line.startswith("Pss:"):
                    pss += float(line.split()[1]) * 1024
        # a backend that exited took its CPU seconds with it: keep what it had used, so the total never falls
        self._exited_cpu += sum(v for p, v in self._last.items() if p not in now)
        self._last = now
        mem = _meminfo()
        st = os.statvfs(self.data_dir)
        busy, total = _proc_stat_cpu()
        return Reading(
            t, cpu + self._exited_cpu, time.monotonic() * self.cores, pss, mem["MemTotal"],
            _dir_bytes(self.data_dir), float(st.f_blocks * st.f_frsize),
            machine={
                "cpu_busy_s": busy, "cpu_total_s": total,
                "memory_used": mem["MemTotal"] - mem.get("MemAvailable", mem["MemFree"]),
                "disk_used": float((st.f_blocks - st.f_bavail) * st.f_frsize),
            },
        )  # fmt: skip


def parse_node_exporter(text: str, mountpoint: str = "/") -> dict[str, float]:
    """CPU seconds (busy, total), memory and disk of one node from node_exporter's text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    busy = total = 0.0
    mem: dict[str, float] = {}
    fs: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "node_cpu_seconds_total":
                total += s.value
                if s.labels.get("mode") not in ("idle", "iowait"):
                    busy += s.value
            elif s.name in ("node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes"):
                mem[s.name] = s.value
            elif s.name in ("node_filesystem_avail_bytes", "node_filesystem_size_bytes") and (
                s.labels.get("mountpoint") == mountpoint
            ):
                fs[s.name] = s.value
    missing = [
        n
        for n, have in (
            ("node_cpu_seconds_total", total > 0),
            ("node_memory_MemTotal_bytes", "node_memory_MemTotal_bytes" in mem),
            ("node_memory_MemAvailable_bytes", "node_memory_MemAvailable_bytes" in mem),
            (f'node_filesystem_size_bytes{{mountpoint="{mountpoint}"}}', "node_filesystem_size_bytes" in fs),
        )
        if not have
    ]
    if missing:
        raise ClauseproofError(
            f"the node_exporter answer lacks {', '.join(missing)}",
            fix="point [utilisation] at a node_exporter's /metrics (and its data mountpoint)",
        )
    return {
        "cpu_busy_s": busy,
        "cpu_total_s": total,
        "memory_used": mem["node_memory_MemTotal_bytes"] - mem["node_memory_MemAvailable_bytes"],
        "memory_total": mem["node_memory_MemTotal_bytes"],
        "disk_used": fs["node_filesystem_size_bytes"] - fs.get("node_filesystem_avail_bytes", 0.0),
        "disk_total": fs["node_filesystem_size_bytes"],
    }


class PrometheusSampler:
    """A node read through its node_exporter's ``/metrics``."""

    def __init__(self, name: str, url: str, mountpoint: str = "/") -> None:
        self.name, self.url, self.mountpoint = name, url, mountpoint

    def describe(self) -> str:
        return f"{self.name}: node_exporter at {self.url} (filesystem {self.mountpoint})"

    def read(self) -> Reading:
        import httpx

        try:
            r = httpx.get(self.url, timeout=HTTP_TIMEOUT_S)
            r.raise_for_status()
        except httpx.HTTPError as exc:
            raise ClauseproofError(
                f"{self.name}: reading {self.url} failed: {exc}",
                checked=f"GET {self.url} within {HTTP_TIMEOUT_S:g} s",
                fix="check the node_exporter URL in the profile's [utilisation] section",
            ) from None
        v = parse_node_exporter(r.text, self.mountpoint)
        return Reading(time.time(), v["cpu_busy_s"], v["cpu_total_s"], v["memory_used"], v["memory_total"],
                       v["disk_used"], v["disk_total"])  # fmt: skip


COMMAND_KEYS = (
    "cpu_busy_s", "cpu_total_s", "memory_used_bytes", "memory_total_bytes", "disk_used_bytes", "disk_total_bytes"
)  # fmt: skip


class CommandSampler:
    """A node read by a vendor's command printing one JSON object of :data:`COMMAND_KEYS`."""

    def __init__(self, name: str, command: str, timeout_s: float = 10.0) -> None:
        self.name, self.command, self.timeout_s = name, command, timeout_s

    def describe(self) -> str:
        return f"{self.name}: the profile's command {self.command!r}"

    def read(self) -> Reading:
        try:
            p = subprocess.run(
                shlex.split(self.command), capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
            v = json.loads(p.stdout)
            vals = [float(v[k]) for k in COMMAND_KEYS]
        except subprocess.TimeoutExpired:
            raise ClauseproofError(f"{self.name}: {self.command!r} gave no answer in {self.timeout_s:g} s") from None
        except OSError as exc:
            raise ClauseproofError(
                f"{self.name}: {self.command!r} cannot be run: {exc.strerror or exc}",
                fix="give the command's full path, installed on this machine",
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ClauseproofError(
                f"{self.name}: {self.command!r} did not print the expected JSON ({type(exc).__name__}: {exc})",
                checked="one JSON object with " + ", ".join(COMMAND_KEYS),
                fix="make the command print cumulative CPU seconds and bytes, as documented",
            ) from None
        return Reading(time.time(), vals[0], vals[1], vals[2], vals[3], vals[4], vals[5])


class Sampling:
    """Reads every sampler each ``interval_s`` in a thread until stopped (bounded: ``limit_s``, MAX_SAMPLES)."""

    def __init__(self, samplers: list[Sampler], interval_s: float = 1.0, limit_s: float = 3600.0) -> None:
        self.samplers, self.interval_s, self.limit_s = samplers, interval_s, limit_s
        self.readings: dict[str, list[Reading]] = {s.name: [] for s in samplers}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="clauseproof-utilisation", daemon=True)

    def _loop(self) -> None:
        deadline = time.monotonic() + self.limit_s
        n = 0
        while not self._stop.is_set() and time.monotonic() < deadline and n < MAX_SAMPLES:
            t0 = time.monotonic()
            for s in self.samplers:
                try:
                    self.readings[s.name].append(s.read())
                except Exception as exc:  # a reader that fails is said, never a sampler that stops in silence
                    if len(self.errors) < 20:
                        said = str(exc) if isinstance(exc, ClauseproofError) else f"{type(exc).__name__}: {exc}"
                        self.errors.append(said if s.name in said else f"{s.name}: {said}")
            n += 1
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - t0)))

    def __enter__(self) -> Sampling:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _pct(a: float, b: float) -> float:
    return 100.0 * a / b if b > 0 else float("nan")


def summarise(readings: list[Reading], start: float, end: float, window_s: float) -> dict[str, Any]:
    """Utilisation between ``start`` and ``end`` (wall clock): CPU as the highest ``window_s`` average and the
    mean, memory and disk as their highest sample; the machine's figures beside, where recorded."""
    rs = [r for r in readings if start <= r.t <= end]
    if len(rs) < 2:
        return {"samples": len(rs)}
    best = 0.0
    j = 0
    for i in range(len(rs)):
        while j < len(rs) and rs[j].t - rs[i].t < window_s:
            j += 1
        if j >= len(rs):
            break
        a, b = rs[i], rs[j]
        best = max(best, _pct(b.cpu_busy_s - a.cpu_busy_s, b.cpu_total_s - a.cpu_total_s))
    first, last = rs[0], rs[-1]
    out: dict[str, Any] = {
        "samples": len(rs),
        "seconds": round(last.t - first.t, 2),
        "cpu_busy_s": round(last.cpu_busy_s - first.cpu_busy_s, 3),
        "cpu_mean_pct": round(_pct(last.cpu_busy_s - first.cpu_busy_s, last.cpu_total_s - first.cpu_total_s), 2),
        "cpu_peak_window_pct": round(best, 2) if rs[-1].t - rs[0].t >= window_s else None,
        "memory_peak_pct": round(max(_pct(r.memory_used, r.memory_total) for r in rs), 2),
        "disk_peak_pct": round(max(_pct(r.disk_used, r.disk_total) for r in rs), 2),
        "memory_peak_bytes": max(r.memory_used for r in rs),
        "disk_peak_bytes": max(r.disk_used for r in rs),
    }
    if first.machine and last.machine:
        out["machine"] = {
            "cpu_mean_pct": round(
                _pct(
                    last.machine["cpu_busy_s"] - first.machine["cpu_busy_s"],
                    last.machine["cpu_total_s"] - first.machine["cpu_total_s"],
                ),
                2,
            ),
            "memory_peak_pct": round(max(_pct(r.machine["memory_used"], r.memory_total) for r in rs), 2),
            "disk_peak_pct": round(max(_pct(r.machine["disk_used"], r.disk_total) for r in rs), 2),
        }
    return out


def not_following(idle: dict[str, Any], busy: dict[str, Any]) -> str:
    """Why the loaded samples cannot be evidence of the node doing the work ('' when they can): too few samples,
    or CPU seconds per second under load no higher than idle (a static file, another machine, an idle process)."""
    if "cpu_busy_s" not in busy:
        return f"{busy.get('samples', 0)} samples in the loaded period: too few to judge"
    frozen = [k for k in ("cpu_mean_pct", "memory_peak_pct", "disk_peak_pct") if not math.isfinite(busy.get(k, 0.0))]
    if frozen:
        return (
            f"the counters did not advance or have no total ({', '.join(frozen)} cannot be computed): a reader that "
            "returns the same numbers is no measurement"
        )
    per_s_busy = busy["cpu_busy_s"] / max(busy["seconds"], 1e-9)
    per_s_idle = idle["cpu_busy_s"] / max(idle["seconds"], 1e-9) if "cpu_busy_s" in idle else 0.0
    if not per_s_busy > per_s_idle:
        return (
            f"the samples did not follow the load: {per_s_busy:.3f} CPU s/s under load, {per_s_idle:.3f} idle — "
            "not the node doing the work"
        )
    return ""


# ------------------------------------------------------------------------------------ a vendor's nodes (profile)


@dataclass(frozen=True)
class UtilisationSection:
    """A profile's ``[utilisation]``: how to read each node of the vendor's system."""

    nodes: tuple[dict[str, str], ...]

    def samplers(self) -> list[Sampler]:
        out: list[Sampler] = []
        for n in self.nodes:
            if "prometheus" in n:
                out.append(PrometheusSampler(n["name"], n["prometheus"], n.get("mountpoint", "/")))
            else:
                out.append(CommandSampler(n["name"], n["command"]))
        return out


def parse_section(body: dict[str, Any], err: Any) -> UtilisationSection | None:
    if not body:
        return None
    example = '{ name = "db1", prometheus = "http://192.0.2.11:9100/metrics", mountpoint = "/data" }'
    nodes = []
    for n in body.get("nodes", []):
        if not isinstance(n, dict) or "name" not in n or ("prometheus" in n) == ("command" in n):
            raise err("utilisation", "nodes", f"{n!r} is not a node", f"write each as {example} or with command = ...")
        extra = set(n) - {"name", "prometheus", "mountpoint", "command"}
        if extra:
            raise err("utilisation", "nodes", f"node {n['name']}: unknown keys {sorted(extra)}", f"e.g. {example}")
        if "prometheus" in n and not str(n["prometheus"]).startswith(("http://", "https://")):
            raise err("utilisation", "nodes", f"node {n['name']}: {n['prometheus']!r} is not a URL", f"e.g. {example}")
        nodes.append({k: str(v) for k, v in n.items()})
    if not nodes:
        raise err("utilisation", "nodes", "no node is given", f"nodes = [{example}]")
    return UtilisationSection(tuple(nodes))


#: ``[utilisation]`` of a profile, registered in pyproject.toml (entry point group ``clauseproof.sections``).
SECTION = Section("utilisation", {"nodes": list}, parse_section)
