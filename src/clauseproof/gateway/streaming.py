"""SX-EDAS-2: streaming through a gateway — per-event delay against the same stream read directly, heartbeats,
SSE framing, ``Last-Event-ID`` resume, chunked streamable HTTP, and upstream connection reuse.

The upstream stamps each event with the wall time it left (same machine clock as the client); the client stamps
each event's arrival as its blank-line terminator is read.  The cheapest cheat — a gateway that buffers the
response and delivers it at the end — passes a "did all events arrive" check; it fails here because each event
must arrive within a stated extra delay of the same event read directly.  So must each heartbeat comment (it
carries the time it left): a gateway that passes the events at once but holds the heartbeats until the stream
ends kept a count of 20 of 20 and failed nothing before.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from clauseproof.core.i18n import Text, msg
from clauseproof.gateway.openloop import quantile
from clauseproof.targets.host.processes import service_headers

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclass
class Event:
    id: str | None
    data: list[str]
    retry: str | None
    arrived: float
    sent: float | None


@dataclass
class Stream:
    """One SSE response as the client read it."""

    events: list[Event] = field(default_factory=list)
    heartbeats: int = 0
    #: each heartbeat comment's delay (arrival minus the time in it): held heartbeats are a buffering gateway too
    heartbeat_delays: list[float] = field(default_factory=list)
    status: int = 0
    content_type: str = ""

    def delays(self) -> list[float]:
        return [e.arrived - e.sent for e in self.events if e.sent is not None]

    def framing(self) -> list[tuple[str | None, tuple[str, ...], str | None]]:
        """What must be identical through the gateway: ids, data lines (times removed), retry fields."""
        out = []
        for e in self.events:
            lines = tuple(json.dumps({k: v for k, v in json.loads(d).items() if k != "sent"}) if i == 0 else d
                          for i, d in enumerate(e.data))  # fmt: skip
            out.append((e.id, lines, e.retry))
        return out


def read_sse(client: httpx.Client, url: str, headers: dict[str, str] | None = None) -> Stream:
    """Read an SSE response to its end, parsing it by the spec's line rules (comments, fields, blank line)."""
    s = Stream()
    with client.stream("GET", url, headers={"Accept": "text/event-stream", **(headers or {})}) as r:
        s.status, s.content_type = r.status_code, r.headers.get("content-type", "")
        ev: dict[str, Any] = {"id": None, "data": [], "retry": None}
        for line in r.iter_lines():
            now = time.time()
            if line == "":
                if ev["data"] or ev["id"] is not None:
                    sent = None
                    try:
                        sent = float(json.loads(ev["data"][0])["sent"])
                    except (ValueError, KeyError, IndexError, TypeError):
                        pass
                    s.events.append(Event(ev["id"], ev["data"], ev["retry"], now, sent))
                ev = {"id": None, "data": [], "retry": None}
                continue
            if line.startswith(":"):
                s.heartbeats += 1
                with contextlib.suppress(ValueError, IndexError):
                    s.heartbeat_delays.append(now - float(line[1:].split()[1]))  # ": ping <time it left>"
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                ev["data"].append(value)
            elif name in ("id", "retry"):
                ev[name] = value
    return s


def read_chunks(client: httpx.Client, url: str) -> list[float]:
    """Delays of the chunked response's lines (arrival minus the time each left the upstream)."""
    out = []
    with client.stream("GET", url) as r:
        for line in r.iter_lines():
            if line.strip():
                out.append(time.time() - float(json.loads(line)["sent"]))
    return out


def upstream_sockets(direct: str, client: httpx.Client, url: str, requests: int) -> dict[str, Any]:
    """``requests`` sequential SSE requests through ``url`` on one client connection; how many upstream sockets
    the upstream saw for them."""
    with httpx.Client(timeout=TIMEOUT, headers=service_headers()) as admin:
        admin.post(f"{direct}/stats").raise_for_status()
        for _ in range(requests):
            read_sse(client, url)
        return dict(admin.get(f"{direct}/stats").raise_for_status().json())


@dataclass
class Result:
    parts: list[tuple[Text, bool, Text, Text]]  # (part, shown, what was measured, why not)
    data: dict[str, Any]


