"""Backup and restore building blocks: commands timed around the command only, and work folders.

The timed window of a phase is from just before the process starts to just after it exits;
files it reads or writes are opened before the clock starts.  Nothing else runs inside it but the
child's entry in the reaper's registry (one small file written, well under a millisecond).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from clauseproof.core import reaper
from clauseproof.core.commands import fill_command
from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.embedded import FOLDER_PREFIX


@dataclass
class Phase:
    """One timed step of a backup or restore."""

    name: str
    seconds: float
    command: str

    def evidence(self) -> dict[str, Any]:
        return asdict(self)


def timed(
    name: str,
    args: list[str],
    *,
    stdout: Path | None = None,
    stdin: Path | None = None,
    shell: bool = False,
    timeout: float = 3600,
    env: dict[str, str] | None = None,
) -> Phase:
    """Run a command, timing only its run; a non-zero exit raises with its last error lines.

    The command runs in a session of its own with no terminal and (unless ``stdin`` is given) an empty standard
    input, so a tool that would prompt for a password fails at once instead of waiting for an answer; its process
    group is recorded for ``reap`` while it runs (it would outlive a SIGKILLed run) and killed whole when the run
    is interrupted or the timeout passes."""
    out: IO[bytes] | int = subprocess.PIPE
    inp: IO[bytes] | int = subprocess.DEVNULL
    try:
        if stdout is not None:
            out = open(stdout, "wb")
        if stdin is not None:
            inp = open(stdin, "rb")
        started = time.perf_counter()
        child = subprocess.Popen(
            args if not shell else args[0],
            stdout=out,
            stdin=inp,
            stderr=subprocess.PIPE,
            shell=shell,
            env=None if env is None else {**os.environ, **env},
            start_new_session=True,
        )
        reaper.register("tool", child.pid)
        try:
            _, stderr = child.communicate(timeout=timeout)
            seconds = time.perf_counter() - started
        except BaseException:  # timed out or interrupted: the command and whatever it started in its group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            raise
        finally:
            reaper.unregister(child.pid)
    except subprocess.TimeoutExpired:
        raise ClauseproofError(f"{name} did not finish within {timeout:g} s", checked=_show(args, shell)) from None
    finally:
        for f in (out, inp):
            if f is not None and not isinstance(f, int):
                f.close()
    proc = subprocess.CompletedProcess(child.args, child.returncode, None, stderr)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise ClauseproofError(
            f"{name} failed (exit {proc.returncode}): " + " / ".join(err), checked=_show(args, shell)
        )
    return Phase(name=name, seconds=round(seconds, 4), command=_show(args, shell))


def vendor_command(name: str, template: str, target: Any, values: dict[str, str | int]) -> Phase:
    """A profile's ``[commands]`` template with its placeholders filled, timed like :func:`timed`.  It runs with
    the target's password (if any) in ``PGPASSWORD`` / ``MYSQL_PWD``, where the engines' clients look for it."""
    return timed(name, [fill_command(template, **values)], shell=True, env=target._ep().client_env(target.dialect))


def _show(args: list[str], shell: bool) -> str:
    return args[0] if shell else shlex.join(args)


def size_of(path: Path) -> int:
    """Bytes of a file or of every file below a folder."""
    return written(path)[0]


def written(path: Path) -> tuple[int, int]:
    """Bytes and files of a file or of every file below a folder (0, 0 when there is nothing)."""
    if path.is_file():
        return path.stat().st_size, 1
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    return sum(p.stat().st_size for p in files), len(files)


class WorkFolder:
    """A temporary folder for backups and archives, reaped like an embedded server if the run dies."""

    def __init__(self, label: str, owner: str | None = None) -> None:
        # 0700, owned by the server's user where the harness runs as root: backups and dumps of the data are
        # for the run only (another local user could otherwise read base.tar or a dump)
        self.path = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}work-{label}-"))
        (self.path / "owner.json").write_text(json.dumps({"pid": os.getpid(), "engine": "work"}))
        if owner and os.geteuid() == 0:
            shutil.chown(self.path, user=owner)
        self.path.chmod(0o700)
        self.owner = owner

    def sub(self, name: str, *, owned: bool = False) -> Path:
        p = self.path / name
        p.mkdir(parents=True, exist_ok=True)
        if owned and self.owner:
            shutil.chown(p, user=self.owner)
        return p

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def open_for(path: Path, user: str | None) -> None:
    """Let ``user`` (the server's) read a backup the harness wrote (done outside every window)."""
    if user:
        subprocess.run(["chown", "-R", user, str(path)], check=True)
