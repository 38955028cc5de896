"""One fault trial under load: writers, readers and a leader poller record a :class:`History` while a fault is
applied, then the failed node is brought back and the judge reads the outcome.

- writers (``writers`` threads, each its own connection through the target's write endpoint) insert unique
  ids at a bounded rate; a write whose connection could not be made is ``fail`` (nothing was sent), one the
  server refused (read-only) is ``fail``, one whose outcome is unknown (connection lost, timeout, a cancelled
  wait for the synchronous standby, which leaves the commit local) is ``info``;
- readers read from every node directly; the poller asks every node whether it accepts writes, 10×/s;
- the fault is applied at a recorded instant; the load runs on until a write after it was acknowledged (or the
  deadline) plus ``settle_s``; the killed node is started again and must rejoin and converge.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clauseproof.core.errors import ClauseproofError
from clauseproof.failover.history import READ, WRITE, History, LeaderSample, Trial, judge

TABLE = "failover_ids"
WRITE_INTERVAL_S = 0.02  # per writer: at most 50 writes/s each
POLL_INTERVAL_S = 0.1


@dataclass
class TrialResult:
    trial: Trial
    history_ops: int
    rejoin_s: float | None
    converged: bool
    convergence: str
    series: dict[str, Any]  # writes per second and latency, the fault shaded (the report's plot)


def _writer(target: Any, h: History, p: int, stop: threading.Event) -> None:
    import psycopg
    from psycopg import errors

    conn = None
    k = 0
    while not stop.is_set():
        k += 1
        value = p * 1_000_000_000 + k
        i = h.invoke(p, WRITE, value)
        if conn is None:
            try:
                conn = target.connect()
                with conn.cursor() as cur:
                    cur.execute("SET statement_timeout = 2000")
            except Exception:
                conn = None
                h.complete(i, "fail")  # nothing was sent
                time.sleep(0.1)
                continue
        try:
            with conn.cursor() as cur:
                cur.execute(f"INSERT INTO {TABLE} (id) VALUES (%s)", (value,))
            h.complete(i, "ok")
        except errors.ReadOnlySqlTransaction:
            h.complete(i, "fail")  # a replica refused it: it did not take effect
            _drop(conn)
            conn = None
        except psycopg.Error:
            h.complete(i, "info")  # sent, outcome unknown
            _drop(conn)
            conn = None
        time.sleep(WRITE_INTERVAL_S)
    _drop(conn)


def _drop(conn: Any) -> None:
    if conn is not None:
        try:
            conn.close()
        except Exception:
            pass
    return None


def _reader(target: Any, h: History, p: int, stop: threading.Event) -> None:
    k = 0
    while not stop.is_set():
        node = target.nodes[k % len(target.nodes)]
        k += 1
        i = h.invoke(p, READ)
        try:
            conn = target.connect_node(node, timeout=1)
            try:
                with conn.cursor() as cur:
                    cur.execute("SET statement_timeout = 1000")
                    cur.execute(f"SELECT count(*) FROM {target.namespace}.{TABLE}")
                h.complete(i, "ok")
            finally:
                conn.close()
        except Exception:
            h.complete(i, "fail")
        time.sleep(0.05)


def _poller(target: Any, samples: list[LeaderSample], stop: threading.Event) -> None:
    while not stop.is_set():
        at = time.monotonic()
        samples.append(LeaderSample(at, {n.name: target.writable(n, timeout=0.3) for n in target.nodes}))
        time.sleep(max(0.0, POLL_INTERVAL_S - (time.monotonic() - at)))


def run_trial(
    target: Any,
    *,
    fault: str,
    apply: Callable[[Any], Any],
    writers: int = 8,
    readers: int = 2,
    before_s: float = 3.0,
    settle_s: float = 3.0,
    deadline_s: float = 30.0,
    restore: Callable[[Any], float] | None = None,
) -> TrialResult:
    """Run one trial: ``apply(victim)`` applies the fault to the current leader (the victim) and may return the
    ``time.monotonic()`` instant it took effect; ``restore(victim)`` brings it back and returns the seconds it took
    to rejoin (a victim that does not rejoin is a finding, not an error)."""
    wait_ready = getattr(target, "wait_ready", None)
    if wait_ready is not None:  # the previous trial's node back, a synchronous standby named again
        wait_ready()
    conn = target.connect()
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
        cur.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY)")
    conn.close()
    h, stop = History(), threading.Event()
    samples: list[LeaderSample] = []
    threads = [threading.Thread(target=_writer, args=(target, h, p, stop), daemon=True) for p in range(writers)]
    threads += [threading.Thread(target=_reader, args=(target, h, 1000 + r, stop), daemon=True) for r in range(readers)]
    threads.append(threading.Thread(target=_poller, args=(target, samples, stop), daemon=True))
    for t in threads:
        t.start()
    try:
        time.sleep(before_s)
        victim = target.leader()
        if victim is None:
            raise ClauseproofError(f"{target.label}: no node is named leader before the fault", fix="see its logs")
        fault_at = time.monotonic()
        applied = apply(victim)  # a fault that knows when it took effect returns that instant
        if isinstance(applied, float):
            fault_at = applied
        while time.monotonic() - fault_at < deadline_s:
            n = h.n
            done = (h.kind[:n] == WRITE) & (h.outcome[:n] == 0) & (h.invoked[:n] >= fault_at)
            if done.any():
                break
            time.sleep(0.1)
        time.sleep(settle_s)
        end_at = time.monotonic()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    h.close()
    rejoin_s, rejoin_problem = None, ""
    if restore is not None:
        try:
            rejoin_s = restore(victim)
        except ClauseproofError as exc:
            rejoin_problem = f"{victim.name} did not rejoin: {str(exc).splitlines()[0]}"
    final, converged, convergence = _final_read(target, victim)
    if rejoin_problem:
        converged, convergence = False, rejoin_problem
    trial = judge(
        h, fault=fault, fault_at=fault_at, end_at=end_at, final_ids=final, leaders=samples, deadline_s=deadline_s
    )
    series = h.series(fault_at, fault_at + trial.rto_s)
    return TrialResult(trial, h.n, rejoin_s, converged, convergence, series)


def _final_read(target: Any, rejoined: Any, timeout: float = 30.0) -> tuple[list[int], bool, str]:
    """Every id the leader holds; whether the rejoined node holds the same (count and sum), waited for."""
    conn = target.connect()
    with conn.cursor() as cur:
        cur.execute(f"SELECT id FROM {TABLE}")
        ids = [r[0] for r in cur.fetchall()]
    conn.close()
    if rejoined is None:
        return ids, False, "no node to rejoin"
    want = (len(ids), sum(ids))
    deadline, got = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            c = target.connect_node(rejoined, timeout=1)
            with c.cursor() as cur:
                cur.execute(f"SELECT count(*), coalesce(sum(id), 0) FROM {target.namespace}.{TABLE}")
                row = cur.fetchone()
            c.close()
            got = (int(row[0]), int(row[1])) if row else None
            if got == want:
                return ids, True, f"{rejoined.name} holds the leader's {want[0]} ids (count and sum equal)"
        except Exception:
            got = None  # not answering yet
        time.sleep(0.5)
    return ids, False, f"{rejoined.name} held {got} (count, sum) against the leader's {want} after {timeout:g} s"
