"""How the harness's own HTTP workloads (``stream_upstream.py``, ``model_vendors.py``) start: a port and an address
from the command line, tied to the run's life (``CLAUSEPROOF_PARENT_PID``: never outlive the run, whatever kills
it), then uvicorn.  The control routes (``/stats``: counters the verdicts read, and their reset) answer only a
request carrying the run's secret (``CLAUSEPROOF_SERVICE_SECRET``, in the header ``X-Clauseproof-Secret``): another
user of the machine cannot read or reset what a verdict counts."""

from __future__ import annotations

import argparse
import hmac
import os
from typing import Any

HEADER = b"x-clauseproof-secret"
CONTROL = ("/stats",)


def guarded(app: Any, secret: str) -> Any:
    """``app`` with its control routes closed to a request without ``secret`` (403)."""

    async def guard(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in CONTROL:
            given = dict(scope.get("headers") or []).get(HEADER, b"")
            if not hmac.compare_digest(given, secret.encode()):
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"text/plain")]})  # fmt: skip
                await send({"type": "http.response.body", "body": b"the run's secret is needed\n"})
                return
        await app(scope, receive, send)

    return guard


def serve(app: Any, description: str | None, **uvicorn_options: Any) -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default loopback)")
    a = p.parse_args()
    parent = os.environ.get("CLAUSEPROOF_PARENT_PID")
    if parent:
        from clauseproof.core.reaper import die_with_parent

        die_with_parent(int(parent))
    secret = os.environ.pop("CLAUSEPROOF_SERVICE_SECRET", "")
    if not secret:
        raise SystemExit(
            "CLAUSEPROOF_SERVICE_SECRET is not set: the harness gives each of its servers the run's secret"
        )
    uvicorn.run(guarded(app, secret), host=a.host, port=a.port, log_level="warning", **uvicorn_options)
