"""SX-SLA-1/2's probe and judgement: the log is append-only and resumes after a stop, a SIGTERM or a SIGKILL
(a cut-off line dropped and said so); gaps while no probe ran count neither up nor down; a short run is NOT
EVIDENCE saying how long would decide it; a down endpoint is FAIL; bad input is a clear error."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clauseproof.core.errors import ClauseproofError
from clauseproof.sla import availability as av

PG = "postgresql://postgres@127.0.0.1:5432/postgres"  # the machine's own PostgreSQL: an external target here


def _log(n_up: int, n_down: int, interval: float = 10.0, gap_slots: int = 0) -> av.Log:
    eps = [{"name": "db", "kind": "sql", "url": PG}, {"name": "web", "kind": "http", "url": "http://x/"}]
    h = {"kind": "clauseproof-probe", "version": 1, "started": 0.0, "interval_s": interval, "for_s": 1e9,
         "endpoints": eps}  # fmt: skip
    log = av.Log(h)
    slot = 1
    for i in range(n_up + n_down):
        if i == n_up // 2:
            slot += gap_slots
        for ep in ("db", "web"):
            log.results.append({"t": slot * interval, "slot": slot, "ep": ep, "ok": ep == "web" or i < n_up})
        slot += 1
    return log


def test_a_month_without_failure_passes() -> None:
    js = av.judge(_log(259_200, 0), 99.9, 30 * 86400, 0.95)  # 30 days every 10 s
    assert [j.verdict for j in js] == ["PASS", "PASS", "PASS"]


def test_a_month_at_99_percent_fails() -> None:
    js = av.judge(_log(256_608, 2_592), 99.9, 30 * 86400, 0.95)
    assert js[0].verdict == "FAIL" and js[1].verdict == "FAIL" and js[2].verdict == "PASS"
    assert "upper bound" in js[0].reason


def test_a_short_run_is_not_evidence_and_says_how_long_would_decide() -> None:
    js = av.judge(_log(30, 0, interval=0.5), 99.9, 30 * 86400, 0.95)
    assert js[0].verdict == "NOT EVIDENCE"
    assert "cover 15.0 s of the clause's period of 30.0 days" in js[0].reason
    assert "3,688 probes" in js[0].reason  # (0.025)^(1/n) ≥ 0.999


def test_a_gap_while_the_prober_was_down_counts_neither_way() -> None:
    """The cheat: stop the prober during an outage.  The unprobed slots are reported, not counted as up, and
    the covered time falls short of the period."""
    js = av.judge(_log(259_200 - 8640, 0, gap_slots=8640), 99.9, 30 * 86400, 0.95)  # a day not probed
    assert js[0].verdict == "NOT EVIDENCE"
    assert "1.0 days not probed" in js[0].statistic() and "29.0 days of the clause's period" in js[0].reason


def test_probe_resumes_its_log_after_a_stop(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    ep = [av.endpoint("sql", PG)]
    stop = threading.Event()
    threading.Timer(1.1, stop.set).start()
    first = av.run_probe(path, ep, interval_s=0.25, for_s=3.0, stop=stop, say=lambda s: None)
    assert first.results and all(r["ok"] for r in first.results)
    again = av.run_probe(path, ep, interval_s=0.25, for_s=3.0, say=lambda s: None)
    log = av.read_log(path, av.default_probe_key())
    assert [e["event"] for e in log.events] == ["start", "stop", "resume", "stop"]
    slots = [r["slot"] for r in log.results]
    assert slots == sorted(set(slots)) and max(slots) >= 10  # one line per slot, on to the end
    assert len(again.results) == len(log.results)
    assert log.header["started"] == first.header["started"]  # --for counts from the first start


def test_a_log_of_other_endpoints_is_not_resumed(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    av.run_probe(path, [av.endpoint("sql", PG)], interval_s=0.2, for_s=0.5, say=lambda s: None)
    with pytest.raises(ClauseproofError, match="not what was asked"):
        av.run_probe(path, [av.endpoint("http", "http://127.0.0.1:9/")], interval_s=0.2, for_s=0.5)


def test_a_down_endpoint_is_probed_as_down(tmp_path: Path) -> None:
    log = av.run_probe(tmp_path / "p.jsonl", [av.endpoint("sql", "postgresql://u@127.0.0.1:9/x")],
                       interval_s=0.2, for_s=1.0, say=lambda s: None)  # fmt: skip
    assert log.results and not any(r["ok"] for r in log.results)
    assert "OperationalError" in log.results[0]["err"]


@pytest.mark.parametrize(
    ("kind", "url", "says"),
    [
        ("sql", "postgresql://u:secret@db:5432/x", "a password in the URL would be written to the log"),
        ("sql", "oracle://db/x", "not a postgresql:// or mysql:// URL"),
        ("http", "ftp://x/", "not an http(s) URL"),
    ],
)
def test_bad_endpoints_are_clear_errors(kind: str, url: str, says: str) -> None:
    with pytest.raises(ClauseproofError, match=re.escape(says)):
        av.endpoint(kind, url)


def test_durations() -> None:
    assert [av.parse_duration(x) for x in ("30d", "12h", "15m", "10s", "500ms", "90")] == [
        2_592_000, 43_200, 900, 10, 0.5, 90]  # fmt: skip
    with pytest.raises(ClauseproofError, match="not a duration"):
        av.parse_duration("a month")


def _cli(path: Path, for_s: str = "20s") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "clauseproof.cli", "probe", "--sql", PG, "--for", for_s, "--interval", "0.2s",
         "--log", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_rounds(path: Path, n: int) -> None:
    deadline = time.monotonic() + 20
    while not (path.exists() and path.read_text().count('"slot"') >= n):
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_stops_the_probe_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    path = tmp_path / "p.jsonl"
    proc = _cli(path)
    _wait_rounds(path, 3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    log = av.read_log(path, av.default_probe_key())
    assert log.events[-1]["event"] == "stop" and not log.events[-1]["complete"]
    assert "probes logged" in out


def test_sigkill_loses_at_most_the_line_being_written_and_the_probe_resumes(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    proc = _cli(path, "4s")
    _wait_rounds(path, 3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with open(path, "a") as f:  # a kill in the middle of a write
        f.write('{"t": 1, "slot": 99, "ep": "sql 12')
    before = av.read_log(path, av.default_probe_key())
    assert before.dropped_partial
    proc = _cli(path, "4s")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    log = av.read_log(path, av.default_probe_key())
    assert not log.dropped_partial
    resume = next(e for e in log.events if e["event"] == "resume")
    assert resume["dropped_partial_line"] is True
    assert all(json.loads(line) for line in path.read_text().splitlines())
    assert log.events[-1]["complete"] is True


# --- a log that is not one honest probe's record (issue 31, low) -----------------------------------------------------


def _honest(tmp_path: Path) -> Path:
    path = tmp_path / "p.jsonl"
    av.run_probe(path, [av.endpoint("sql", "postgresql://u@127.0.0.1:9/x")], interval_s=0.1, for_s=0.6,
                 timeout_s=0.05, say=lambda s: None)  # fmt: skip
    return path


def test_an_edited_log_is_refused_with_the_line(tmp_path: Path) -> None:
    """The cheapest cheat: turn the failed probes into successes.  The chain breaks at the first edited line."""
    path = _honest(tmp_path)
    key = av.default_probe_key()
    assert not any(r["ok"] for r in av.read_log(path, key).results)  # port 9: every probe failed
    lines = path.read_text().splitlines()
    n = next(i for i, line in enumerate(lines) if '"ok":false' in line)
    lines[n] = lines[n].replace('"ok":false', '"ok":true')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ClauseproofError, match=rf"p.jsonl:{n + 1}: its HMAC does not follow"):
        av.read_log(path, key)
    del lines[n]  # a line removed instead
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ClauseproofError, match="HMAC does not follow"):
        av.read_log(path, key)


def test_a_log_made_without_the_testers_key_is_refused(tmp_path: Path) -> None:
    """A vendor writes a month of successes with a key of its own (a fabricated, self-consistent chain)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    forged = av.ProbeKey.from_signing_key(Ed25519PrivateKey.generate())
    path = tmp_path / "forged.jsonl"
    ep = av.endpoint("sql", PG)
    w, log = av.open_log(path, [ep], 10.0, 30 * 86400.0, forged)
    for slot in range(1, 50):
        w.write({"t": log.header["started"] + 10.0 * slot, "slot": slot, "ep": ep.name, "ok": True, "ms": 1.0})
    w.close()
    assert av.read_log(path, forged).header["keyed_by"] == forged.fingerprint  # consistent with its own key
    with pytest.raises(ClauseproofError, match=r"written with the key SHA256:.*not this tester's"):
        av.read_log(path, av.default_probe_key())


