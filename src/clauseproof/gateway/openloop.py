"""An open-loop HTTP load generator: requests leave at constant arrival times whatever the answers do.

A closed-loop client (send, wait, send) slows down when the server does, so it can never offer 10x a limit to a
gateway that answers slowly: the rate verdicts of SX-EDAS-4/5 need requests that leave on a fixed schedule.  Each
stream sends ``rate x duration`` requests at ``t0 + i / rate``; all streams share one asyncio loop and aiohttp
(keep-alive connections, one pool per client source address).  Every request records its scheduled time, the
time it was handed to the client library (``sent``), its answer's time, status and ``Retry-After``.

The generator's own scheduling lag (``sent - scheduled``) is reported with every run: a generator that fell
behind offered a lower rate than it claims, and :meth:`LoadResult.lagging` says so; a rate verdict on such a run
is not shown.  Bounds: at most ``MAX_REQUESTS`` requests and ``MAX_DURATION_S`` seconds per run, at most
``max_in_flight`` requests outstanding (a request that would exceed it is not sent and recorded as such), every
request with a timeout.  Python's cyclic garbage collector is off during a run (its pauses showed as 30-100 ms
of lag once a few runs' samples were alive).
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import time
from dataclasses import dataclass, field
from typing import Any

from clauseproof.core.errors import ClauseproofError

MAX_REQUESTS = 400_000
MAX_DURATION_S = 300.0
#: what a request that never got an answer records as its status
NO_ANSWER, NOT_SENT = -1, -2


@dataclass(frozen=True)
class Stream:
    """Requests of one kind at a constant rate: a path with its headers and query, from a client address."""

    name: str
    rate: float  # requests per second
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    params: tuple[tuple[str, str], ...] = ()
    source: str | None = None  # the client's local address (loopback aliases 127.0.0.x for client-IP limits)
    method: str = "GET"
    body: bytes | None = None


@dataclass
class Sample:
    stream: str
    scheduled: float  # seconds after the run's start
    sent: float
    done: float
    status: int
    retry_after: str | None = None
    error: str = ""


def quantile(xs: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (nan for no values)."""
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


@dataclass
class LoadResult:
    duration_s: float
    samples: list[Sample] = field(default_factory=list)

    def of(self, stream: str) -> list[Sample]:
        return [s for s in self.samples if s.stream == stream]

    def lag_ms(self) -> dict[str, float]:
        lags = [(s.sent - s.scheduled) * 1000 for s in self.samples if s.status != NOT_SENT]
        return {
            "p50": round(quantile(lags, 0.5), 3),
            "p99": round(quantile(lags, 0.99), 3),
            "max": round(max(lags, default=float("nan")), 3),
            "not_sent": sum(1 for s in self.samples if s.status == NOT_SENT),
        }

    def lagging(self, bound_ms: float) -> str:
        """Why the offered load was not what was planned ('' when it was): p99 lag over ``bound_ms``, or
        requests not sent."""
        lag = self.lag_ms()
        if lag["not_sent"]:
            return f"the generator could not send {lag['not_sent']} requests (too many outstanding)"
        if not lag["p99"] <= bound_ms:
            return f"the generator lagged: p99 {lag['p99']:.1f} ms behind its schedule (bound {bound_ms:g} ms)"
        return ""


async def _run(base_url: str, streams: list[Stream], duration_s: float, timeout_s: float, max_in_flight: int) -> Any:
    import aiohttp

    sessions: dict[str | None, aiohttp.ClientSession] = {}
    timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 5.0))
    for src in {s.source for s in streams}:
        conn = aiohttp.TCPConnector(limit=max_in_flight, local_addr=(src, 0) if src else None, force_close=False)
        sessions[src] = aiohttp.ClientSession(base_url, connector=conn, timeout=timeout, auto_decompress=False)
    samples: list[Sample] = []
    in_flight = 0
    t0 = 0.0

    async def one(st: Stream, scheduled: float) -> None:
        nonlocal in_flight
        sent = time.perf_counter() - t0
        if in_flight >= max_in_flight:
            samples.append(Sample(st.name, scheduled, sent, sent, NOT_SENT, error="too many outstanding"))
            return
        in_flight += 1
        try:
            async with sessions[st.source].request(
                st.method, st.path, headers=dict(st.headers), params=dict(st.params) or None, data=st.body
            ) as r:
                await r.read()
                samples.append(
                    Sample(st.name, scheduled, sent, time.perf_counter() - t0, r.status, r.headers.get("Retry-After"))
                )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            samples.append(
                Sample(st.name, scheduled, sent, time.perf_counter() - t0, NO_ANSWER, error=type(exc).__name__)
            )
        finally:
            in_flight -= 1

    # the merged schedule: (time, stream index, i); a heap yields it in order without building every entry
    heap = [(0.0, k, 0) for k, st in enumerate(streams) if st.rate > 0]
    heapq.heapify(heap)
    tasks: set[asyncio.Task[None]] = set()
    try:
        t0 = time.perf_counter() + 0.05
        while heap:
            at, k, i = heapq.heappop(heap)
            st = streams[k]
            if i + 1 < st.rate * duration_s:
                heapq.heappush(heap, ((i + 1) / st.rate, k, i + 1))
            delay = t0 + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(st, at))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s + 5)
    finally:
        for t in tasks:
            t.cancel()
        for s in sessions.values():
            await s.close()
    return samples


def run(
    base_url: str,
    streams: list[Stream],
    duration_s: float,
    *,
    timeout_s: float = 5.0,
    max_in_flight: int = 1000,
) -> LoadResult:
    """Offer every stream's rate for ``duration_s`` seconds, open loop; the samples sorted by schedule."""
    total = sum(int(s.rate * duration_s + 0.999) for s in streams)
    if not 0 < duration_s <= MAX_DURATION_S or total > MAX_REQUESTS:
        raise ClauseproofError(
            f"an open-loop run of {duration_s:g} s and {total:,} requests is outside the generator's bounds",
            checked=f"duration in (0, {MAX_DURATION_S:g}] s, at most {MAX_REQUESTS:,} requests",
            fix="lower the rate or the duration",
        )
    # the cyclic garbage collector stops the loop for tens of ms once the heap holds the samples of a few runs:
    # collected before, off during the run (a run holds at most MAX_REQUESTS samples)
    gc.collect()
    gc.disable()
    try:
        samples = asyncio.run(_run(base_url.rstrip("/"), streams, duration_s, timeout_s, max_in_flight))
    finally:
        gc.enable()
    samples.sort(key=lambda s: (s.scheduled, s.stream))
    return LoadResult(duration_s, samples)
