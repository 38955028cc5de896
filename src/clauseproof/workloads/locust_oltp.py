"""Locust users for the medical-insurance OLTP workload (PostgreSQL via psycopg 3, MySQL family via PyMySQL).

    locust -f clauseproof.workloads.locust_oltp --host postgresql://postgres@127.0.0.1:5432/postgres \\
        --cp-schema app --headless -u 20 -r 20 -t 60s

The database URL is Locust's ``--host``; a password comes from ``CLAUSEPROOF_PASSWORD``.
Options of this workload (``locust -f clauseproof.workloads.locust_oltp --help`` lists them):

- ``--cp-schema``: schema (PostgreSQL) or database (MySQL family) holding the tables;
- ``--cp-weights``: e.g. ``settle=4,lookup=10,transfer=2,report=1``;
- ``--cp-rate``: 0 (default) runs closed loop, each user issuing its next request when the last
  one returns; N > 0 runs open loop, each user *starting* N requests per second on a fixed
  schedule whatever the server does, over up to ``--cp-inflight`` connections, so a stall shows
  up as latency (measured from the scheduled start) instead of as a lower offered load;
- ``--cp-series``: a JSON-lines file receiving, every second, the requests, failures, latency
  percentiles, every write's completion time and every error of that second (``{pid}`` in the
  name is replaced by the process id, for distributed workers).

Every request is reported to Locust's request event with its name, the latency in float
milliseconds from ``time.perf_counter`` and its exception, if any: nothing is swallowed.
"""

from __future__ import annotations

# Locust first: its gevent patching must be in place before psycopg is imported, or every
# database call blocks the whole process.
import locust  # isort: skip
import json
import os
import random
import time
from collections import defaultdict
from typing import Any

import gevent
import psycopg
from gevent.queue import Queue
from locust import User, events, task
from locust.exception import StopUser
from locust.runners import STATE_CLEANUP, STATE_STOPPED, STATE_STOPPING
from locust.user.task import LOCUST_STATE_STOPPING
from psycopg.waiting import Ready, Wait

from clauseproof.workloads import oltp
from clauseproof.workloads.oltp import connect

if os.environ.get("CLAUSEPROOF_PARENT_PID"):  # started by the harness: never outlive it (a SIGKILL included)
    from clauseproof.core.reaper import die_with_parent

    die_with_parent(int(os.environ["CLAUSEPROOF_PARENT_PID"]))

PENDING_LIMIT = 100_000
#: closed loop: requests one user makes inside one Locust task before handing back to Locust's scheduler (it
#: checks whether to stop between them); one task per request cost about 3 µs of client CPU each
CLOSED_LOOP_BATCH = 100


class GeventConnection(psycopg.Connection):
    """A psycopg connection whose waits go straight to gevent's loop, through watchers made once per connection.

    Under gevent's patching psycopg waits through the patched ``select.poll``, which makes, starts and drops libev
    watchers on every wait: a profile of the point-select workload (issue #36) put a third of the client's CPU
    there.  These watchers are made once and reused: 35 → 22 µs of client CPU per point select in one process
    (``./run bench --only oltp``).  A wait with a time limit (psycopg's cancel, say) keeps psycopg's own way."""

    _watchers: tuple[int, dict[int, Any]] | None = None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        if timeout is not None:
            return super().wait(gen, interval, timeout)
        fd = self.pgconn.socket
        if self._watchers is None or self._watchers[0] != fd:
            self._close_watchers()
            loop = gevent.get_hub().loop
            self._watchers = (fd, {w: loop.io(fd, int(w)) for w in (Wait.R, Wait.W, Wait.RW)})
        watchers, hub_wait = self._watchers[1], gevent.get_hub().wait
        try:
            state = next(gen)
            while True:
                hub_wait(watchers[state])
                # ready as waited for; for RW both are claimed and libpq copes with the side not ready (EAGAIN)
                state = gen.send(Ready(state))
        except StopIteration as done:
            return done.value

    def _close_watchers(self) -> None:
        if self._watchers is not None:
            for w in self._watchers[1].values():
                w.close()
            self._watchers = None

    def close(self) -> None:
        self._close_watchers()
        super().close()


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--cp-schema", default="public", help="schema or database holding the workload's tables")
    parser.add_argument("--cp-weights", default="settle=4,lookup=10,transfer=2,report=1", help="operation weights")
    parser.add_argument("--cp-rate", type=float, default=0.0, help="open loop: requests started per second per user")
    parser.add_argument("--cp-inflight", type=int, default=4, help="open loop: connections per user")
    parser.add_argument("--cp-series", default="", help="JSON-lines file for the per-second series")


