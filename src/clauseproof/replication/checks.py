"""Replicated topologies and the checks of SX-RDS-2: replicas, write placement, read balance, lag.

The checks take a :class:`~clauseproof.targets.clusters.topology.Topology`, what a replicated target is made
of (the target describes it; the checks judge it).

Every read reports the node that served it *inside the same statement*
(``inet_server_addr()``/``inet_server_port()`` on PostgreSQL, ``@@server_id``/``@@hostname``/
``@@port`` on the MySQL family); a node's identity is learnt by asking it directly.  The
identities are cross-checked with each node's own counters (scans of the probe table in
``pg_stat_user_tables``, ``Com_select``).  Balance is judged by a chi-square goodness-of-fit
test of the nodes that served the first read of each new session (sessions are independent
even when a pool pins a session to one node), against the configured weights.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from clauseproof.core.i18n import Text, msg
from clauseproof.replication.replicas import (
    IDENTITY,
    MARKER_TABLE,
    READ_TABLE,
    WRITE_TABLE,
    _connection,
    _first_line,
    _one,
    identity_of,
)
from clauseproof.targets.clusters.topology import Node, Topology


@dataclass
class WritePlacement:
    writes: int
    connections: int
    primary_identity: str
    served_by: dict[str, int]
    rows_on_primary: int
    primary_counter_delta: int
    counter: str
    errors: list[str] = field(default_factory=list)

    @property
    def all_on_primary(self) -> bool:
        return (
            not self.errors
            and set(self.served_by) == {self.primary_identity}
            and self.rows_on_primary == self.writes
            and self.primary_counter_delta >= self.writes
        )


def _insert_counter(topology: Topology, conn: Any) -> int:
    if topology.dialect == "postgresql":
        _one(conn, "SELECT pg_stat_clear_snapshot()")
        v = _one(
            conn,
            "SELECT n_tup_ins FROM pg_stat_user_tables WHERE schemaname = %s AND relname = %s",
            (topology.namespace, WRITE_TABLE),
        )
        return int(v or 0)
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Com_insert'")
        return int(cur.fetchone()[1])


def write_placement(topology: Topology, writes: int = 200, connections: int = 10) -> WritePlacement:
    """Send ``writes`` inserts through the write endpoint over new connections; where did each run?"""
    ns = topology.namespace
    with _connection(topology, topology.primary.endpoint) as conn:
        primary_id = identity_of(conn, topology.dialect)
        before = _insert_counter(topology, conn)
    served: Counter[str] = Counter()
    errors: list[str] = []
    per_conn = -(-writes // connections)
    done = 0
    for _ in range(connections):
        try:
            with _connection(topology, topology.write) as conn, conn.cursor() as cur:
                for _ in range(min(per_conn, writes - done)):
                    token = "w" + secrets.token_hex(8)
                    cur.execute(
                        f"INSERT INTO {ns}.{WRITE_TABLE} (token, served_by) VALUES (%s, {IDENTITY[topology.dialect]})",
                        (token,),
                    )
                    done += 1
        except Exception as exc:
            errors.append(_first_line(exc))
    with _connection(topology, topology.primary.endpoint) as conn:
        with conn.cursor() as cur:
            cur.execute(f"SELECT served_by, count(*) FROM {ns}.{WRITE_TABLE} GROUP BY served_by")
            for who, n in cur.fetchall():
                served[str(who)] += int(n)
        after = _wait_counter(lambda: _insert_counter(topology, conn), before + done)
    return WritePlacement(
        writes=done,
        connections=connections,
        primary_identity=primary_id,
        served_by=dict(served),
        rows_on_primary=sum(served.values()),
        primary_counter_delta=after - before,
        counter="pg_stat_user_tables.n_tup_ins of the probe table on the primary"
        if topology.dialect == "postgresql"
        else "Com_insert on the primary",
        errors=errors,
    )


def _wait_counter(read: Any, at_least: int, limit_s: float = 3.0) -> int:
    """Read a statistics counter until it reaches ``at_least`` or time runs out (backends flush their
    statistics when their sessions end, a moment after the client has closed them)."""
    deadline = time.monotonic() + limit_s
    value = int(read())
    while value < at_least and time.monotonic() < deadline:
        time.sleep(0.1)
        value = int(read())
    return value


# -- reads --------------------------------------------------------------------------------------
@dataclass
class ReadBalance:
    clients: int
    sessions: int
    reads: int
    alpha: float
    #: node name -> configured weight
    weights: dict[str, float]
    #: node name -> reads it served, as the statements reported
    reads_by_node: dict[str, int]
    #: node name -> first reads of sessions it served (the chi-square sample)
    sessions_by_node: dict[str, int]
    #: node name -> reads its own counter saw (proxy-independent)
    counter_by_node: dict[str, int]
    counter: str
    unknown_identities: dict[str, int]
    pinned_sessions: int
    chi2: float
    dof: int
    p_value: float
    seconds: float
    max_concurrent: int
    errors: list[str] = field(default_factory=list)
    problems: list[Text | str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return not self.problems

    def evidence(self) -> dict[str, Any]:
        return asdict(self)


def _read_counters(topology: Topology, nodes: list[Node] | None = None) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for node in topology.nodes if nodes is None else nodes:
        try:
            with _connection(topology, node.endpoint) as conn:
                if topology.dialect == "postgresql":
                    v = _one(
                        conn,
                        "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables "
                        "WHERE schemaname = %s AND relname = %s",
                        (topology.namespace, READ_TABLE),
                    )
                    out[node.name] = int(v or 0)
                else:
                    with conn.cursor() as cur:
                        cur.execute("SHOW GLOBAL STATUS LIKE 'Com_select'")
                        out[node.name] = int(cur.fetchone()[1])
        except Exception:
            out[node.name] = None
    return out


def node_identities(topology: Topology) -> dict[str, str]:
    """identity -> node name, each node asked directly."""
    ids: dict[str, str] = {}
    for node in topology.nodes:  # one server behind two endpoints keeps the first node's name
        with contextlib.suppress(Exception), _connection(topology, node.endpoint) as conn:
            ids.setdefault(identity_of(conn, topology.dialect), node.name)
    return ids


@dataclass
class _Reads:
    """What the read clients saw: identities of the nodes that served reads, and of each session's first read."""

    reads: Counter[str] = field(default_factory=Counter)
    firsts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    pinned: int = 0
    max_active: int = 0
    seconds: float = 0.0


