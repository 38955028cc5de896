"""Processes the harness starts and owns (gateways, their upstreams, the columnar checker target): each in a
session of its own inside a private ``clauseproof-*`` folder, registered with the reaper, waited for until it
listens, stopped together and the folder removed — on :meth:`OwnProcesses.stop`, on Ctrl-C/SIGTERM and by
``clauseproof reap``."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clauseproof.core import masking, reaper, shipped
from clauseproof.core.errors import ClauseproofError

if TYPE_CHECKING:
    from clauseproof.targets.base import Target
    from clauseproof.targets.single.postgres import EmbeddedPostgres

START_TIMEOUT_S = 15

#: the start of every nginx configuration the harness writes (the embedded gateway and the model gateway's
#: controls): one worker in the foreground, every file in the process's folder; a ``str.format`` template
NGINX_HEAD = """\
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {folder}/tmp-body;
    proxy_temp_path {folder}/tmp-proxy;
    fastcgi_temp_path {folder}/tmp-fastcgi;
    uwsgi_temp_path {folder}/tmp-uwsgi;
    scgi_temp_path {folder}/tmp-scgi;
"""


def service_user(name: str) -> str | None:
    """``name`` where the harness runs as root and the machine has that user (Debian's ``haproxy``, ``www-data``):
    the user a server of the harness's runs as instead of root; None otherwise (the harness's own user then)."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return None
    return name


#: The secret of this harness process's own HTTP servers (``clauseproof.workloads.serve``): their control routes
#: answer only a request that carries it (:func:`service_headers`); never recorded (masking knows it).
SERVICE_SECRET = masking.new_secret(16)


def service_headers() -> dict[str, str]:
    """The headers a request to the control routes of the harness's own servers carries."""
    return {"X-Clauseproof-Secret": SERVICE_SECRET}


#: The OS user the harness's own code runs as in its children (the streaming upstream, the fake model vendors,
#: LiteLLM, the load generators, the binlog capture) where the harness runs as root: ``./run`` makes it (a system
#: user with no shell and no home), so that no other service's user (``nobody`` is shared) can touch what they write.
OWN_CODE_USER = "clauseproof"


def _others_can_reach(path: Path) -> str:
    """'' when a user with no group in common can reach ``path`` (every folder on the way searchable, the file
    itself readable); otherwise the first place on the way that stops them."""
    path = path.resolve()
    for step in [*reversed(path.parents), path]:
        try:
            mode = step.stat().st_mode
        except OSError as exc:
            return f"{step}: {exc.strerror}"
        need = 0o005 if step.is_dir() else 0o004
        if mode & need != need:
            return f"{step} (mode {mode & 0o777:o}) is closed to other users"
    return ""


