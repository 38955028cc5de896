"""What a run starts in the background dies with it, or is reaped after a SIGKILL: whole process groups, their
shared memory and folders, found through a registry kept outside the folders a clean-up deletes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clauseproof.core import reaper
from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.host import folders as embedded

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


# --- an unfriendly local user cannot steer root's reaper (issue 31, item 1) ---------------------------------------

NOBODY = 65534


def _as_nobody(code: str, *args: str) -> None:
    """Run ``code`` as uid/gid 65534, the unprivileged local user of these attacks."""
    # the system's Python: the harness's may live in a folder only root may enter
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    subprocess.run(
        [python, "-c", f"import os, sys; os.setgid({NOBODY}); os.setuid({NOBODY})\n{code}", *args],
        check=True,
        timeout=30,
    )


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder like /tmp: every local user may make things in it (mode 1777)."""
    if os.geteuid() != 0:
        pytest.skip("the attacks need a second local user: run as root")
    path = Path(tempfile.mkdtemp(prefix="cp-selftest-shared-"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("how", ["another owner", "open to others", "a link"])
def test_a_runtime_folder_someone_else_made_first_is_refused(
    how: str, shared_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted = shared_tmp / "runtime"
    if how == "another owner":
        _as_nobody("os.mkdir(sys.argv[1], 0o700)", str(planted))
    elif how == "open to others":
        planted.mkdir(mode=0o755)
        planted.chmod(0o755)
    else:
        _as_nobody("os.mkdir(sys.argv[1] + '-x', 0o700); os.symlink(sys.argv[1] + '-x', sys.argv[1])", str(planted))
    monkeypatch.setenv(reaper.RUNTIME_ENV, str(planted))
    with pytest.raises(ClauseproofError, match="is not private") as caught:
        reaper.registry()
    assert {"another owner": "belongs to uid 65534", "open to others": "mode 0755", "a link": "not a folder"}[how] in (
        str(caught.value)
    )


def test_the_default_runtime_folder_is_private(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(reaper.RUNTIME_ENV, raising=False)
    st = os.lstat(reaper.registry())
    assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o700
    if os.geteuid() == 0:
        assert str(reaper.registry()).startswith("/run/")  # no shared temp folder a user could take first


def test_a_folder_planted_in_the_shared_temp_folder_makes_root_kill_and_delete_nothing(shared_tmp: Path) -> None:
    """The planted folder's name begins the name of a live server's folder of root's, its owner.json names a dead
    run, a pid file names the server: the reaper leaves the server running and the folder where it is; the same
    folder made by the harness itself (owner.json written by this user) is reaped — the positive control."""
    tmp_path = shared_tmp
    live = tmp_path / "clauseproof-postgresql-abcdef"
    (live / "data").mkdir(parents=True)
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(live / "data")])
    try:
        planted = tmp_path / "clauseproof-postgresql-abc"
        _as_nobody(
            "from pathlib import Path; p = Path(sys.argv[1]); p.mkdir()\n"
            "(p / 'owner.json').write_text('{\"pid\": 999999999}'); (p / 'x.pid').write_text(sys.argv[2])",
            str(planted),
            str(server.pid),
        )
        assert str(planted) not in embedded.reap_stale(str(tmp_path))
        assert server.poll() is None and planted.exists() and live.exists()
        (live / "owner.json").write_text('{"pid": 999999999}')  # now the harness's own folder of a dead run
        reaped = embedded.reap_stale(str(tmp_path))
        assert str(live) in reaped and str(planted) not in reaped
        assert server.wait(timeout=10) is not None and not live.exists() and planted.exists()
    finally:
        server.kill()
        server.wait()


def test_a_registry_entry_naming_what_the_harness_does_not_make_is_not_acted_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: an entry of a dead owner that names a folder not called clauseproof-*, a link, or a bridge
    and namespaces the harness does not name so deletes nothing and runs no `ip`."""
    runtime = tmp_path / "rt"
    monkeypatch.setenv(reaper.RUNTIME_ENV, str(runtime))
    precious = tmp_path / "precious"
    precious.mkdir()
    linked = tmp_path / "clauseproof-link"
    linked.symlink_to(precious)
    dead = {"owner": 999999999, "owner_start": 1}
    reg = reaper.registry()
    for i, folder in enumerate([precious, linked]):
        (reg / f"999999999-{i + 2}.json").write_text(json.dumps({**dead, "kind": "x", "pid": 999999990 + i,
                                                                  "start": 1, "folder": str(folder)}))  # fmt: skip
    (reg / "net-999999999-abc.json").write_text(json.dumps({**dead, "kind": "network", "bridge": "eth0",
                                                             "namespaces": ["default"]}))  # fmt: skip
    (reg / "999999999-9.json").symlink_to(precious / "nothing.json")
    calls: list[list[str]] = []
    monkeypatch.setattr(reaper.subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    reaper.reap_registered()
    assert precious.is_dir() and linked.is_symlink() and calls == []


def test_an_entry_for_a_pid_now_running_another_program_kills_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(reaper.RUNTIME_ENV, str(tmp_path / "rt"))
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        entry = {"kind": "proxy", "pid": other.pid, "start": reaper._start_time(other.pid), "owner": 999999999,
                 "owner_start": 1, "command": "/usr/sbin/haproxy", "folder": None}  # fmt: skip
        (reaper.registry() / f"999999999-{other.pid}.json").write_text(json.dumps(entry))
        reaper.reap_registered()
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
