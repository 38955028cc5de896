"""SX-SLA-3's node readers and judgement: a process tree read from /proc follows a CPU burner; the real Debian
node_exporter read through the Prometheus reader agrees with /proc; the cheats — a reader pointed at a process
that does none of the work, a command printing nonsense — are NOT SHOWN or a clear error, never a PASS."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clauseproof.core.errors import ClauseproofError
from clauseproof.sla.utilisation import (
    CommandSampler,
    ProcessTreeSampler,
    PrometheusSampler,
    Reading,
    Sampling,
    not_following,
    parse_node_exporter,
    summarise,
)
from clauseproof.targets.host.folders import free_port

BURN = "import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end: pass\n"


@contextlib.contextmanager
def _proc(args: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield p
    finally:
        p.kill()
        p.wait()


def _idle_then_burn(sampler_pid: int, tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    s = ProcessTreeSampler("node", sampler_pid, tmp_path)
    with Sampling([s], interval_s=0.2) as sampling:
        time.sleep(0.3)
        i0 = time.time()
        time.sleep(1.2)
        i1 = time.time()
        with _proc([sys.executable, "-c", BURN.format(s=2.0)]):
            time.sleep(0.3)
            b0 = time.time()
            time.sleep(1.4)
            b1 = time.time()
    return summarise(sampling.readings["node"], i0, i1, 1.0), summarise(sampling.readings["node"], b0, b1, 1.0)


@pytest.mark.timing  # a CPU burner must read > 60 % of a core in the burning window (1 s samples)
def test_a_process_tree_follows_its_work(tmp_path: Path) -> None:
    """The sampled tree is this test process's: the burner is its child, so its CPU counts."""
    idle, busy = _idle_then_burn(os.getpid(), tmp_path)
    assert not not_following(idle, busy)
    cores = os.cpu_count() or 1
    assert busy["cpu_mean_pct"] > 60 / cores, busy  # one core busy of `cores`


@pytest.mark.timing  # an idle process must read 0 % while a burner runs elsewhere
def test_a_reader_pointed_at_an_idle_process_is_not_evidence(tmp_path: Path) -> None:
    """The cheap cheat: utilisation read from something that does none of the work reads low."""
    with _proc(["sleep", "30"]) as idle_proc:
        idle, busy = _idle_then_burn(idle_proc.pid, tmp_path)
    assert busy["cpu_peak_window_pct"] == 0.0
    assert "did not follow the load" in not_following(idle, busy)


def test_cpu_is_judged_on_its_highest_window_average() -> None:
    rs = [Reading(float(t), busy, float(t) * 2, 1.0, 10.0, 6.0, 10.0) for t, busy in
          [(0, 0.0), (1, 0.2), (2, 0.4), (3, 2.0), (4, 3.6), (5, 3.8)]]  # fmt: skip
    out = summarise(rs, 0, 5, 2.0)
    assert out["cpu_peak_window_pct"] == 80.0  # (3.6 - 0.4) / (8 - 4): 2 s at 80 % within a mean of 38 %
    assert out["cpu_mean_pct"] == 38.0
    assert out["disk_peak_pct"] == 60.0 and out["memory_peak_pct"] == 10.0


def test_too_few_samples_are_not_judged() -> None:
    assert "too few" in not_following({}, {"samples": 1})


@pytest.mark.timing  # a 2.5 s CPU burner must show on the node's counters as > 0.3 core over 2 s
@pytest.mark.skipif(not shutil.which("prometheus-node-exporter"), reason="Debian's prometheus-node-exporter")
def test_the_real_node_exporter_agrees_with_proc() -> None:
    port = free_port()
    with _proc(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{port}",
                "--collector.disable-defaults", "--collector.cpu", "--collector.meminfo",
                "--collector.filesystem"]):  # fmt: skip
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 15
        while True:
            try:
                first = PrometheusSampler("this machine", url, "/").read()
                break
            except ClauseproofError:
                assert time.monotonic() < deadline, "node_exporter did not answer"
                time.sleep(0.2)
        st = os.statvfs("/")
        assert first.disk_total == pytest.approx(st.f_blocks * st.f_frsize, rel=0.01)
        mem_total = float(Path("/proc/meminfo").read_text().split()[1]) * 1024
        assert first.memory_total == pytest.approx(mem_total, rel=0.01)
        with _proc([sys.executable, "-c", BURN.format(s=2.5)]):
            time.sleep(2.0)
            second = PrometheusSampler("this machine", url, "/").read()
        busy = (second.cpu_busy_s - first.cpu_busy_s) / (second.cpu_total_s - first.cpu_total_s)
        assert busy > 0.3 / (os.cpu_count() or 1), busy  # the burner shows on the node's counters


def test_a_node_exporter_answer_without_the_metrics_is_a_clear_error() -> None:
    with pytest.raises(ClauseproofError, match="lacks node_cpu_seconds_total"):
        parse_node_exporter("# a static page\nsome_metric 1\n")


def test_an_unreachable_node_exporter_is_a_clear_error() -> None:
    with pytest.raises(ClauseproofError, match=re.escape("reading http://127.0.0.1:9/metrics failed")):
        PrometheusSampler("db1", "http://127.0.0.1:9/metrics").read()


