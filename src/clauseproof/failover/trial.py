"""One fault trial under load: writers, readers and probers record a :class:`History` while a fault is
applied, then the failed node is brought back and the judge reads the outcome.

- writers (``writers`` threads, each its own connection through the target's write endpoint) insert unique
  ids at a bounded rate; a write whose connection could not be made is ``fail`` (nothing was sent), one the
  server refused (read-only) is ``fail``, one whose outcome is unknown (connection lost, timeout, a cancelled
  wait for the synchronous standby, which leaves the commit local) is ``info``;
- one reader per node reads from its node directly (a reader stuck on a frozen node must not look like the
  surviving nodes stopped serving);
- one prober per node asks its node 10×/s whether it accepts writes by making one: an upsert into a probe table
  of the namespace (``pg_is_in_recovery()`` would call a frozen leader that wakes up writable, though its commits
  wait for a standby that left; and a transaction that writes no row skips the synchronous wait altogether).  Its
  answers, by the instant they came, make the 100 ms polling rounds of the judge;
- the fault is applied at a recorded instant; a fault that is lifted (a freeze, a cut) is lifted ``hold_s`` after it
  was applied (a cut: or once a write after it was acknowledged), under the same load; the load runs on until a write
  after the fault was acknowledged and the fault was lifted (or the deadline), then ``settle_s`` more; the failed node
  is brought back (or waited for) and must rejoin and converge.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from clauseproof.core.errors import ClauseproofError, first_line
from clauseproof.core.i18n import Text, msg
from clauseproof.failover.history import READ, WRITE, History, LeaderSample, Trial, judge
from clauseproof.targets.roles import HACluster, N

TABLE = "failover_ids"
PROBES = "failover_probe"
WRITE_INTERVAL_S = 0.02  # per writer: at most 50 writes/s each
POLL_INTERVAL_S = 0.1
READERS = 1000  # the process number of the first node's reader
READ_S = 15.0  # how long the final read waits for a leader to answer
TIMELY_S = 1.0  # a probe answered later than this says nothing about the round it was sent in


class Answer(NamedTuple):
    asked: float
    answered: float
    node: str
    ok: bool | None  # acknowledged, refused (read-only), no answer


#: PostgreSQL's warning when a wait for the synchronous standby was cancelled: the commit is local only
LOCAL_ONLY = "canceling wait for synchronous replication"
#: MySQL-family errors by which a server refuses a write that did not take effect: read-only (1290, 1792, 1836),
#: a Galera node outside the primary component (1047)
MYSQL_REFUSED = {1290, 1792, 1836, 1047}


def _timeout(cur: Any, dialect: str, ms: int) -> None:
    """A statement time limit for the session (MariaDB's max_statement_time; MySQL's applies to SELECT only)."""
    if dialect == "postgresql":
        cur.execute(f"SET statement_timeout = {ms}")
    else:
        try:
            cur.execute(f"SET SESSION max_statement_time = {ms / 1000:g}")
        except Exception:
            cur.execute(f"SET SESSION max_execution_time = {ms}")


def _refused(exc: BaseException, dialect: str) -> bool:
    """The server refused the write and says it did not take effect (read-only, not in the primary component)."""
    if dialect == "postgresql":
        from psycopg import errors

        return isinstance(exc, errors.ReadOnlySqlTransaction)
    import pymysql

    return isinstance(exc, pymysql.err.MySQLError) and bool(exc.args) and exc.args[0] in MYSQL_REFUSED


def _upsert(namespace: str, dialect: str) -> str:
    if dialect == "postgresql":
        return (
            f"INSERT INTO {namespace}.{PROBES} (node, n) VALUES (%s, 1) "
            f"ON CONFLICT (node) DO UPDATE SET n = {PROBES}.n + 1"
        )
    return f"INSERT INTO {namespace}.{PROBES} (node, n) VALUES (%s, 1) ON DUPLICATE KEY UPDATE n = n + 1"


@dataclass
class TrialResult:
    trial: Trial
    history_ops: int
    rejoin_s: float | None
    converged: bool
    convergence: Text | str
    series: dict[str, Any]  # writes per second and latency, the fault shaded (the report's plot)
    healed_after_s: float | None = None  # a lifted fault: how long it held
    #: a lifted fault: from the heal until the victim first refused a write (a woken leader stepping down)
    stepped_down_s: float | None = None
    #: wall seconds of each step of the trial: ``ready`` (waiting for the previous fault's node and a synchronous
    #: standby), ``setup`` (tables, clients started), ``before`` (steady load before the fault), ``fault`` (from the
    #: fault until a write after it was acknowledged and a lifted fault lifted, plus the settle time), ``stop``
    #: (clients stopped), ``rejoin`` (the victim back), ``check`` (the final read and the judge)
    phases: dict[str, float] = field(default_factory=dict)
    #: the CPU the trial's clients (writers, readers, probers: threads of this process) spent, each thread's own
    #: ``time.thread_time``: how much of the machine the harness took from the cluster under test
    client_cpu_s: float = 0.0

    def imposed_s(self) -> float:
        """What the clause itself makes the trial wait: the outage (or the hold of a lifted fault) and the victim's
        rejoin.  The rest of :attr:`phases` is the harness's method and overhead."""
        return self.phases.get("fault", 0.0) + self.phases.get("rejoin", 0.0)