class Series:
    """Per-second buckets of this process's requests, appended to the series file as each second closes.

    No lock: Locust's users, its request event and the flusher are greenlets of one thread, and neither ``add`` nor
    the bucket handling in ``flush`` yields to another greenlet (the file write does not go through gevent)."""

    def __init__(self, path: str) -> None:
        self.path = path.replace("{pid}", str(os.getpid()))
        self.buckets: dict[int, dict[str, Any]] = {}
        self.closed_up_to = int(time.time())

    def add(self, name: str, ms: float, exc: BaseException | None) -> None:
        now = time.time()
        b = self.buckets.get(int(now))
        if b is None:
            b = self.buckets[int(now)] = {
                "requests": defaultdict(int),
                "failures": defaultdict(int),
                "lat": [],
                "writes": [],
                "errors": [],
            }
        b["requests"][name] += 1
        if exc is not None:
            b["failures"][name] += 1
            text = str(exc).strip().splitlines()
            b["errors"].append(f"{name}: {type(exc).__name__}: {text[0] if text else ''}")
        else:
            b["lat"].append(ms)
            if name in oltp.WRITES:
                b["writes"].append([round(now, 6), round(ms, 3)])

    def flush(self, final: bool = False) -> None:
        upto = int(time.time()) + (1 if final else 0)
        ready = sorted(s for s in self.buckets if s < upto)
        lines = []
        for sec in ready:
            b = self.buckets.pop(sec)
            lat = sorted(b["lat"])

            def q(p: float, lat: list[float] = lat) -> float | None:
                return round(lat[min(len(lat) - 1, int(p * len(lat)))], 3) if lat else None

            lines.append(
                json.dumps(
                    {
                        "t": sec,
                        "pid": os.getpid(),
                        "requests": dict(b["requests"]),
                        "failures": dict(b["failures"]),
                        "p50_ms": q(0.50),
                        "p95_ms": q(0.95),
                        "p99_ms": q(0.99),
                        "max_ms": round(lat[-1], 3) if lat else None,
                        "writes": b["writes"],
                        "errors": b["errors"],
                    }
                )
            )
        if lines:
            with open(self.path, "a") as f:
                f.write("\n".join(lines) + "\n")


SERIES: Series | None = None


@events.init.add_listener
def _init(environment: Any, **_: Any) -> None:
    global SERIES
    # gevent's loop caches "now" and has not run since it was made, before this file's imports (psycopg,
    # SQLAlchemy: seconds on a busy machine); Locust's --run-time timer counts from that stale "now", so a
    # 3 s run could end after 0.4 s with no request made.  Bring it up to date first.
    gevent.get_hub().loop.update_now()
    opts = environment.parsed_options
    if opts is None:
        return
    try:
        oltp.parse_weights(opts.cp_weights)
    except ValueError as exc:
        raise SystemExit(f"--cp-weights: {exc}") from None
    if opts.cp_series and not getattr(opts, "master", False):
        SERIES = Series(opts.cp_series)

        def _flusher() -> None:
            while True:
                gevent.sleep(1.0 - (time.time() % 1.0) + 0.01)
                SERIES.flush()

        gevent.spawn(_flusher)


@events.request.add_listener
def _record(name: str, response_time: float, exception: BaseException | None, **_: Any) -> None:
    if SERIES is not None:
        SERIES.add(name, response_time, exception)


@events.quitting.add_listener
def _quit(**_: Any) -> None:
    if SERIES is not None:
        SERIES.flush(final=True)


