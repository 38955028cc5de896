"""The gateway suite's checks against the embedded gateway and its positive controls: a gateway that buffers
the streams (proxy buffering with gzip on the streams) and one that opens an upstream socket per request must
be judged FAIL on exactly those parts; start and stop leave no process or folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from clauseproof.gateway.streaming import check
from clauseproof.targets.gateways.nginx import EmbeddedGateway
from clauseproof.targets.host.processes import _pid_alive as _alive
from tests.fix_targets import signals_as_in_a_terminal

#: timing-dependent (./run test runs these alone, after the rest):
#: each event's delay through nginx against the same stream read directly + 100 ms
pytestmark = pytest.mark.timing

ROOT = Path(__file__).resolve().parents[2]
PARAMS = {"events": 20, "interval_s": 0.1, "extra_delay_s": 0.1, "requests": 20}


def _verdicts(**kw: bool) -> dict[str, bool]:
    g = EmbeddedGateway(**kw)
    g.start()
    try:
        result = check(g.base_url, g.direct_url, **PARAMS)  # type: ignore[arg-type]
    finally:
        g.stop()
    return {str(part): ok for part, ok, _, _ in result.parts}


def test_the_embedded_gateway_passes_every_part() -> None:
    assert all(_verdicts().values())


def test_a_buffering_gateway_fails_the_delay_parts() -> None:
    v = _verdicts(buffering=True)
    assert not v["each SSE event passes without buffering"]
    assert not v["streamable HTTP (chunked) passes without buffering"]
    assert v["upstream connections reused"]  # only what is wrong is judged wrong


def test_a_gateway_without_upstream_keepalive_fails_reuse() -> None:
    v = _verdicts(reuse=False)
    assert not v["upstream connections reused"]
    assert v["each SSE event passes without buffering"]


def test_stop_leaves_nothing() -> None:
    g = EmbeddedGateway()
    g.start()
    pids = [p.pid for p in g.procs]
    folder = g.folder
    assert folder is not None and folder.exists() and len(pids) == 3  # upstream, HAProxy, nginx
    if os.geteuid() == 0:  # nginx as www-data, HAProxy dropping to haproxy after binding (issue 31)
        uids = {pid: os.stat(f"/proc/{pid}").st_uid for pid in pids[1:]}
        deadline = time.monotonic() + 5  # HAProxy drops root once it has bound its port
        while 0 in uids.values() and time.monotonic() < deadline:
            time.sleep(0.1)
            uids = {pid: os.stat(f"/proc/{pid}").st_uid for pid in pids[1:]}
        assert 0 not in uids.values(), uids
    g.stop()
    assert not folder.exists()
    assert not any(_alive(p) for p in pids)


@pytest.mark.parametrize(
    ("module", "cls"),
    [
        ("clauseproof.targets.gateways.nginx", "EmbeddedGateway"),
        pytest.param("clauseproof.targets.gateways.litellm", "ModelGateway", marks=pytest.mark.slow),
        ("clauseproof.targets.single.clickhouse", "EmbeddedClickHouse"),  # the same OwnProcesses base
    ],
)
def test_sigkill_then_reap_leaves_nothing(tmp_path: Path, module: str, cls: str) -> None:
    code = (
        f"import sys, time\nfrom {module} import {cls}\n"
        f"g = {cls}(); g.start()\n"
        "open(sys.argv[1], 'w').write(' '.join(str(p.pid) for p in g.procs) + '\\n' + str(g.folder))\n"
        "time.sleep(120)\n"
    )
    flag = tmp_path / "up"
    proc = subprocess.Popen([sys.executable, "-c", code, str(flag)], cwd=ROOT)
    deadline = time.monotonic() + 90
    while not flag.exists() or "\n" not in flag.read_text():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    pids_line, folder = flag.read_text().split("\n")
    pids = [int(p) for p in pids_line.split()]
    deadline = time.monotonic() + 15  # every one dies with the harness (parent-death signal), before any reap
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), [p for p in pids if _alive(p)]
    r = subprocess.run(
        [sys.executable, "-m", "clauseproof.cli", "reap"], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 0, r.stderr
    assert not Path(folder).exists()  # the folder: reap's


def test_no_nginx_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setattr("os.path.exists", lambda p: False if str(p).endswith("nginx") else True)
    from clauseproof.core.errors import ClauseproofError

    with pytest.raises(ClauseproofError) as exc:
        EmbeddedGateway().start()
    assert "nginx is not installed" in str(exc.value) and "apt-get install nginx-light" in str(exc.value)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signalled_gateway_run_stops_nginx_and_the_upstream(tmp_path: Path, sig: signal.Signals) -> None:
    import json
    import tempfile

    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "suites/gateway", f"--cp-results={tmp_path}", "--cp-formats=html",
         "-p", "no:randomly", "-q"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=signals_as_in_a_terminal,
    )  # fmt: skip
    folder = None
    try:
        deadline = time.monotonic() + 60
        while folder is None:
            assert proc.poll() is None and time.monotonic() < deadline, "the run's gateway never started"
            for f in Path(tempfile.gettempdir()).glob("clauseproof-gateway-*"):
                owner = f / "owner.json"
                if owner.exists() and json.loads(owner.read_text())["pid"] == proc.pid and (f / "nginx.pid").exists():
                    folder = f
            time.sleep(0.1)
        pids = [int((folder / "nginx.pid").read_text())]
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not folder.exists()
    assert not any(_alive(p) for p in pids)


def _heartbeat_holder(upstream: str) -> Any:
    """Issue 30's cheat: a gateway that passes every event at once but holds every SSE heartbeat comment until the
    stream ends (and passes everything else through)."""
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    async def proxy(request: Request) -> Response:
        client = httpx.AsyncClient(timeout=30)
        req = client.build_request(
            "GET",
            f"{upstream}{request.url.path}?{request.url.query}",
            headers={k: v for k, v in request.headers.items() if k.lower() == "last-event-id"},
        )
        r = await client.send(req, stream=True)

        async def body() -> Any:
            held = []
            try:
                async for line in r.aiter_lines():
                    if line.startswith(":"):
                        held.append(line)
                        continue
                    yield (line + "\n").encode()
                for line in held:
                    yield (line + "\n\n").encode()
            finally:
                await r.aclose()
                await client.aclose()

        return StreamingResponse(body(), media_type=r.headers.get("content-type", "text/event-stream"))

    return Starlette(routes=[Route("/{path:path}", proxy)])


def test_a_gateway_holding_heartbeats_fails_though_every_one_arrives() -> None:
    """It passed "20 heartbeats through the gateway, 20 directly": now each heartbeat is judged on its delay."""
    import socket
    import threading

    import uvicorn

    g = EmbeddedGateway()
    g.start()
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(_heartbeat_holder(g.direct_url), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        result = check(f"http://127.0.0.1:{sock.getsockname()[1]}", g.direct_url, **PARAMS)  # type: ignore[arg-type]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        g.stop()
    parts = {str(part): (ok, why) for part, ok, _, why in result.parts}
    assert parts["each SSE event passes without buffering"][0] is True  # the events themselves are not held
    ok, why = parts["heartbeats forwarded as they come"]
    assert ok is False and "held back" in why, why
    assert result.data["heartbeat_delays_via_s"] and len(result.data["heartbeat_delays_via_s"]) == PARAMS["events"]