def _writer(target: HACluster[N], h: History, p: int, stop: threading.Event) -> None:
    dialect = target.dialect
    conn = None
    k = 0
    warned: list[str] = []
    while not stop.is_set():
        k += 1
        value = p * 1_000_000_000 + k
        i = h.invoke(p, WRITE, value)
        if conn is None:
            try:
                conn = target.connect()
                if hasattr(conn, "add_notice_handler"):  # psycopg: the server's warnings
                    conn.add_notice_handler(lambda d: warned.append(d.message_primary or ""))
                with conn.cursor() as cur:
                    _timeout(cur, dialect, 2000)
            except Exception:
                conn = None
                h.complete(i, "fail")  # nothing was sent
                time.sleep(0.1)
                continue
        try:
            warned.clear()
            with conn.cursor() as cur:
                cur.execute(f"INSERT INTO {TABLE} (id) VALUES (%s)", (value,))
            # a commit the server itself calls local only is not acknowledged as replicated: indeterminate
            h.complete(i, "info" if any(LOCAL_ONLY in w for w in warned) else "ok")
        except Exception as exc:
            # refused by a replica: it did not take effect; anything else after sending: outcome unknown
            h.complete(i, "fail" if _refused(exc, dialect) else "info")
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


def _reader(target: HACluster[N], node: N, h: History, p: int, stop: threading.Event) -> None:
    while not stop.is_set():
        i = h.invoke(p, READ)
        try:
            conn = target.connect_node(node, timeout=1)
            try:
                with conn.cursor() as cur:
                    _timeout(cur, target.dialect, 1000)
                    cur.execute(f"SELECT count(*) FROM {target.namespace}.{TABLE}")
                h.complete(i, "ok")
            finally:
                conn.close()
        except Exception:
            h.complete(i, "fail")
        time.sleep(0.05)


def _prober(target: HACluster[N], node: N, answers: list[Answer], stop: threading.Event) -> None:
    """Ask ``node`` 10×/s whether it accepts writes by making one; each answer with the instants it was asked and
    came (a commit that waits for a standby answers late)."""
    dialect, upsert = target.dialect, _upsert(target.namespace, target.dialect)
    conn = None
    while not stop.is_set():
        at = time.monotonic()
        ok: bool | None
        try:
            if conn is None:
                conn = target.connect_node(node, timeout=1)
            with conn.cursor() as cur:
                cur.execute(upsert, (node.name,))
            ok = True
        except Exception as exc:
            ok = False if _refused(exc, dialect) else None  # refused, or no answer: down, frozen, cut off
            if ok is None:
                _drop(conn)
                conn = None
        answers.append(Answer(at, time.monotonic(), node.name, ok))
        time.sleep(max(0.0, POLL_INTERVAL_S - (time.monotonic() - at)))
    _drop(conn)


def rounds(answers: list[Answer], nodes: list[str]) -> list[LeaderSample]:
    """The probers' answers as polling rounds of ``POLL_INTERVAL_S``, by the instant each probe was sent: in its
    round a node is writable if it acknowledged that write within ``TIMELY_S``, not writable if it refused it,
    and None if it gave no timely answer.  (A write sent before a freeze and acknowledged when the node wakes —
    its standby had confirmed it before the freeze — says nothing about the node accepting writes when it wakes:
    a node that does accepts the fresh probes of its own rounds.)"""
    if not answers:
        return []
    t0 = min(a.asked for a in answers)
    by_round: dict[int, dict[str, bool | None]] = {}
    for a in sorted(answers):
        r = by_round.setdefault(int((a.asked - t0) / POLL_INTERVAL_S), dict.fromkeys(nodes))
        ok = a.ok if a.answered - a.asked <= TIMELY_S else None
        if ok or r[a.node] is None:
            r[a.node] = ok
    return [LeaderSample(t0 + k * POLL_INTERVAL_S, w) for k, w in sorted(by_round.items())]