def read_balance(
    topology: Topology,
    *,
    clients: int = 50,
    sessions_per_client: int = 20,
    reads_per_session: int = 5,
    alpha: float = 0.01,
    time_limit_s: float = 180.0,
    verified: set[str] | None = None,
) -> ReadBalance:
    """``clients`` concurrent clients, each opening ``sessions_per_client`` new sessions on the
    read endpoint and reading ``reads_per_session`` rows in each; who served what, and is it balanced?

    ``verified`` names the replicas shown to replicate (``replica_states``); a read served by any
    other replica is a problem.  Balance needs at least two read nodes with a positive weight."""
    who = node_identities(topology)
    before = _read_counters(topology)
    seen = _drive_reads(topology, clients, sessions_per_client, reads_per_session, time_limit_s)
    after = _read_counters(topology)
    names = [n.name for n in topology.nodes]
    by_node, unknown = _by_node(seen.reads, who, names)
    first_by_node, _ = _by_node(seen.firsts, who, names)
    problems: list[Text | str] = []
    counters = _counter_deltas(topology, before, after, by_node, problems)
    weights = {n.name: n.weight for n in topology.nodes}
    chi2, p, dof = _chi_square(names, weights, by_node, first_by_node, alpha, problems)
    _placement_problems(topology, weights, by_node, counters, verified, problems)
    if unknown:
        problems.append(msg("rw_outside", nodes=str(unknown)))
    if seen.errors:
        problems.append(msg("rw_client_errors", n=len(seen.errors), first=str(seen.errors[0])))
    if seen.max_active < clients:
        problems.append(msg("rw_few_clients", n=seen.max_active, wanted=clients))
    return ReadBalance(
        clients=clients,
        sessions=clients * sessions_per_client,
        reads=sum(seen.reads.values()),
        alpha=alpha,
        weights=weights,
        reads_by_node=by_node,
        sessions_by_node=first_by_node,
        counter_by_node=counters,
        counter="scans of the probe table in pg_stat_user_tables (seq_scan + idx_scan)"
        if topology.dialect == "postgresql"
        else "Com_select",
        unknown_identities=unknown,
        pinned_sessions=seen.pinned,
        chi2=chi2,
        dof=dof,
        p_value=p,
        seconds=round(seen.seconds, 3),
        max_concurrent=seen.max_active,
        errors=seen.errors[:20],
        problems=problems,
    )


