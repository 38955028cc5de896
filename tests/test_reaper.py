"""What a run starts in the background dies with it, or is reaped after a SIGKILL: whole process groups, their
shared memory and folders, found through a registry kept outside the folders a clean-up deletes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from clauseproof.core import reaper

#: A group leader that creates a System V shared-memory segment (as pgpool-II does) and two children.
LEADER = textwrap.dedent(
    """
    import ctypes, subprocess, sys, time
    libc = ctypes.CDLL(None)
    shmid = libc.shmget(0, 1 << 20, 0o1000 | 0o600)  # IPC_PRIVATE, IPC_CREAT
    print(shmid, flush=True)
    kids = [subprocess.Popen(["sleep", "300"]) for _ in range(2)]
    time.sleep(300)
    """
)

OWNER = textwrap.dedent(
    """
    import subprocess, sys, time
    from pathlib import Path
    from clauseproof.core import reaper
    leader = subprocess.Popen([sys.executable, "-c", sys.argv[1]], start_new_session=True, stdout=subprocess.PIPE)
    shmid = leader.stdout.readline().decode().strip()
    reaper.register("test-proxy", leader.pid, Path(sys.argv[2]))
    print(leader.pid, shmid, flush=True)
    time.sleep(300)
    """
)


def _shm_ids() -> set[int]:
    lines = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    return {int(line.split()[1]) for line in lines}


def test_a_killed_runs_process_group_shared_memory_and_folder_are_reaped() -> None:
    folder = Path(tempfile.mkdtemp(prefix="clauseproof-test-reap-"))
    owner = subprocess.Popen([sys.executable, "-c", OWNER, LEADER, str(folder)], stdout=subprocess.PIPE)
    assert owner.stdout is not None
    pgid, shmid = (int(x) for x in owner.stdout.readline().split())
    deadline = time.monotonic() + 10
    while len(reaper.group_members(pgid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(reaper.group_members(pgid)) == 3 and shmid in _shm_ids()
    os.kill(owner.pid, signal.SIGKILL)  # the run dies without cleaning up; its proxy group lives on
    owner.wait()
    assert len(reaper.group_members(pgid)) == 3
    reaped = reaper.reap_registered()
    assert any("test-proxy" in r for r in reaped)
    assert reaper.group_members(pgid) == [] and shmid not in _shm_ids() and not folder.exists()
    assert reaper.reap_registered() == []  # the entry is gone too


def test_a_live_runs_processes_are_left_alone() -> None:
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        reaper.register("mine", proc.pid)
        assert reaper.reap_registered() == [] and proc.poll() is None
    finally:
        reaper.unregister(proc.pid)
        proc.kill()
        proc.wait()


def test_a_load_generator_dies_with_its_parent_even_after_a_sigkill() -> None:
    child = "from clauseproof.core.reaper import die_with_parent; import os, sys, time; "
    child += "die_with_parent(int(sys.argv[1]));"
    child += " print(os.getpid(), flush=True); time.sleep(60)"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, subprocess, sys, time; subprocess.Popen([sys.executable, '-c', sys.argv[1], str(os.getpid())]);"
            " time.sleep(60)",
            child,
        ],
        stdout=subprocess.PIPE,
    )
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}").exists() else ""
    assert stat == "" or stat[stat.rindex(")") + 2] == "Z"  # gone (or a zombie awaiting its new parent)


def test_two_runs_sharing_a_cache_take_the_data_directory_in_turn(tmp_path: Path) -> None:
    """The cached 1 GiB data directory is built and copied under a lock: a second run waits for the first
    (two runs used to both build it, and one deleted the directory the other was copying)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from clauseproof.bulk_load import bigdata\n"
            "with bigdata.cache_lock(Path(sys.argv[1]), 'k'):\n    print('held', flush=True); time.sleep(1.5)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
    from clauseproof.bulk_load import bigdata

    started = time.monotonic()
    with bigdata.cache_lock(tmp_path, "k"):
        waited = time.monotonic() - started
    holder.wait()
    assert waited > 0.5  # it waited for the other run's hold to end