def run_trial(
    target: HACluster[N],
    *,
    fault: str,
    apply: Callable[[N], object],
    writers: int = 8,
    before_s: float = 3.0,
    settle_s: float = 3.0,
    deadline_s: float = 30.0,
    restore: Callable[[N], float] | None = None,
    heal: Callable[[N], object] | None = None,
    hold_s: float = 0.0,
    expect_leader_change: bool = True,
    converge_on: Callable[[N], N | None] | None = None,
    final_read_s: float = READ_S,
    heal_on_recovery: bool = False,
) -> TrialResult:
    """Run one trial: ``apply(victim)`` applies the fault to the current leader (the victim) and may return the
    ``time.monotonic()`` instant it took effect; ``heal(victim)``, for a fault that is lifted, lifts it ``hold_s``
    after, under load (or, with ``heal_on_recovery``, as soon as a write after the fault was acknowledged, if that
    comes first: a cut-off leader is let back into a cluster that has a new one); ``restore(victim)`` brings it back
    (or waits for it) and returns the seconds it took to rejoin (a victim that does not rejoin is a finding, not an
    error). ``converge_on(victim)`` names the node that must hold the leader's ids at the end (default: the victim);
    ``expect_leader_change`` False for a step that keeps the leader (scaling)."""
    phases: dict[str, float] = {}
    mark = [time.monotonic()]

    def phase(name: str) -> None:
        now = time.monotonic()
        phases[name] = round(phases.get(name, 0.0) + now - mark[0], 3)
        mark[0] = now

    wait_ready = getattr(target, "wait_ready", None)
    if wait_ready is not None:  # the previous trial's node back, a synchronous standby named again
        wait_ready()
    phase("ready")
    conn = target.connect()
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
        cur.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY)")
        key = "text" if target.dialect == "postgresql" else "varchar(64)"
        cur.execute(f"CREATE TABLE IF NOT EXISTS {PROBES} (node {key} PRIMARY KEY, n bigint)")
    conn.close()
    h, stop = History(), threading.Event()
    names = [n.name for n in target.nodes]  # a node may join or leave during the trial (scaling)
    answers: list[Answer] = []
    cpu: list[float] = []  # each client thread's own CPU, added as it ends

    def client(fn: Callable[..., None], *args: Any) -> threading.Thread:
        def run() -> None:
            t0 = time.thread_time()
            try:
                fn(*args)
            finally:
                cpu.append(time.thread_time() - t0)

        return threading.Thread(target=run, daemon=True)

    threads = [client(_writer, target, h, p, stop) for p in range(writers)]
    readers = {n.name: READERS + k for k, n in enumerate(target.nodes)}
    threads += [client(_reader, target, n, h, readers[n.name], stop) for n in target.nodes]
    threads += [client(_prober, target, n, answers, stop) for n in target.nodes]
    for t in threads:
        t.start()
    victim, healed_at = None, None
    phase("setup")
    try:
        time.sleep(before_s)
        victim = target.leader()
        if victim is None:
            raise ClauseproofError(f"{target.label}: no node is named leader before the fault", fix="see its logs")
        phase("before")
        fault_at = time.monotonic()
        applied = apply(victim)  # a fault that knows when it took effect returns that instant
        # in effect once apply returned (a kill: its server seen to stop): a write invoked before may have been the
        # victim's own last one (seen: acknowledged 3 ms after the SIGKILLs went out, by the dying leader)
        effective_at = time.monotonic()
        if isinstance(applied, float):
            fault_at = applied
        # until a write invoked after the fault took effect is acknowledged and a lifted fault was lifted (at fault +
        # hold_s)
        while time.monotonic() - fault_at < deadline_s:
            n = h.n
            done = ((h.kind[:n] == WRITE) & (h.outcome[:n] == 0) & (h.invoked[:n] >= effective_at)).any()
            due = time.monotonic() >= fault_at + hold_s or (heal_on_recovery and done)
            if heal is not None and healed_at is None and due:
                healed_at = time.monotonic()
                heal(victim)
            if done and (heal is None or healed_at is not None):
                break
            time.sleep(0.05)
        if heal is not None and healed_at is None:  # the deadline came first
            healed_at = time.monotonic()
            heal(victim)
        time.sleep(settle_s)
        end_at = time.monotonic()
        phase("fault")
    finally:
        if heal is not None and victim is not None and healed_at is None:
            heal(victim)  # an error or an interrupt while the fault held: never leave the node frozen or cut off
        stop.set()
        for t in threads:
            t.join(10)
    h.close()
    phase("stop")
    samples = rounds(answers, list(dict.fromkeys(names + [n.name for n in target.nodes])))
    rejoin_s: float | None = None
    rejoin_problem: Text | str = ""
    if restore is not None:
        restore_at = time.monotonic()
        try:
            rejoin_s = restore(victim)
            if healed_at is not None:  # a lifted fault: the rejoin counts from the heal
                rejoin_s += restore_at - healed_at
        except ClauseproofError as exc:
            rejoin_problem = msg("conv_not_rejoined", node=victim.name, error=str(exc).splitlines()[0])
        phase("rejoin")
    final, converged, convergence = _final_read(
        target, converge_on(victim) if converge_on else victim, read_s=final_read_s
    )
    if rejoin_problem:
        converged, convergence = False, rejoin_problem
    trial = judge(
        h,
        fault=fault,
        fault_at=fault_at,
        end_at=end_at,
        final_ids=final,
        leaders=samples,
        deadline_s=deadline_s,
        victim=victim.name,
        healed_at=healed_at,
        victim_readers=[readers[victim.name]],
        expect_leader_change=expect_leader_change,
        multi_writer=bool(getattr(target, "multi_writer", False)),
        effective_at=effective_at,
    )
    series = h.series(fault_at, fault_at + trial.rto_s)
    held, stepped_down = None, None
    if healed_at is not None:
        held = healed_at - fault_at
        refused = [a.answered for a in answers if a.node == victim.name and a.asked >= healed_at and a.ok is False]
        stepped_down = min(refused) - healed_at if refused else None
    phase("check")
    return TrialResult(trial, h.n, rejoin_s, converged, convergence, series, held, stepped_down, phases, sum(cpu))


