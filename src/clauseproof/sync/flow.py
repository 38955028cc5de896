"""What runs on the source while a sync is judged: a steady write load, heartbeat markers, catch-up barriers.

- :class:`SourceLoad` writes at a fixed rate (inserts, updates, deletes, and every few seconds one bulk
  transaction of many inserts), bounded in count and time, counting operations per second and errors;
- :class:`Markers` inserts a marker row ≥ 10 times a second carrying its commit time, and watches the
  target for each one: the delay until a marker is visible there is the sync's latency (both clocks are
  this machine's; the watcher polls every 10 ms, so a delay is over-stated by at most that);
- :func:`barrier` inserts one marker and waits until the target has it: every change committed before
  it has then arrived (a sync applies a source's changes in commit order);
- :class:`ChangeMarkers` does the same for every kind of change, in a table of its own with a key on both sides
  (``cp_change``): an insert, an update, a delete and a key change, each with its own markers and delays.  Delay
  judged on inserts alone let a tool that streams inserts but ships updates and deletes in batches every few
  seconds pass (issue 30); the worst kind decides, and the final barrier waits on every kind.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clauseproof.core.errors import first_line
from clauseproof.core.evidence import client_cost

POLL_S = 0.01

ORDERS_SOURCE = """CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, amount numeric(12,2) NOT NULL,
    status text NOT NULL, note text, updated_at timestamptz NOT NULL DEFAULT now())"""
# the same on a MySQL-family source (a heterogeneous sync's)
ORDERS_SOURCE_MY = """CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, amount decimal(12,2) NOT NULL,
    status varchar(20) NOT NULL, note text, updated_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"""
MARKER_SOURCE_MY = (
    "CREATE TABLE cp_marker (id bigint PRIMARY KEY, origin varchar(40) NOT NULL, committed_at datetime(6))"
)
# the target's copy has a key (a sync applies updates and deletes by it: PostgreSQL's needs one); the markers'
# copy has none, so a marker delivered twice shows as two rows (markers are only inserted)
ORDERS_TARGET = """CREATE TABLE orders (id bigint PRIMARY KEY, customer int, amount numeric(12,2), status text,
    note text, updated_at timestamptz)"""
MARKER_SOURCE = "CREATE TABLE cp_marker (id bigint PRIMARY KEY, origin text NOT NULL, committed_at timestamptz)"
MARKER_TARGET = "CREATE TABLE cp_marker (id bigint, origin text, committed_at timestamptz)"
#: the change-kind markers: a key on both sides (updates, deletes and key changes are applied by it)
CHANGE_SOURCE = "CREATE TABLE cp_change (id bigint PRIMARY KEY, origin text NOT NULL, version int NOT NULL)"
CHANGE_SOURCE_MY = "CREATE TABLE cp_change (id bigint PRIMARY KEY, origin varchar(40) NOT NULL, version int NOT NULL)"
CHANGE_TARGET = CHANGE_SOURCE
CHANGE_KINDS = ("insert", "update", "delete", "key change")


def is_pg(conn: Any) -> bool:
    return hasattr(conn, "pgconn")


def execute(conn: Any, sql: str, params: Any = None) -> Any:
    """Run ``sql`` on a psycopg or a PyMySQL connection; a cursor to fetch from."""
    if is_pg(conn):
        return conn.execute(sql, params)
    cur = conn.cursor()
    cur.execute(sql, params)
    return cur


def now(conn: Any) -> str:
    """SQL for the time now, to the microsecond."""
    return "clock_timestamp()" if is_pg(conn) else "NOW(6)"


def source_ddl(conn: Any, changes: bool = False) -> list[str]:
    out = [ORDERS_SOURCE, MARKER_SOURCE] if is_pg(conn) else [ORDERS_SOURCE_MY, MARKER_SOURCE_MY]
    return out + ([CHANGE_SOURCE if is_pg(conn) else CHANGE_SOURCE_MY] if changes else [])


def fill_orders(conn: Any, rows: int, first: int = 1) -> None:
    """``rows`` orders made on the server (outside any timed window)."""
    if not is_pg(conn):
        execute(conn, f"SET SESSION max_recursive_iterations = {rows + 10}")
        execute(
            conn,
            "INSERT INTO orders (id, customer, amount, status, note, updated_at) WITH RECURSIVE g(i) AS "
            "(SELECT %s UNION ALL SELECT i + 1 FROM g WHERE i < %s) SELECT i, i %% 977, (i * 37 %% 100000) / 100.0, "
            "'new', IF(i %% 5 = 0, NULL, CONCAT('order ', i)), NOW(6) FROM g",
            (first, first + rows - 1),
        )
        return
    conn.execute(
        "INSERT INTO orders SELECT i, i %% 977, (i * 37 %% 100000) / 100.0, 'new', "
        "CASE WHEN i %% 5 = 0 THEN NULL ELSE 'order ' || i END, now() FROM generate_series(%s::bigint, %s::bigint) i",
        (first, first + rows - 1),
    )


@dataclass
class LoadReport:
    ops: int = 0
    errors: list[str] = field(default_factory=list)
    per_second: dict[int, int] = field(default_factory=dict)  # whole second since start → operations
    bulk_transactions: int = 0
    seconds: float = 0.0
    #: the load thread's own CPU (``time.thread_time``), and per 1,000 operations: how much of the machine the
    #: harness's writer took from the servers under test
    client_cpu_s: float = 0.0
    client_cpu_ms_per_1000: float | None = None

    def rate(self, t0: float, t1: float) -> float:
        """Operations per second in [t0, t1) (seconds since the load started; whole seconds)."""
        secs = range(int(t0), max(int(t0) + 1, int(t1)))
        return sum(self.per_second.get(s, 0) for s in secs) / len(secs)


class SourceLoad:
    """A steady write load on ``orders`` of the source, in a thread, at ``rate`` operations per second."""

    def __init__(
        self, connect: Callable[[], Any], first_id: int, *, rate: float = 150, bulk_every_s: float = 2.0,
        bulk_rows: int = 200, max_s: float = 600, seed: int = 7,
    ) -> None:  # fmt: skip
        self.connect, self.rate, self.bulk_every_s, self.bulk_rows, self.max_s = (
            connect, rate, bulk_every_s, bulk_rows, max_s,
        )  # fmt: skip
        self.next_id = first_id
        self.alive: list[int] = list(range(max(1, first_id - 2000), first_id))
        self.rng = random.Random(seed)
        self.report = LoadReport()
        self.started = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sync-source-load", daemon=True)

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread.start()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def stop(self) -> LoadReport:
        self._stop.set()
        self._thread.join(30)
        return self.report

    def _run(self) -> None:
        cpu0 = time.thread_time()
        conn = self.connect()
        interval = 1.0 / self.rate
        next_bulk = self.bulk_every_s
        i = 0
        try:
            while not self._stop.is_set() and self.elapsed() < self.max_s:
                due = i * interval
                now = self.elapsed()
                if due > now:
                    time.sleep(min(due - now, 0.05))
                    continue
                i += 1
                try:
                    if now >= next_bulk:
                        next_bulk += self.bulk_every_s
                        self._bulk(conn)
                    else:
                        self._one(conn)
                    self.report.ops += 1
                    sec = int(self.elapsed())
                    self.report.per_second[sec] = self.report.per_second.get(sec, 0) + 1
                except Exception as exc:
                    self.report.errors.append(f"{self.elapsed():.2f} s: {first_line(exc)}")
                    if len(self.report.errors) > 50:
                        return
                    with contextlib.suppress(Exception):
                        conn.close()
                    with contextlib.suppress(Exception):
                        conn = self.connect()
        finally:
            self.report.seconds = self.elapsed()
            with contextlib.suppress(Exception):
                conn.close()
            cost = client_cost(time.thread_time() - cpu0, self.report.ops)
            self.report.client_cpu_s, self.report.client_cpu_ms_per_1000 = cost["cpu_s"], cost["cpu_ms_per_1000"]

    def _one(self, conn: Any) -> None:
        r = self.rng.random()
        if r < 0.55 or len(self.alive) < 100:
            oid = self.next_id
            self.next_id += 1
            execute(
                conn,
                "INSERT INTO orders (id, customer, amount, status, note) VALUES (%s, %s, %s, 'new', %s)",
                (oid, oid % 977, round(self.rng.uniform(1, 9999), 2), f"order {oid}"),
            )
            self.alive.append(oid)
        elif r < 0.9:
            oid = self.rng.choice(self.alive)
            execute(
                conn,
                f"UPDATE orders SET amount = amount + 1.01, status = 'paid', updated_at = {now(conn)} WHERE id = %s",
                (oid,),
            )
        else:
            oid = self.alive.pop(self.rng.randrange(len(self.alive)))
            execute(conn, "DELETE FROM orders WHERE id = %s", (oid,))

    def _bulk(self, conn: Any) -> None:
        """One transaction of many inserts (a fault may land in its middle)."""
        first = self.next_id
        self.next_id += self.bulk_rows
        if is_pg(conn):
            with conn.transaction():
                fill_orders(conn, self.bulk_rows, first)
        else:
            execute(conn, "BEGIN")
            try:
                fill_orders(conn, self.bulk_rows, first)
                execute(conn, "COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    execute(conn, "ROLLBACK")
                raise
        self.alive.extend(range(first, first + self.bulk_rows))
        self.report.bulk_transactions += 1


class _Paced:
    """A writer thread that makes one change per tick at ``per_second`` (bounded by ``max_s``) and a watcher thread
    polling the target; :meth:`pause` returns once no change is in flight.  Subclasses give ``_tick`` and
    ``_poll``."""

    def __init__(self, source: Callable[[], Any], target: Callable[[], Any], origin: str, per_second: float,
                 max_s: float, name: str) -> None:  # fmt: skip
        self.source, self.target, self.origin = source, target, origin
        self.per_second, self.max_s = per_second, max_s
        self.write_errors: list[str] = []
        self.watch_errors = 0
        self._lock = threading.Lock()
        self._busy = threading.Lock()
        self._writing = threading.Event()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._write, name=f"{name}-write", daemon=True),
            threading.Thread(target=self._watch, name=f"{name}-watch", daemon=True),
        ]
        self.started = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        self._writing.set()
        for t in self._threads:
            t.start()

    def pause(self) -> None:
        """Stop writing; returns once no change is in flight (a later barrier then follows them all)."""
        self._writing.clear()
        with self._busy:
            pass

    def resume(self) -> None:
        self._writing.set()

    def stop(self) -> None:
        self._stop.set()
        self._writing.set()
        for t in self._threads:
            t.join(30)

    def _tick(self, conn: Any, n: int) -> None:
        raise NotImplementedError

    def _poll(self, conn: Any) -> None:
        raise NotImplementedError

    def _write(self) -> None:
        conn = self.source()
        n = 0
        try:
            while not self._stop.is_set() and time.monotonic() - self.started < self.max_s:
                self._writing.wait()
                if self._stop.is_set():  # stop() sets _writing to wake this thread: not a resume
                    break
                due = self.started + n / self.per_second
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
                    continue
                try:
                    with self._busy:
                        if self._writing.is_set() and not self._stop.is_set():
                            self._tick(conn, n)
                except Exception as exc:
                    self.write_errors.append(first_line(exc))
                    if len(self.write_errors) > 20:
                        return
                n += 1
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def _watch(self) -> None:
        conn: Any = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = self.target()
                self._poll(conn)
            except Exception:  # the target may be down: keep trying until told to stop
                self.watch_errors += 1
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
                time.sleep(0.2)
            time.sleep(POLL_S)
        with contextlib.suppress(Exception):
            conn.close()


class Markers(_Paced):
    """Marker rows inserted on the source at ``per_second`` and watched for on the target."""

    def __init__(
        self, source: Callable[[], Any], target: Callable[[], Any], origin: str, *, per_second: float = 20,
        first_id: int = 1, max_s: float = 600,
    ) -> None:  # fmt: skip
        super().__init__(source, target, origin, per_second, max_s, "sync-markers")
        self.next_id = first_id
        self.first_id = first_id
        self.committed: dict[int, float] = {}  # id → wall time the commit returned
        self.seen: dict[int, float] = {}  # id → wall time the target first showed it
        self._last = first_id - 1

    def insert(self, conn: Any) -> int:
        with self._lock:
            mid = self.next_id
            self.next_id += 1
        execute(
            conn, f"INSERT INTO cp_marker (id, origin, committed_at) VALUES (%s, %s, {now(conn)})", (mid, self.origin)
        )
        self.committed[mid] = time.time()
        return mid

    def _tick(self, conn: Any, n: int) -> None:
        self.insert(conn)

    def _poll(self, conn: Any) -> None:
        rows = execute(
            conn, "SELECT id FROM cp_marker WHERE origin = %s AND id > %s ORDER BY id", (self.origin, self._last)
        ).fetchall()
        t = time.time()
        for (mid,) in rows:
            self.seen.setdefault(int(mid), t)
            self._last = max(self._last, int(mid))

    def wait_for(self, mid: int, timeout: float) -> float | None:
        """Seconds from now until marker ``mid`` was seen (None: not within ``timeout``)."""
        t0 = time.time()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if mid in self.seen:
                return max(0.0, self.seen[mid] - t0)
            time.sleep(POLL_S)
        return None

    def wait_all(self, timeout: float) -> bool:
        """Wait until the watcher saw every marker committed so far (False: not within ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(m in self.seen for m in list(self.committed)):
                return True
            time.sleep(POLL_S)
        return False

    def delays(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        """Delays (s) of the markers committed in [since, until) (wall time) and seen on the target."""
        return [self.seen[m] - c for m, c in sorted(self.committed.items()) if since <= c < until and m in self.seen]

    def missing(self) -> list[int]:
        return [m for m in sorted(self.committed) if m not in self.seen]


class ChangeMarkers(_Paced):
    """Markers of every change kind in ``cp_change`` (see the module's docstring): the writer cycles insert, update,
    insert, delete, insert, key change at ``per_second``; each non-insert change takes a row inserted earlier (each
    row changed once); the watcher reads the target's rows of this origin every ``POLL_S`` and stamps each change
    the first time the target shows its effect (the row there; its new version; the row gone; the row under its
    new key with the old one gone)."""

    CYCLE = ("insert", "update", "insert", "delete", "insert", "key change")
    SETTLE_S = 0.5

    def __init__(
        self, source: Callable[[], Any], target: Callable[[], Any], origin: str, *, per_second: float = 20,
        first_id: int = 1, max_s: float = 600,
    ) -> None:  # fmt: skip
        super().__init__(source, target, origin, per_second, max_s, "sync-changes")
        self.next_id = first_id
        #: change number → (kind, what the target must show: (id, version) present, or (id, None) absent, or both)
        self.expect: dict[int, tuple[str, list[tuple[int, int | None]]]] = {}
        self.committed: dict[int, float] = {}  # change → wall time its commit returned
        self.seen: dict[int, float] = {}  # change → wall time the target first showed it
        self._fresh: list[tuple[int, float]] = []  # (id, when) inserted and not yet changed
        #: a change on a row implies its insert arrived (a sync applies one row's changes in order), even when
        #: both landed between two polls: change number → the insert's number
        self._insert_of: dict[int, int] = {}
        self._inserted: dict[int, int] = {}  # id → its insert's number
        self._n = 0

    def change(self, conn: Any, kind: str) -> int:
        """Make one change of ``kind`` on the source (an insert when no row is left to change); its number."""
        shows: list[tuple[int, int | None]]
        args: tuple[Any, ...]
        with self._lock:
            # a row is changed only once its insert had time to be seen on its own (else a delete that lands
            # with its insert shows nothing to wait for)
            if kind != "insert" and not (self._fresh and time.monotonic() - self._fresh[0][1] >= self.SETTLE_S):
                kind = "insert"
            n = self._n
            self._n += 1
            if kind == "insert":
                mid = self.next_id
                self.next_id += 1
                sql, args, shows = (
                    "INSERT INTO cp_change (id, origin, version) VALUES (%s, %s, 1)",
                    (mid, self.origin),
                    [(mid, 1)],
                )
            else:
                mid = self._fresh.pop(0)[0]
                if kind == "update":
                    sql, args, shows = "UPDATE cp_change SET version = 2 WHERE id = %s", (mid,), [(mid, 2)]
                elif kind == "delete":
                    sql, args, shows = "DELETE FROM cp_change WHERE id = %s", (mid,), [(mid, None)]
                else:
                    new = self.next_id
                    self.next_id += 1
                    sql, args, shows = "UPDATE cp_change SET id = %s WHERE id = %s", (new, mid), [(new, 1), (mid, None)]
        execute(conn, sql, args)
        t = time.time()
        with self._lock:
            self.expect[n] = (kind, shows)
            self.committed[n] = t
            if kind == "insert":
                self._fresh.append((mid, time.monotonic()))
                self._inserted[mid] = n
            elif mid in self._inserted:
                self._insert_of[n] = self._inserted[mid]
        return n

    def _tick(self, conn: Any, n: int) -> None:
        self.change(conn, self.CYCLE[n % len(self.CYCLE)])

    def _poll(self, conn: Any) -> None:
        with self._lock:
            waiting = [(n, shows) for n, (_, shows) in self.expect.items() if n not in self.seen]
        ids = sorted({i for _, shows in waiting for i, _ in shows})[:500]
        if not ids:  # only the rows a pending change names are read: the poll stays cheap
            return
        marks = ", ".join(["%s"] * len(ids))
        rows = execute(
            conn, f"SELECT id, version FROM cp_change WHERE origin = %s AND id IN ({marks})", (self.origin, *ids)
        ).fetchall()
        now_t = time.time()
        present = {int(i): int(v) for i, v in rows}
        queried = set(ids)
        for n, shows in waiting:
            if any(i not in queried for i, _ in shows):
                continue  # read at a later poll
            first = self._insert_of.get(n)
            if any(v is None for _, v in shows) and first is not None and first not in self.seen:
                continue  # a row not there yet is not a row deleted: its insert must have been seen
            if all((present.get(i) == v) if v is not None else (i not in present) for i, v in shows):
                self.seen[n] = now_t
                if first is not None:
                    self.seen.setdefault(first, now_t)

    def wait_all(self, timeout: float, since: float = 0.0) -> bool:
        """Until the target showed every change committed since ``since`` (wall time), of every kind (False: not
        within ``timeout``).  Changes made while the initial copy ran may land together with their rows' inserts and
        show no effect of their own: a barrier counts from the streaming window on."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                pending = [n for n, c in self.committed.items() if c >= since and n not in self.seen]
            if not pending:
                return True
            time.sleep(POLL_S)
        return False

    def by_kind(self, since: float = 0.0, until: float = float("inf")) -> dict[str, tuple[list[float], int]]:
        """Per kind: the delays (s) of its changes committed in [since, until) and seen, and how many were never
        seen."""
        out: dict[str, tuple[list[float], int]] = {k: ([], 0) for k in CHANGE_KINDS}
        with self._lock:
            items = [(n, self.expect[n][0], c) for n, c in self.committed.items()]
        for n, kind, c in sorted(items):
            if not since <= c < until:
                continue
            delays, lost = out[kind]
            if n in self.seen:
                delays.append(self.seen[n] - c)
            else:
                out[kind] = (delays, lost + 1)
        return out


def barrier(markers: Markers, source: Callable[[], Any], timeout: float) -> float | None:
    """Insert one marker on the source; seconds until the target shows it (None: not within ``timeout``)."""
    with contextlib.closing(source()) as conn:
        mid = markers.insert(conn)
    return markers.wait_for(mid, timeout)


_sentinels = itertools.count()


def sentinel(source: Callable[[], Any], target: Callable[[], Any], timeout: float, base: int = 0) -> float | None:
    """Insert one sentinel order on the source; seconds until the target's ``orders`` has it (None: not within
    ``timeout``).  A sync may copy and stream each table on its own (PostgreSQL does), so a marker in another
    table proves nothing about this one; within one table, changes arrive in commit order.  Keys: negative
    below ``base`` = 0, else above ``base``; never a multiple of 4 (the conversion case's filter keeps them)."""
    n = 4 * next(_sentinels) + 1
    key = -n if base == 0 else base + n
    with contextlib.closing(source()) as conn:
        execute(
            conn, "INSERT INTO orders (id, customer, amount, status, note) VALUES (%s, 0, 0, 'sentinel', NULL)", (key,)
        )
    t0 = time.monotonic()
    deadline = t0 + timeout
    conn = None
    try:
        while time.monotonic() < deadline:
            try:
                if conn is None:
                    conn = target()
                if execute(conn, "SELECT 1 FROM orders WHERE id = %s", (key,)).fetchone():
                    return time.monotonic() - t0
            except Exception:  # the target may still be coming back
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
                time.sleep(0.2)
            time.sleep(POLL_S)
        return None
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def marker_copies(conn: Any, origin: str) -> dict[int, int]:
    """How often each marker of ``origin`` is on a side (a change delivered twice shows as 2)."""
    rows = execute(conn, "SELECT id, count(*) FROM cp_marker WHERE origin = %s GROUP BY id", (origin,)).fetchall()
    return {int(i): int(n) for i, n in rows}


def percentiles(delays: list[float]) -> dict[str, float]:
    """p50 / p99 / max of ``delays`` in seconds (empty: nothing)."""
    if not delays:
        return {}
    xs = sorted(delays)
    p99 = xs[min(len(xs) - 1, round(0.99 * (len(xs) - 1)))]
    return {"n": len(xs), "p50": statistics.median(xs), "p99": p99, "max": xs[-1]}
