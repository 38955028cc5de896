"""Processes the harness starts and owns (gateways, their upstreams, the columnar checker target): each in a
session of its own inside a private ``clauseproof-*`` folder, registered with the reaper, waited for until it
listens, stopped together and the folder removed — on :meth:`OwnProcesses.stop`, on Ctrl-C/SIGTERM and by
``clauseproof reap``."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from clauseproof.core import masking, reaper
from clauseproof.core.errors import ClauseproofError

ROOT = Path(__file__).resolve().parents[3]
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


def haproxy_drop() -> str:
    """The lines of HAProxy's ``global`` section that make it drop root after binding its ports (for an HAProxy
    the reaper stops: dropping root clears a parent-death signal, so one that needs it starts as its user)."""
    user = service_user("haproxy")
    return f"    user {user}\n    group {user}\n" if user else ""


def wait_port(
    port: int, proc: subprocess.Popen[bytes], what: str, log: Path, host: str = "127.0.0.1", fix: str = ""
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    tail = log.read_text(errors="replace").strip().splitlines()[-6:] if log.exists() else []
    raise ClauseproofError(
        f"{what} did not listen on {host}:{port} within {START_TIMEOUT_S} s; its log ends:\n    " + "\n    ".join(tail),
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

    def _spawn(
        self,
        kind: str,
        args: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        *,
        pdeathsig: bool = False,
        user: str | None = None,
    ) -> Any:
        """``pdeathsig``: SIGTERM when the harness dies, for a program that does not watch it (nginx, LiteLLM);
        ``user``: the OS user it runs as where the harness runs as root (its own groups only)."""
        as_user: dict[str, Any] = {}
        if user is not None and os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam(user)
            as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                cwd=self.folder, preexec_fn=reaper.pdeathsig if pdeathsig else None, **as_user,
            )  # fmt: skip
        self.procs.append(proc)
        reaper.register(kind, proc.pid, self.folder)
        return proc

    def _start_workload(self, kind: str, script: str, port: int, what: str, host: str = "127.0.0.1") -> None:
        """One of the harness's own servers under ``workloads/`` (it dies with the harness), listening."""
        assert self.folder is not None
        env = masking.child_env({"PYTHONPATH": str(ROOT), reaper.PARENT_ENV: str(os.getpid())})
        log = self.folder / f"{Path(script).stem}.log"
        args = [sys.executable, str(ROOT / "workloads" / script), "--host", host, "--port", str(port)]
        proc = self._spawn(kind, args, log, env)
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
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
