"""The set-up command's own logic (issue 31 item 7, issue 32): what the arguments make it install, one set-up at a
time per checkout, and the policy-rc.d it writes removed whatever happens — run on the functions of ./run itself."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ("log", "policy_on", "policy_off", "setup_locked", "wants_suite", "wants_containers")


def _bash(script: str, *args: str, cwd: Path = ROOT, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``script`` run with the named functions of ./run defined (taken from the file, not copied)."""
    text = (ROOT / "run").read_text()
    defs = []
    for name in FUNCTIONS:
        start = text.index(f"\n{name}() {{") + 1
        defs.append(text[start : text.index("\n}\n", start) + 3])
    mark = next(line for line in text.splitlines() if line.startswith("POLICY_MARK="))
    head = f"set -euo pipefail\nSUDO=()\nLOCK=.run.lock\n{mark}\n"
    return subprocess.run(["bash", "-c", head + "".join(defs) + script, "run", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "wanted"),
    [
        (["--cp-target=containers-postgresql"], True),
        (["--cp-target", "embedded-mariadb,containers-mariadb"], True),
        (["-k", "not containers"], False),  # a word in a -k expression used to install and start Docker
        (["suites/containers_notes", "--cp-target=embedded-postgresql"], False),
        (["--cp-target=my-containers-profile.toml"], False),
    ],
)
def test_only_a_container_target_brings_the_docker_engine(args: list[str], wanted: bool) -> None:
    assert (_bash('wants_containers "$@"', *args).returncode == 0) is wanted


@pytest.mark.parametrize(
    ("args", "wanted"),
    [([], True), (["suites"], True), (["suites/gateway"], True), (["suites/gateway/test_openai.py", "-x"], True),
     (["suites/backup"], False), (["suites/backup", "-k", "gateway"], False)],
)  # fmt: skip
def test_the_model_gateway_is_installed_only_for_the_gateway_suite(args: list[str], wanted: bool) -> None:
    assert (_bash('wants_suite gateway "$@"', *args).returncode == 0) is wanted


def test_two_set_ups_at_once_take_turns_and_the_second_says_it_waits(tmp_path: Path) -> None:
    step = (
        'work() { echo "start $1" >> steps; sleep 1; echo "end $1" >> steps; }; POLICY=./policy; setup_locked work "$1"'
    )
    started = time.monotonic()
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    def go(name: str) -> None:
        results[name] = _bash(step, name, cwd=tmp_path)

    threads = [threading.Thread(target=go, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
        time.sleep(0.2)
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results.values()), results
    lines = (tmp_path / "steps").read_text().split()
    assert lines in (["start", "a", "end", "a", "start", "b", "end", "b"],
                     ["start", "b", "end", "b", "start", "a", "end", "a"])  # fmt: skip
    assert "waiting for it to finish" in results["b"].stderr
    assert time.monotonic() - started >= 2.0  # one after the other


def test_policy_rc_d_is_ours_to_remove_and_the_machines_own_is_left(tmp_path: Path) -> None:
    on_off = 'POLICY=./policy; policy_on; test -x ./policy; grep -q "exit 101" ./policy; policy_off; test ! -e ./policy'
    r = _bash(on_off, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (tmp_path / "policy").write_text("#!/bin/sh\nexit 0\n")  # the machine's own
    r = _bash("POLICY=./policy; policy_on; policy_off; cat ./policy", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == "#!/bin/sh\nexit 0\n"
    # one a SIGKILLed ./run left is removed by the next set-up, under the lock
    r = _bash("POLICY=./policy2; policy_on; setup_locked true; test ! -e ./policy2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_the_two_phases_pass_when_one_selects_nothing_and_say_so() -> None:
    """``./run test <file>`` of one kind: the other phase selects nothing (pytest's 5), and the run passes."""
    done = subprocess.run(
        [sys.executable, "tests/phases.py", "tests/core/test_archive.py", "-q", "-p", "no:randomly"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "parallel phase exit 0, timing phase exit 5" in done.stderr
