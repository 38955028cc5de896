"""The harness's own upstream for the gateway suite (SX-EDAS-2): a small ASGI app (Starlette on uvicorn) that
streams on a known schedule and counts the sockets it is reached on.

- ``GET /sse?n=20&interval=0.1``: Server-Sent Events ``id: i``, two ``data:`` lines (the first a JSON object with
  the wall time the event left: ``sent``), ``retry: 1500`` on the first event, and a ``: ping <time>`` heartbeat
  comment between events; ``Last-Event-ID: k`` resumes at ``k + 1``.
- ``GET /chunked?n=20&interval=0.1``: streamable HTTP, one JSON line per chunk with its ``sent`` time.
- ``GET|POST /limit/...``: a small JSON answer, what a rate-limited route reaches (SX-EDAS-4/5).
- ``GET /stats``: the peer sockets (host:port) seen so far, requests per socket, and the requests that reached a
  ``/limit/`` route (``limit_arrivals``: a gateway that answers 429 but still forwards shows here); ``POST /stats``
  resets the sockets.

No ``X-Accel-Buffering`` header is sent: whether events are buffered is the gateway's own configuration.
Run: ``python clauseproof.workloads.stream_upstream --port P`` (loopback only).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from clauseproof.workloads.serve import serve

PEERS: Counter[str] = Counter()
#: requests that reached a rate-limited route (never reset: a check reads it before and after)
ARRIVALS = {"limit": 0}
MAX_EVENTS = 10_000
MAX_INTERVAL_S = 5.0


def _peer(request: Request) -> None:
    c = request.client
    PEERS[f"{c.host}:{c.port}" if c else "?"] += 1


def _schedule(request: Request) -> tuple[int, float]:
    n = min(MAX_EVENTS, max(1, int(request.query_params.get("n", "20"))))
    interval = min(MAX_INTERVAL_S, max(0.0, float(request.query_params.get("interval", "0.1"))))
    return n, interval


async def sse(request: Request) -> Response:
    _peer(request)
    n, interval = _schedule(request)
    first = int(request.headers.get("last-event-id", "0") or 0) + 1

    async def events() -> AsyncIterator[bytes]:
        for i in range(first, n + 1):
            retry = "retry: 1500\n" if i == first else ""
            body = json.dumps({"i": i, "sent": time.time()})
            yield f"id: {i}\n{retry}data: {body}\ndata: line two of event {i}\n\n".encode()
            await asyncio.sleep(interval / 2)
            yield f": ping {time.time():.6f}\n\n".encode()
            await asyncio.sleep(interval / 2)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def chunked(request: Request) -> Response:
    _peer(request)
    n, interval = _schedule(request)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(1, n + 1):
            yield (json.dumps({"i": i, "sent": time.time()}) + "\n").encode()
            await asyncio.sleep(interval)

    return StreamingResponse(chunks(), media_type="application/x-ndjson")


async def echo(request: Request) -> Response:
    """What a rate-limited route reaches when the gateway lets a request through (SX-EDAS-4/5)."""
    ARRIVALS["limit"] += 1
    return JSONResponse({"ok": True, "path": request.url.path})


async def stats(request: Request) -> Response:
    if request.method == "POST":
        PEERS.clear()
        return JSONResponse({"reset": True})
    return JSONResponse({"sockets": len(PEERS), "requests": sum(PEERS.values()), "per_socket": dict(PEERS),
                         "limit_arrivals": ARRIVALS["limit"]})  # fmt: skip


app = Starlette(
    routes=[
        Route("/sse", sse),
        Route("/chunked", chunked),
        Route("/stats", stats, methods=["GET", "POST"]),
        Route("/limit/{rest:path}", echo, methods=["GET", "POST"]),
    ]
)


def main() -> None:
    serve(app, __doc__, timeout_keep_alive=30)


if __name__ == "__main__":
    main()