class OwnCodeUser:
    """Who the harness's own code runs as in a child: :data:`OWN_CODE_USER` where the harness runs as root and
    that user can run this interpreter and checkout; otherwise the harness's own user, with the reason said once
    (in the log, and in the evidence through :attr:`fact`)."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.why_not = ""
        if os.geteuid() != 0:
            self.why_not = "the harness does not run as root"
            return
        import pwd

        try:
            entry = pwd.getpwnam(OWN_CODE_USER)
        except KeyError:
            self.why_not = f"there is no user {OWN_CODE_USER!r} (./run makes it: useradd --system {OWN_CODE_USER})"
            return
        for what, path in (("the interpreter", Path(sys.executable)), ("the package", shipped.WORKLOADS),
                           ("the packages", Path(sys.prefix)), ("the packages", Path(sys.base_prefix))):  # fmt: skip
            problem = _others_can_reach(path)
            if problem:
                self.why_not = (f"{OWN_CODE_USER} cannot reach {what}: {problem} (build the virtualenv with "
                                "/usr/bin/python3 in a checkout other users can read, as ./run does)")  # fmt: skip
                return
        self.name, self.uid, self.gid = OWN_CODE_USER, entry.pw_uid, entry.pw_gid

    @property
    def fact(self) -> str:
        if self.name:
            return f"the harness's own servers and load generators run as {self.name!r}, not root"
        if os.geteuid() != 0:
            return "the harness's own servers and load generators run as the harness's user"
        return f"the harness's own servers and load generators run as root: {self.why_not}"

    def popen(self, *also: Path) -> dict[str, Any]:
        """Keyword arguments for :class:`subprocess.Popen`: the user, its group, no other group — where it can
        also reach each of ``also`` (another program's files); otherwise none, and why is logged."""
        if not self.name:
            return {}
        for path in also:
            problem = _others_can_reach(path)
            if problem:
                import logging

                logging.getLogger("clauseproof").warning("%s runs as root: %s", path, problem)
                return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def give(self, folder: Path) -> None:
        """``folder`` (a private ``clauseproof-*`` folder the child writes into) becomes the child's."""
        if self.name:
            shutil.chown(folder, user=self.uid, group=self.gid)


_OWN_CODE_USER: OwnCodeUser | None = None


def own_code_user() -> OwnCodeUser:
    """The one :class:`OwnCodeUser` of this process; said once in the log when it is root."""
    global _OWN_CODE_USER
    if _OWN_CODE_USER is None:
        _OWN_CODE_USER = OwnCodeUser()
        if os.geteuid() == 0 and not _OWN_CODE_USER.name:
            import logging

            logging.getLogger("clauseproof").warning("%s", _OWN_CODE_USER.fact)
    return _OWN_CODE_USER


def haproxy_drop() -> str:
    """The lines of HAProxy's ``global`` section that make it drop root after binding its ports (for an HAProxy
    the reaper stops: dropping root clears a parent-death signal, so one that needs it starts as its user)."""
    user = service_user("haproxy")
    return f"    user {user}\n    group {user}\n" if user else ""


def wait_port(
    port: int,
    proc: subprocess.Popen[bytes],
    what: str,
    log: Path,
    host: str = "127.0.0.1",
    fix: str = "",
    timeout: float = START_TIMEOUT_S,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    tail = [masking.mask(t) for t in log.read_text(errors="replace").strip().splitlines()[-6:]] if log.exists() else []
    raise ClauseproofError(
        f"{what} did not listen on {host}:{port} within {timeout:g} s"
        + (f" (it exited: {proc.returncode})" if proc.poll() is not None else "")
        + "; its log ends:\n    "
        + "\n    ".join(tail),
        checked=f"TCP connections to {host}:{port}",
        fix=fix,
    )


class OwnProcesses:
    """Processes the harness starts for a gateway, in a private ``clauseproof-*`` folder: each in a session of its
    own, registered with the reaper, stopped together (SIGTERM to the group, SIGKILL after ``STOP_WAIT_S``), and
    the folder removed."""

    STOP_WAIT_S = 10

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        #: more private folders, removed with the processes (one a child running as another user writes in)
        self.more_folders: list[Path] = []

    def _spawn(
        self,
        kind: str,
        args: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        *,
        pdeathsig: bool = False,
        user: str | None = None,
        own_code: bool | Path = False,
    ) -> Any:
        """``pdeathsig``: SIGTERM when the harness dies, for a program that does not watch it (nginx, LiteLLM);
        ``user``: the OS user it runs as where the harness runs as root (its own groups only); ``own_code``: the
        harness's own code, run as :func:`own_code_user` (from ``/``: the folder may be another user's), or the
        program at that path (LiteLLM), as that user where it can reach it."""
        as_user: dict[str, Any] = {}
        cwd: Path | str | None = self.folder
        if own_code:
            as_user = own_code_user().popen(*([own_code] if isinstance(own_code, Path) else []))
            cwd = "/"
        elif user is not None and os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam(user)
            as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                cwd=cwd, preexec_fn=reaper.pdeathsig if pdeathsig else None, **as_user,
            )  # fmt: skip
        self.procs.append(proc)
        reaper.register(kind, proc.pid, self.folder)
        return proc

    def _start_workload(self, kind: str, script: str, port: int, what: str, host: str = "127.0.0.1") -> None:
        """One of the harness's own servers, a module of ``clauseproof.workloads`` (it dies with the harness),
        listening."""
        assert self.folder is not None
        env = masking.child_env({reaper.PARENT_ENV: str(os.getpid()), "CLAUSEPROOF_SERVICE_SECRET": SERVICE_SECRET})
        log = self.folder / f"{script}.log"
        args = [sys.executable, "-m", shipped.workload_module(script), "--host", host, "--port", str(port)]
        proc = self._spawn(kind, args, log, env, own_code=True)
        fix = "" if host == "127.0.0.1" else "give an address of this machine that the vendor's gateway can reach"
        wait_port(port, proc, what, log, host, fix)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(self.STOP_WAIT_S)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            reaper.unregister(proc.pid)
        self.procs = []
        for folder in [*self.more_folders, *([self.folder] if self.folder is not None else [])]:
            shutil.rmtree(folder, ignore_errors=True)
        self.folder, self.more_folders = None, []


# -- processes by folder: found, killed (the reaper's and the embedded servers' helpers) --------------------
def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed and waiting for its parent to reap it, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n    ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _names(cmdline: str, folder: str) -> bool:
    """Whether a command line names ``folder`` or a path inside it (not merely a longer name it begins)."""
    return re.search(re.escape(folder) + r"(/|\s|$)", cmdline) is not None


def _working_in(folder: str) -> list[int]:
    """Live processes whose working folder lies in ``folder`` or whose command line names it."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            cwd = ""
        if cwd == folder or cwd.startswith(folder + "/") or _names(_cmdline(int(entry)), folder):
            if _pid_alive(int(entry)):
                out.append(int(entry))
    return out


def kill_processes(pids: set[int], wait_s: float = 5.0) -> None:
    """SIGKILL ``pids``, wait until they are gone, and remove the System V segments they made (PostgreSQL's
    outlives a SIGKILLed postmaster)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while any(_pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    reaper.remove_shm(pids)


# -- a node's processes: What the HA clusters (:mod:`~clauseproof.targets.clusters.patroni`, :mod:`~clauseproof.tar --
def kill(pids: set[int], folder: Path) -> float:
    """SIGKILL ``pids``, then whatever works in ``folder`` still (a process forked between the scan and the kill),
    as a machine dying would; the instant the first signals went out.  The System V segments they made go with
    them (a dead postmaster's would outlive the harness if it were killed before the restart)."""
    at = time.monotonic()
    kill_processes(pids)
    kill_processes(set(_working_in(str(folder))))
    return at


def freeze(pids: set[int], folder: Path) -> float:
    """SIGSTOP ``pids`` and then whatever works in ``folder`` that was not among them (a process forked between
    the scan and the signal); the instant the first signals went out."""
    at = time.monotonic()
    for _ in range(2):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        pids = set(_working_in(str(folder))) - pids
    return at


def thaw(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def stop_one(proc: subprocess.Popen[bytes], timeout: float, what: str, log: Path) -> None:
    """SIGTERM ``proc`` and wait for it (unregistered from the reaper once gone); an error naming ``what`` with
    the tail of its ``log`` after ``timeout``."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise ClauseproofError(f"{what} did not stop within {timeout:g} s; its log:\n    " + _tail(log)) from None
    reaper.unregister(proc.pid)


def stop_all(procs: list[subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    """SIGTERM every process still running, then wait for each; a process group still there after ``timeout`` is
    SIGKILLed.  Never raises."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reaper.unregister(proc.pid)


def start_together(targets: Iterable[Target]) -> None:
    """Start ``targets`` at once, in threads; the first error is raised once all have finished (the caller stops
    what did start)."""
    errors: list[BaseException] = []

    def one(t: Target) -> None:
        try:
            t.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(t,)) for t in targets]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]


def kill_postgres(node: EmbeddedPostgres) -> None:
    """SIGKILL an embedded PostgreSQL whole, as its machine dying; its ``postmaster.pid`` goes too, so that it can
    be started again (it then recovers from its WAL)."""
    assert node.folder is not None
    pid_file = node.data_dir / "postmaster.pid"
    pids = {int(pid_file.read_text().split()[0])} if pid_file.exists() else set()
    kill(pids, node.folder)
    pid_file.unlink(missing_ok=True)
