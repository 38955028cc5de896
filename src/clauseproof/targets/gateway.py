"""The embedded API gateway (SX-EDAS-2 stand-in): Debian's nginx, configured by the harness, in front of the
harness's own streaming upstream (``workloads/stream_upstream.py``, Starlette on uvicorn), both on loopback.

nginx proxies ``/`` to the upstream with HTTP/1.1 and ``proxy_buffering off`` (SSE and chunked responses pass
as they arrive) and keeps idle upstream connections (``keepalive``), so client requests reuse upstream sockets.
The positive controls make the same gateway buffer (``buffering=True``: proxy buffering on and the streams
gzip-compressed, a common misconfiguration) or open a socket per request
(``reuse=False``): the suite must judge those FAIL.  Both processes live in a ``clauseproof-gateway-*`` folder,
are registered with the reaper, and are stopped by :meth:`stop`, on Ctrl-C/SIGTERM and by ``clauseproof reap``.
"""

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

from clauseproof.core import reaper
from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.embedded import free_port, make_private_folder

ROOT = Path(__file__).resolve().parents[3]
UPSTREAM = ROOT / "workloads" / "stream_upstream.py"
START_TIMEOUT_S = 15

NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
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
    upstream app {{
        server 127.0.0.1:{upstream_port};
        {keepalive}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering {buffering};
            {compress}
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    tail = log.read_text(errors="replace").strip().splitlines()[-6:] if log.exists() else []
    raise ClauseproofError(
        f"{what} did not listen on 127.0.0.1:{port} within {START_TIMEOUT_S} s; its log ends:\n    "
        + "\n    ".join(tail),
        checked=f"TCP connections to 127.0.0.1:{port}",
    )


class EmbeddedGateway:
    """nginx in front of the harness's streaming upstream; ``base_url`` goes through nginx, ``direct_url`` not."""

    label = "embedded-nginx-gateway"

    def __init__(self, *, buffering: bool = False, reuse: bool = True) -> None:
        self.buffering, self.reuse = buffering, reuse
        self.folder: Path | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        self.port = 0
        self.upstream_port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def direct_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}"

    def _spawn(self, kind: str, args: list[str], log: Path, env: dict[str, str] | None = None) -> Any:
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )
        self.procs.append(proc)
        reaper.register(kind, proc.pid, self.folder)
        return proc

    def start(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(nginx):
            raise ClauseproofError(
                "nginx is not installed: the embedded gateway is Debian's nginx",
                fix="apt-get install nginx-light (./run installs it)",
            )
        self.folder = make_private_folder("gateway")
        try:
            self.upstream_port = free_port()
            env = {**os.environ, "PYTHONPATH": str(ROOT), reaper.PARENT_ENV: str(os.getpid())}
            up_log = self.folder / "upstream.log"
            up = self._spawn(
                "gateway-upstream", [sys.executable, str(UPSTREAM), "--port", str(self.upstream_port)], up_log, env
            )
            _wait_port(self.upstream_port, up, "the streaming upstream", up_log)
            self.port = free_port()
            conf = self.folder / "nginx.conf"
            conf.write_text(
                NGINX_CONF.format(
                    folder=self.folder,
                    upstream_port=self.upstream_port,
                    port=self.port,
                    keepalive="keepalive 16;" if self.reuse else "",
                    buffering="on" if self.buffering else "off",
                    # what makes a real nginx hold events back: compressing the stream (gzip fills its buffers
                    # before it writes), on top of proxy buffering
                    compress="gzip on; gzip_min_length 0; gzip_types text/event-stream application/x-ndjson;"
                    if self.buffering
                    else "",
                )
            )
            ng_log = self.folder / "error.log"
            ng = self._spawn("gateway-nginx", [nginx, "-c", str(conf), "-e", str(ng_log)], self.folder / "nginx.out")
            _wait_port(self.port, ng, "nginx", ng_log)
        except BaseException:
            self.stop()
            raise

    def describe(self) -> dict[str, Any]:
        version = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False).stderr.strip()
        return {
            "label": self.label,
            "gateway": version,
            "config": {
                "proxy_buffering": "on" if self.buffering else "off",
                "gzip_on_streams": self.buffering,
                "upstream_keepalive": self.reuse,
            },
            "upstream": "workloads/stream_upstream.py (Starlette on uvicorn), the harness's own",
        }

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            reaper.unregister(proc.pid)
        self.procs = []
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
