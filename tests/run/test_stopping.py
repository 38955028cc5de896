"""Stopping a run in the ways people stop runs: each signal reaches pytest through ./run, cases clean up, and the
bundle says the run was interrupted (exit status 2)."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import select
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from clauseproof.targets.host.folders import FOLDER_PREFIX
from tests.fix_targets import ROOT, signals_as_in_a_terminal


def _wait_for(proc: subprocess.Popen[bytes], text: bytes, limit_s: float = 120) -> bytes:
    seen = b""
    deadline = time.monotonic() + limit_s
    assert proc.stdout is not None
    while text not in seen:
        assert time.monotonic() < deadline, seen[-2000:]
        ready, _, _ = select.select([proc.stdout], [], [], 1)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, seen[-2000:]  # the run ended before it got there
            seen += chunk
    return seen


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_to_run_interrupts_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [str(ROOT / "run"), "accept", "suites/bulk_load", "--cp-target=embedded-postgresql", f"--cp-results={results}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=signals_as_in_a_terminal,
    )
    try:
        _wait_for(proc, b"ready in")  # the server is up and a case is about to run
        time.sleep(1)
        os.kill(proc.pid, sig)  # the pid of ./run, which is pytest now
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert rc == pytest.ExitCode.INTERRUPTED
    (bundle,) = results.glob("*/evidence.json")  # written although nothing was judged (latest is not moved then)
    doc = json.loads(bundle.read_text())
    assert doc["interrupted"]["by"] == ("SIGINT (Ctrl-C)" if sig == signal.SIGINT else sig.name)
    assert doc["interrupted"]["during"].startswith("suites/bulk_load/")
    not_run = [r for r in doc["clause_rows"] if r["reason"].startswith("not run: interrupted")]
    assert not_run  # unreached cases say so, not "deselected"
    assert _folders_of(proc.pid) == []  # the embedded server was stopped and its folder removed


def _folders_of(pid: int) -> list[str]:
    """Embedded-server folders whose owner was ``pid``."""
    out = []
    for f in glob.glob(os.path.join(tempfile.gettempdir(), FOLDER_PREFIX + "*")):
        with contextlib.suppress(OSError):
            if f'"pid": {pid}' in Path(f, "owner.json").read_text():
                out.append(f)
    return out