def test_a_slot_counted_twice_or_off_the_grid_is_refused(tmp_path: Path) -> None:
    """Even with the tester's key (a prober bug, or a tester's own tool): each slot once, on the grid, in order."""
    key = av.default_probe_key()
    for rows, says in (
        ([(1, 10.0), (1, 10.0)], "slot 1 of .* again"),
        ([(2, 20.0), (1, 10.0)], "slot 1 of .* again, or out of order"),
        ([(1, 17.0)], "slot 1 is not on the probe's grid"),
        ([(10**9, 1e10)], "not on the probe's grid"),
    ):
        path = tmp_path / "p.jsonl"
        path.unlink(missing_ok=True)
        ep = av.endpoint("sql", PG)
        w, log = av.open_log(path, [ep], 10.0, 3600.0, key)
        started = log.header["started"]
        for slot, offset in rows:
            w.write({"t": started + offset, "slot": slot, "ep": ep.name, "ok": True, "ms": 1.0})
        w.close()
        with pytest.raises(ClauseproofError, match=says):
            av.read_log(path, key)


def test_a_log_of_another_system_is_not_this_targets() -> None:
    log = _log(10, 0)
    assert av.probes_target(log, "127.0.0.1", 5432)
    assert not av.probes_target(log, "127.0.0.1", 5433) and not av.probes_target(log, "10.0.0.1", 5432)