def _final_read(
    target: HACluster[N], rejoined: N | None, timeout: float = 30.0, read_s: float = READ_S
) -> tuple[list[int] | None, bool, Text | str]:
    """Every id the leader holds (None when no leader answered within ``read_s``: nothing could be checked);
    whether the rejoined node holds the same (count and sum), waited for."""
    ids, deadline, error = None, time.monotonic() + read_s, ""
    while ids is None and time.monotonic() < deadline:
        try:
            conn = target.connect()
            try:
                with conn.cursor() as cur:
                    cur.execute(f"SELECT id FROM {TABLE}")
                    ids = [r[0] for r in cur.fetchall()]
            finally:
                conn.close()
        except Exception as exc:
            error = first_line(exc)
            time.sleep(0.5)
    if ids is None:
        return None, False, msg("conv_no_leader", read_s=f"{read_s:g}", error=str(error))
    if rejoined is None:
        return ids, False, msg("conv_no_rejoin")
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
                return ids, True, msg("conv_holds", node=rejoined.name, n=want[0])
        except Exception:
            got = None  # not answering yet
        time.sleep(0.5)
    return ids, False, msg("conv_held", node=rejoined.name, got=str(got), want=str(want), timeout=f"{timeout:g}")


@dataclass
class ScaleResult:
    result: TrialResult
    added: str
    joined_s: float | None  # from the add until the new node streams as a replica
    removed: str
    removed_s: float  # the clean stop of the removed node


def scale_out_in(
    target: HACluster[N], join_timeout_s: float = 120.0, on_added: Callable[[N], None] | None = None
) -> ScaleResult:
    """Scale out and in under the trial's load: a node is added (``target.add_node()``) and waited for until it
    streams; then the synchronous standby (else a replica), not the new node, is removed
    (``target.remove_node()``).  The new node must hold the leader's ids at the end; the leader does not change."""
    figures: dict[str, Any] = {}

    def step(leader: N) -> None:
        started = time.monotonic()
        new = target.add_node()
        figures["added"] = new
        try:
            figures["joined_s"] = target.wait_rejoin(new, join_timeout_s, since=started)
        except ClauseproofError:
            figures["joined_s"] = None
        if on_added is not None:  # the suite proves the new node a new server
            on_added(new)
        gone = target.sync_standby()
        if gone is None or gone.name in (new.name, leader.name):
            gone = next(n for n in target.nodes if n.name not in (new.name, leader.name))
        at = time.monotonic()
        target.remove_node(gone)
        figures["removed"], figures["removed_s"] = gone.name, time.monotonic() - at

    r = run_trial(
        target,
        fault="scale out and in",
        apply=step,
        expect_leader_change=False,
        converge_on=lambda _leader: figures["added"],
    )
    return ScaleResult(r, figures["added"].name, figures["joined_s"], figures["removed"], figures["removed_s"])