def _drive_reads(
    topology: Topology, clients: int, sessions_per_client: int, reads_per_session: int, time_limit_s: float
) -> _Reads:
    """The clients, concurrently, each a new session at a time on the read endpoint; every client holds its
    first session open until all are connected, so the endpoint sees ``clients`` sessions at once."""
    sql = f"SELECT {IDENTITY[topology.dialect]}, v FROM {topology.namespace}.{READ_TABLE} WHERE id = %s"
    seen = _Reads()
    lock = threading.Lock()
    active = 0
    connected = threading.Barrier(clients)
    deadline = time.monotonic() + time_limit_s

    def client(k: int) -> None:
        nonlocal active
        for s in range(sessions_per_client):
            if time.monotonic() > deadline:
                with lock:
                    seen.errors.append(f"client {k}: time limit of {time_limit_s:g} s reached after {s} sessions")
                return
            served: list[str] = []
            try:
                conn = topology.open(topology.read)
                with lock:
                    active += 1
                    seen.max_active = max(seen.max_active, active)
                try:
                    if s == 0:
                        with contextlib.suppress(threading.BrokenBarrierError):
                            connected.wait(timeout=60)
                    with conn.cursor() as cur:
                        for r in range(reads_per_session):
                            cur.execute(sql, (1 + (k * 7 + s * 3 + r) % 100,))
                            ident, v = cur.fetchone()
                            if not v:
                                raise RuntimeError("probe row not found")
                            served.append(str(ident))
                finally:
                    with lock:
                        active -= 1
                    conn.close()
            except Exception as exc:
                with lock:
                    seen.errors.append(f"client {k}: {_first_line(exc)}")
            with lock:
                seen.reads.update(served)
                if served:
                    seen.firsts[served[0]] += 1
                    if reads_per_session > 1 and len(set(served)) == 1:
                        seen.pinned += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(client, range(clients)))
    seen.seconds = time.perf_counter() - started
    return seen