def test_a_command_printing_nonsense_is_a_clear_error() -> None:
    with pytest.raises(ClauseproofError, match="did not print the expected JSON"):
        CommandSampler("db1", "echo 42").read()
    r = CommandSampler(
        "db1",
        """echo '{"cpu_busy_s": 1, "cpu_total_s": 4, "memory_used_bytes": 2, "memory_total_bytes": 8,
        "disk_used_bytes": 1, "disk_total_bytes": 2}'""",
    ).read()
    assert (r.cpu_busy_s, r.memory_total, r.disk_used) == (1.0, 8.0, 1.0)


def test_a_missing_command_is_said_not_a_sampler_that_stops_in_silence() -> None:
    """Issue 31 (low): the reader's thread used to die on FileNotFoundError with no error and 0 readings."""
    from clauseproof.sla.utilisation import Sampling

    sampler = CommandSampler("db1", "/nonexistent/vendor-metrics --json")
    with Sampling([sampler], interval_s=0.05, limit_s=5) as sampling:
        time.sleep(0.3)
    assert sampling.errors and "db1" in sampling.errors[0] and "cannot be run" in sampling.errors[0]
    assert len(sampling.errors) > 1  # it went on trying each interval


def test_counters_that_never_advance_are_no_measurement() -> None:
    """A reader printing the same numbers every time reads as 0 % CPU, a PASS for a ≤ 50 % clause: NOT SHOWN."""
    same = '{"cpu_busy_s": 5, "cpu_total_s": 100, "memory_used_bytes": 1, "memory_total_bytes": 8, ' + \
        '"disk_used_bytes": 1, "disk_total_bytes": 2}'  # fmt: skip
    frozen = CommandSampler("db1", f"echo '{same}'")
    rs = []
    for i in range(6):
        r = frozen.read()
        rs.append(Reading(float(i), r.cpu_busy_s, r.cpu_total_s, r.memory_used, r.memory_total, r.disk_used,
                          r.disk_total))  # fmt: skip
    idle, busy = summarise(rs, 0, 2, 1.0), summarise(rs, 3, 5, 1.0)
    assert not_following(idle, busy)  # neither "0 %" judged nor a traceback


@pytest.mark.parametrize(
    ("nodes", "says"),
    [
        ('[{ name = "db1" }]', "is not a node"),
        ('[{ name = "db1", prometheus = "db1:9100" }]', "is not a URL"),
        ('[{ name = "db1", command = "x", port = 1 }]', "unknown keys"),
        ("[]", "no node is given"),
    ],
)
def test_a_bad_utilisation_section_is_a_clear_error(tmp_path: Path, nodes: str, says: str) -> None:
    from clauseproof.targets.single.external import load_profile

    p = tmp_path / "vendor.toml"
    p.write_text(TARGET + f"[utilisation]\nnodes = {nodes}\n")
    with pytest.raises(ClauseproofError, match=says) as exc:
        load_profile(p)
    assert "vendor.toml" in str(exc.value)


TARGET = '[target]\ndialect = "postgresql"\nhost = "127.0.0.1"\nport = 5432\nuser = "postgres"\ndatabase = "postgres"\n'


@pytest.mark.slow  # ./run slow, about 32 s (a whole sla run); the reader: test_the_real_node_exporter_agrees_with_proc
@pytest.mark.skipif(not shutil.which("prometheus-node-exporter"), reason="Debian's prometheus-node-exporter")
def test_a_vendor_node_read_through_its_node_exporter(tmp_path: Path) -> None:
    """The suite on a profile target (the machine's own PostgreSQL) whose node is read through node_exporter:
    three rows, the disk row the filesystem's real use."""
    port = free_port()
    with _proc(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{port}",
                "--collector.disable-defaults", "--collector.cpu", "--collector.meminfo",
                "--collector.filesystem"]):  # fmt: skip
        profile = tmp_path / "vendor.toml"
        profile.write_text(
            TARGET + f'[utilisation]\nnodes = [{{ name = "this machine", '
            f'prometheus = "http://127.0.0.1:{port}/metrics", mountpoint = "/" }}]\n'
        )
        results = tmp_path / "results"
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "suites/sla/test_utilisation.py", f"--cp-target={profile}",
             f"--cp-results={results}", "--cp-formats=html", "-p", "no:randomly", "-q"],
            cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    doc = json.loads(next(results.glob("*/evidence.json")).read_text())
    rows = [row for row in doc["clause_rows"] if row["id"] == "SX-SLA-3"]
    assert [row["statistic"].split(" utilisation")[0] for row in rows] == [
        "this machine CPU", "this machine memory", "this machine disk"], (rows, r.stdout[-1500:])  # fmt: skip
    assert all(row["verdict"] in ("PASS", "FAIL") for row in rows), rows
    st = os.statvfs("/")
    disk = 100 * (st.f_blocks - st.f_bavail) / st.f_blocks
    measured = float(rows[2]["measured"].split()[0])
    assert abs(measured - disk) < 1.0, (measured, disk)
