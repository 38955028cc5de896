"""The OLTP workload and the background load: contract, errors reported, stalls seen, distributed runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clauseproof.load.background import LOCUSTFILE, BackgroundLoad, target_url
from clauseproof.targets.base import Target
from clauseproof.workloads import oltp

SCHEMA = "clauseproof_selftest"


@pytest.fixture(params=["pg_server", "mariadb_server"])
def server(request: pytest.FixtureRequest) -> Target:
    t: Target = request.getfixturevalue(request.param)
    with t.connect() as conn:
        oltp.populate(conn, t.dialect, SCHEMA, settlements=1000)
    return t


def _env(target: Target) -> dict[str, str]:
    """Locust's environment: the target's password where the workload looks for it (never in --host)."""
    return {**os.environ, "CLAUSEPROOF_PASSWORD": target._ep().password or ""}


def _locust(target: Target, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", target_url(target), "--cp-schema", SCHEMA]
    return subprocess.run(
        [*cmd, *args],
        cwd=LOCUSTFILE.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=_env(target),
    )


def _series(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_workload_contract(server: Target, tmp_path: Path) -> None:
    """Every operation runs and is reported with its name, a float latency, and no failure."""
    series = tmp_path / "s.jsonl"
    out = _locust(server, "--headless", "-u", "4", "-r", "4", "-t", "3s", "--only-summary", "--cp-series", str(series))
    assert out.returncode == 0, out.stderr[-2000:]
    lines = _series(series)
    seen = {name for line in lines for name in line["requests"]}
    assert seen == set(oltp.OPERATIONS)
    assert not any(line["failures"] for line in lines), [line["errors"][:2] for line in lines]
    assert all(isinstance(ms, float) for line in lines for _, ms in line["writes"])
    with server.connect() as conn:
        assert oltp.fund_total(conn, SCHEMA) == oltp.ACCOUNTS * 1_000_000  # transfers conserve money


def test_errors_are_reported_not_swallowed(pg_server: Target, tmp_path: Path) -> None:
    series = tmp_path / "s.jsonl"
    cmd = ["--headless", "-u", "2", "-r", "2", "-t", "2s", "--only-summary", "--cp-series", str(series)]
    out = _locust(pg_server, *cmd, "--cp-schema", "clauseproof_no_such_schema")
    assert out.returncode == 1, out.stderr[-3000:]  # Locust's exit status when requests failed
    errors = [e for line in _series(series) for e in line["errors"]]
    assert errors and all("UndefinedTable" in e and "clauseproof_no_such_schema" in e for e in errors)


def test_bad_weights_are_named(pg_server: Target) -> None:
    out = _locust(pg_server, "--headless", "-u", "1", "-t", "1s", "--cp-weights", "settle=4,delete=2")
    assert out.returncode != 0
    assert "bad weight 'delete=2'" in out.stderr + out.stdout


@pytest.mark.timing  # a 2 s lock shows as a commit gap > 1.8 s; quiet < 0.5 s
@pytest.mark.parametrize("rate", [0.0, 50.0])
def test_a_stall_is_seen_as_a_commit_gap_and_as_latency(pg_server: Target, rate: float) -> None:
    """Positive control of SX-RDS-6's measure: a table lock held 2 s stalls the writes, and the window shows it.

    Open loop (rate > 0): the offered load is kept during the stall, so it shows as latency."""
    with pg_server.connect() as conn:
        oltp.populate(conn, pg_server.dialect, SCHEMA, settlements=1000)
    load = BackgroundLoad(pg_server, SCHEMA, users=4, rate_per_user=rate, weights="settle=1", limit_s=60)
    load.start()
    try:
        time.sleep(1)
        with load.window("quiet"):
            time.sleep(2)
        with pg_server.connect() as conn, conn.cursor() as cur, load.window("locked"):
            cur.execute("BEGIN")
            cur.execute(f"LOCK TABLE {SCHEMA}.oltp_settlement IN ACCESS EXCLUSIVE MODE")
            time.sleep(2)
            cur.execute("COMMIT")
            time.sleep(1)
    finally:
        result = load.stop()
    quiet, locked = (result.window_stats(w) for w in result.windows)
    assert quiet["max_commit_gap_s"] < 0.5 and quiet["errors"] == 0
    assert locked["max_commit_gap_s"] > 1.8
    assert locked["write_max_ms"] > 1800
    if rate:
        offered = 4 * rate * locked["seconds"]
        assert locked["writes"] > 0.8 * offered  # the stall did not lower the offered load
    assert result.series()["requests_per_s"]


def test_distributed_master_and_two_workers(pg_server: Target, tmp_path: Path) -> None:
    """Locust's own master/worker mode, two local workers, each writing its own series."""
    with pg_server.connect() as conn:
        oltp.populate(conn, pg_server.dialect, SCHEMA, settlements=1000)
    port = str(_free_port())
    series = str(tmp_path / "w-{pid}.jsonl")
    common = ["--cp-series", series, "--master-bind-host", "127.0.0.1", "--master-bind-port", port]
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(LOCUSTFILE),
                "--worker",
                "--master-host",
                "127.0.0.1",
                "--master-port",
                port,
                "--cp-series",
                series,
                "--cp-schema",
                SCHEMA,
            ],
            cwd=LOCUSTFILE.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_env(pg_server),
        )
        for _ in range(2)
    ]
    try:
        out = _locust(
            pg_server, "--master", "--headless", "--expect-workers", "2", "-u", "6", "-r", "6", "-t", "4s",
            "--csv", str(tmp_path / "stats"), *common,
        )  # fmt: skip
    finally:
        for w in workers:
            w.wait(timeout=30)
    assert out.returncode == 0, out.stderr[-2000:]
    files = sorted(tmp_path.glob("w-*.jsonl"))
    assert len(files) == 2
    per_worker = [sum(sum(line["requests"].values()) for line in _series(f)) for f in files]
    stats = (tmp_path / "stats_stats.csv").read_text().splitlines()
    total = int(next(x for x in stats if ",Aggregated," in x).split(",")[2])
    assert all(n > 0 for n in per_worker)
    assert abs(total - sum(per_worker)) <= 0.02 * total + 10  # the master's totals are the workers' requests