def _by_node(counts: Counter[str], who: dict[str, str], names: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Counts by identity turned into counts by node name, and the identities of no node."""
    by_node = {n: 0 for n in names}
    unknown: dict[str, int] = {}
    for ident, n in counts.items():
        if ident in who:
            by_node[who[ident]] += n
        else:
            unknown[ident] = n
    return by_node, unknown


def _counter_deltas(
    topology: Topology,
    before: dict[str, int | None],
    after: dict[str, int | None],
    by_node: dict[str, int],
    problems: list[Text | str],
) -> dict[str, int]:
    """Each node's own read counter over the run (statistics flush lazily: a lagging one gets a moment)."""
    counters: dict[str, int] = {}
    for node in topology.nodes:
        name = node.name
        b, a = before.get(name), after.get(name)
        if b is None or a is None:
            problems.append(msg("rw_counter_unread", node=name))
            continue
        counters[name] = a - b
        if counters[name] < by_node[name]:
            counters[name] = _settle(topology, name, b, by_node[name])
    return counters


def _chi_square(
    names: list[str],
    weights: dict[str, float],
    by_node: dict[str, int],
    first_by_node: dict[str, int],
    alpha: float,
    problems: list[Text | str],
) -> tuple[float, float, int]:
    """Goodness of fit of the sessions' first reads against the configured weights: (chi2, p, dof)."""
    from scipy.stats import chisquare

    wsum = sum(weights.values())
    total_first = sum(first_by_node.values())
    observed, expected = [], []
    for name in names:
        share = weights[name] / wsum if wsum else 0.0
        if share == 0 and first_by_node[name]:
            problems.append(msg("rw_served_unweighted", node=name, reads=by_node[name]))
        if share > 0:
            observed.append(first_by_node[name])
            expected.append(share * total_first)
    chi2, p = float("nan"), 0.0
    if total_first and len(observed) > 1 and sum(observed) == total_first:
        res = chisquare(observed, expected)
        chi2, p = float(res.statistic), float(res.pvalue)
        if p < alpha:
            problems.append(
                msg("rw_chi_square", chi2=f"{chi2:.2f}", dof=len(observed) - 1, p=f"{p:.3g}", alpha=f"{alpha:g}")
            )
    elif total_first and len(observed) == 1 and sum(observed) == total_first:
        chi2, p = 0.0, 1.0
    elif not total_first:
        problems.append(msg("rw_no_read"))
    return chi2, p, max(len(observed) - 1, 0)


def _placement_problems(
    topology: Topology,
    weights: dict[str, float],
    by_node: dict[str, int],
    counters: dict[str, int],
    verified: set[str] | None,
    problems: list[Text | str],
) -> None:
    """Replicas that served nothing or were not verified, fewer than two read nodes, counters that disagree."""
    for node in topology.replicas:
        if node.weight > 0 and by_node[node.name] == 0:
            problems.append(msg("rw_served_none", node=node.name))
        if verified is not None and node.name not in verified and by_node[node.name]:
            problems.append(msg("rw_not_verified", node=node.name, reads=by_node[node.name]))
    readers = [
        n.name
        for n in topology.nodes
        if n.weight > 0 and (verified is None or n.name in verified or n is topology.primary)
    ]
    if len(readers) < 2:
        problems.append(msg("rw_two_readers", weights=str(weights),
                            verified=str(sorted(verified)) if verified is not None else "—"))  # fmt: skip
    for node in topology.nodes:
        c = counters.get(node.name)
        if c is not None and abs(c - by_node[node.name]) > max(2, 0.01 * by_node[node.name]):
            problems.append(msg("rw_counter_differs", node=node.name, counted=c, reported=by_node[node.name]))


def _settle(topology: Topology, name: str, before: int, want: int) -> int:
    node = next(n for n in topology.nodes if n.name == name)

    def read() -> int:
        return (_read_counters(topology, [node]).get(name) or before) - before

    return _wait_counter(read, want)


# -- read-your-writes ---------------------------------------------------------------------------
@dataclass
class ReadYourWrites:
    attempts: int
    #: Reads in the writing session that saw the write at once (None: two endpoints, the session
    #: that writes does not read through the read endpoint).
    same_session_seen: int | None
    new_session_seen: int
    #: Seconds until a new session on the read endpoint saw the write, per attempt (None: never, within the limit).
    new_session_visible_after_s: list[float | None]


def read_your_writes(topology: Topology, attempts: int = 20, limit_s: float = 5.0) -> ReadYourWrites:
    """Write a token and read it back at once in the same session and in a new session."""
    ns = topology.namespace
    same: int | None = 0 if topology.automatic_split else None
    new = 0
    visible: list[float | None] = []
    with _connection(topology, topology.write) as wconn:
        for _ in range(attempts):
            token = "r" + secrets.token_hex(8)
            with wconn.cursor() as cur:
                cur.execute(f"INSERT INTO {ns}.{MARKER_TABLE} (token) VALUES (%s)", (token,))
            t0 = time.perf_counter()
            if same is not None:
                same += int(_one(wconn, f"SELECT count(*) FROM {ns}.{MARKER_TABLE} WHERE token = %s", (token,)))
            after: float | None = None
            with _connection(topology, topology.read) as rconn:
                first = True
                while True:
                    seen = int(_one(rconn, f"SELECT count(*) FROM {ns}.{MARKER_TABLE} WHERE token = %s", (token,)))
                    if seen:
                        after = round(time.perf_counter() - t0, 4)
                        new += int(first)
                        break
                    first = False
                    if time.perf_counter() - t0 > limit_s:
                        break
                    time.sleep(0.001)
            visible.append(after)
    return ReadYourWrites(attempts, same, new, visible)