def check(base: str, direct: str, *, events: int, interval_s: float, extra_delay_s: float, requests: int) -> Result:
    """Every part of SX-EDAS-2 through ``base`` (the gateway), against ``direct`` (the upstream itself)."""
    q = f"n={events}&interval={interval_s}"
    with httpx.Client(timeout=TIMEOUT) as c:
        straight = read_sse(c, f"{direct}/sse?{q}")
        via = read_sse(c, f"{base}/sse?{q}")
        resumed = read_sse(c, f"{base}/sse?{q}", {"Last-Event-ID": str(events // 2)})
        chunks_direct = read_chunks(c, f"{direct}/chunked?{q}")
        chunks_via = read_chunks(c, f"{base}/chunked?{q}")
    with httpx.Client(timeout=TIMEOUT) as c:
        sockets = upstream_sockets(direct, c, f"{base}/sse?n=2&interval=0", requests)
    d_direct, d_via = straight.delays(), via.delays()
    worst_direct, worst_via = max(d_direct, default=0.0), max(d_via, default=float("inf"))
    bound = worst_direct + extra_delay_s
    late = [e.id for e in via.events if e.sent is not None and e.arrived - e.sent > bound]
    parts: list[tuple[Text, bool, Text, Text]] = []
    ms = lambda x: f"{x * 1000:.1f}"  # noqa: E731
    parts.append((
        msg("sse_no_buffering"),
        via.status == 200 and len(d_via) == events and not late,
        msg("sse_delays", got=len(d_via), events=events, interval=f"{interval_s:g}",
            p50=ms(statistics.median(d_via)) if d_via else "nan", max=ms(worst_via), direct=ms(worst_direct),
            extra=f"{extra_delay_s * 1000:.0f}"),
        msg("sse_late", n=len(late), bound=f"{bound * 1000:.0f}", first=str(late[:3]))
        if late else msg("sse_status", status=via.status, got=len(d_via), events=events),
    ))  # fmt: skip
    hb_bound = max(straight.heartbeat_delays, default=0.0) + extra_delay_s
    late_hb = [d for d in via.heartbeat_delays if d > hb_bound]
    parts.append((
        msg("heartbeats_forwarded"),
        via.heartbeats == straight.heartbeats == events == len(via.heartbeat_delays) and not late_hb,
        msg("heartbeats_how", via=via.heartbeats, direct=straight.heartbeats, events=events,
            max_via=ms(max(via.heartbeat_delays, default=float("nan"))),
            max_direct=ms(max(straight.heartbeat_delays, default=float("nan")))),
        msg("heartbeats_late", n=len(late_hb), bound=f"{hb_bound * 1000:.0f}")
        if late_hb else msg("heartbeats_count", via=via.heartbeats, direct=straight.heartbeats),
    ))  # fmt: skip
    same = via.framing() == straight.framing()
    parts.append((
        msg("sse_framing"),
        same and via.content_type.startswith("text/event-stream"),
        msg("sse_framing_how", n=len(via.events), content_type=repr(via.content_type)),
        msg("sse_events_differ") if not same else msg("content_type", content_type=repr(via.content_type)),
    ))  # fmt: skip
    first = resumed.events[0].id if resumed.events else None
    parts.append((
        msg("resume_honoured"),
        first == str(events // 2 + 1) and len(resumed.events) == events - events // 2,
        msg("resume_how", sent=events // 2, first=str(first), n=len(resumed.events)),
        msg("resume_began", first=str(first)),
    ))  # fmt: skip
    chunk_bound = max(chunks_direct, default=0.0) + extra_delay_s
    late_chunks = [d for d in chunks_via if d > chunk_bound]
    parts.append((
        msg("chunked_no_buffering"),
        len(chunks_via) == events and not late_chunks,
        msg("chunked_how", got=len(chunks_via), events=events, max_via=ms(max(chunks_via, default=float("nan"))),
            max_direct=ms(max(chunks_direct, default=float("nan")))),
        msg("chunks_late", n=len(late_chunks), bound=f"{chunk_bound * 1000:.0f}"),
    ))  # fmt: skip
    parts.append((
        msg("upstream_reused"),
        sockets["sockets"] <= max(1, requests // 5) and sockets["requests"] == requests,
        msg("upstream_reused_one" if sockets["sockets"] == 1 else "upstream_reused_how", requests=requests,
            sockets=sockets["sockets"], reached=sockets["requests"]),
        msg("upstream_per_request", sockets=sockets["sockets"], requests=requests),
    ))  # fmt: skip
    data = {
        "delays_via_s": [round(x, 4) for x in d_via],
        "delays_direct_s": [round(x, 4) for x in d_direct],
        "chunk_delays_via_s": [round(x, 4) for x in chunks_via],
        "chunk_delays_direct_s": [round(x, 4) for x in chunks_direct],
        "heartbeat_delays_via_s": [round(x, 4) for x in via.heartbeat_delays],
        "heartbeat_delays_direct_s": [round(x, 4) for x in straight.heartbeat_delays],
        "upstream_sockets": sockets,
        "p99_via_ms": round(quantile(d_via, 0.99) * 1000, 2),
    }
    return Result(parts, data)