class OltpUser(User):
    """One client: closed loop by default, open loop at ``--cp-rate`` requests per second."""

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        self.schema = opts.cp_schema if opts else "public"
        weights = oltp.parse_weights(opts.cp_weights if opts else "")
        self.names = [n for n in oltp.OPERATIONS if weights[n]]
        self.weights = [weights[n] for n in self.names]
        self.rng = random.Random()
        self.rate = opts.cp_rate if opts else 0.0
        self.inflight = max(1, opts.cp_inflight if opts else 4)
        self.dialect = ""
        #: (connection, its operations), or None where a reconnect failed (the next request retries it)
        self.conns: Queue[tuple[Any, dict[str, Any]] | None] = Queue()
        for _ in range(self.inflight if self.rate > 0 else 1):
            self.conns.put(self._open())

    def _open(self) -> tuple[Any, dict[str, Any]]:
        if not self.host:
            raise ValueError("no database URL: give it as --host postgresql://... or mysql://...")
        self.dialect, conn = connect(self.host, pg_class=GeventConnection)
        return conn, oltp.operations(conn, self.dialect, self.schema, self.rng)

    def _reopen(self, conn: Any) -> tuple[Any, dict[str, Any]] | None:
        """Close a connection whose state is unknown; a new one, or None if none can be made now."""
        try:
            conn.close()
        except Exception:
            pass
        try:
            return self._open()
        except Exception:
            return None

    def on_stop(self) -> None:
        while not self.conns.empty():
            slot = self.conns.get_nowait()
            if slot is not None:
                try:
                    slot[0].close()
                except Exception:
                    pass

    def _stopping(self) -> bool:
        """Whether Locust is stopping this user.  The driver may swallow the GreenletExit Locust uses to
        stop a user in the middle of a query (psycopg turns it into an OperationalError), so the
        runner's state is asked as well."""
        runner = self.environment.runner
        return self._state == LOCUST_STATE_STOPPING or (
            runner is not None and runner.state in (STATE_STOPPING, STATE_STOPPED, STATE_CLEANUP)
        )

    def _request(self, name: str, started: float, spawned: bool = False) -> None:
        if self._stopping():
            if spawned:
                return
            raise StopUser()
        slot = self.conns.get()
        exc: BaseException | None = None
        try:
            if slot is None:  # the last reconnect failed: try again, as part of this request
                slot = self._open()
            slot[1][name]()
        except BaseException as e:
            # after any error the connection's state is unknown (an interrupted query leaves it
            # busy): replace it; the error itself is reported below
            slot = self._reopen(slot[0]) if slot is not None else None
            if not isinstance(e, Exception) or self._stopping():
                self.conns.put(slot)
                if spawned:
                    return
                raise StopUser() from None  # Locust is stopping this user: leave, do not report
            exc = e
        self.conns.put(slot)
        self.environment.events.request.fire(
            request_type=self.dialect,
            name=name,
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=0,
            exception=exc,
            context={},
        )

    @task
    def work(self) -> None:
        if self.rate <= 0:  # closed loop: one request after the other
            names, weights, choices = self.names, self.weights, self.rng.choices
            for name in choices(names, weights, k=CLOSED_LOOP_BATCH):
                self._request(name, time.perf_counter())
            return
        # open loop: start requests on a fixed schedule; a stall queues them (latency grows from the
        # scheduled start), it never lowers the offered rate
        interval = 1.0 / self.rate
        scheduled = time.perf_counter()
        pending: list[Any] = []
        while not self._stopping():
            delay = scheduled - time.perf_counter()
            if delay > 0:
                gevent.sleep(delay)
            pending = [g for g in pending if not g.dead]
            if len(pending) >= PENDING_LIMIT:
                raise RuntimeError(f"open loop: {PENDING_LIMIT} requests pending; the server stalls beyond the client")
            name = self.rng.choices(self.names, self.weights)[0]
            pending.append(gevent.spawn(self._request, name, scheduled, True))
            scheduled += interval
        gevent.joinall(pending, timeout=5)
        raise StopUser()


__all__ = ["OltpUser", "locust"]