def _free_port() -> int:
    from clauseproof.targets.host.folders import free_port

    return free_port()


def test_web_ui_serves_on_loopback(pg_server: Target) -> None:
    """The standalone run with Locust's web UI (bound to 127.0.0.1) comes up and serves its page."""
    import urllib.request

    port = _free_port()
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", target_url(pg_server)]
    proc = subprocess.Popen(
        [*cmd, "--cp-schema", SCHEMA, "--web-host", "127.0.0.1", "--web-port", str(port)],
        cwd=LOCUSTFILE.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(pg_server),
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    assert r.status == 200 and b"Locust" in r.read()
                    break
            except OSError:
                assert time.monotonic() < deadline, "the web UI did not come up within 30 s"
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_broken_connections_are_reported_and_replaced(pg_server: Target) -> None:
    """Server-side terminated sessions: each failed request is reported, and the users reconnect and go on (through
    the workload's own gevent waits: a broken socket under a reused watcher).  The generator pinned where asked,
    and its cost counted."""
    with pg_server.connect() as conn:
        oltp.populate(conn, pg_server.dialect, SCHEMA, settlements=1000)
    cpu = min(os.sched_getaffinity(0))
    load = BackgroundLoad(pg_server, SCHEMA, users=4, weights="lookup=1", limit_s=60, cpus=str(cpu))
    load.start()
    try:
        assert all(os.sched_getaffinity(p.pid) == {cpu} for p in load.procs)
        time.sleep(1)
        with pg_server.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' AND datname = 'postgres'"
            )
            killed = cur.fetchone()[0]
        time.sleep(0.5)
        with load.window("after"):
            time.sleep(1.5)
    finally:
        result = load.stop()
    assert killed >= 4
    errors = result.errors()
    assert errors and all("lookup:" in e for e in errors)
    assert len(errors) <= killed  # one failed request per broken connection, no retry storm
    assert result.window_stats(result.windows[0])["requests_approx"] > 0  # the users went on
    client = result.client()
    assert client["requests"] > 0 and client["cpu_ms_per_1000_requests"] > 0
