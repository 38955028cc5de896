"""``./run test``: the self-tests in two phases, in one process that signals reach.

First every test not marked ``slow`` or ``timing``, on parallel workers (pytest-xdist, ``--dist loadfile``: a module's
tests on one worker, so its cluster starts once; most of a self-test's time is spent waiting on a loopback server or
a child run, so the cores are idle much of the time); then the ``timing`` tests alone, so that no other test's load
moves their figures.

Ctrl-C reaches pytest directly (one process group); SIGTERM and SIGHUP sent to this process are passed on to the
running phase (a SIGHUP this process inherited ignored, as under ``nohup``, stays ignored). Exit status: 2 as soon as
a phase was interrupted; otherwise 0 only when both phases passed (a phase that selects nothing, as for one file of
the other kind, counts as passed); 5 when neither selected anything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType

PHASES = (
    ("parallel", ["-m", "not slow and not timing", "-n", os.environ.get("CLAUSEPROOF_TEST_WORKERS", "3"),
                  "--dist", "loadfile"]),
    ("timing", ["-m", "not slow and timing"]),
)  # fmt: skip


def main(argv: list[str]) -> int:
    child: subprocess.Popen[bytes] | None = None
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, forward)
    started, codes = time.monotonic(), []
    for name, options in PHASES:
        if stopping:
            return 2
        if name == "timing":
            print("[run] the timing-dependent self-tests, alone", file=sys.stderr, flush=True)
        child = subprocess.Popen([sys.executable, "-m", "pytest", *options, *argv])
        while True:
            try:
                rc = child.wait()
                break
            except KeyboardInterrupt:  # Ctrl-C reached pytest as well: it cleans up, then ends with 2
                stopping = True
        if rc == 2 or stopping:
            return 2
        codes.append(rc)
    print(f"[run] self-tests: parallel phase exit {codes[0]}, timing phase exit {codes[1]}, "
          f"{time.monotonic() - started:.0f} s", file=sys.stderr)  # fmt: skip
    if codes == [5, 5]:
        return 5
    return next((rc for rc in codes if rc not in (0, 5)), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
