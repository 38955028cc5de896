"""The sync cases' work, apart from their evidence: each returns :class:`Part` rows the suite records and the
self-tests judge (a cheating sync must come out FAIL).

Every scenario makes its own tables, starts its tasks, writes on the source, waits on a marker barrier and
ends in the checker; it drops its tasks and tables afterwards, whatever happened.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from clauseproof.core.i18n import Text, joined, msg
from clauseproof.sync.checker import Checker, Side, TableCheck
from clauseproof.sync.flow import (
    CHANGE_TARGET,
    MARKER_TARGET,
    ORDERS_SOURCE,
    ORDERS_TARGET,
    ChangeMarkers,
    LoadReport,
    Markers,
    SourceLoad,
    barrier,
    execute,
    fill_orders,
    marker_copies,
    percentiles,
    sentinel,
    source_ddl,
)
from clauseproof.sync.mapping import ColumnMap, TableMap
from clauseproof.targets.roles import SyncSystem

ORDERS = TableMap(
    "orders",
    "orders",
    "id",
    (
        ColumnMap("id", kind="int"),
        ColumnMap("customer", kind="int"),
        ColumnMap("amount", kind="decimal", scale=2),
        ColumnMap("status"),
        ColumnMap("note"),
        ColumnMap("updated_at", kind="timestamptz"),
    ),
)
MARKERS = TableMap(
    "cp_marker",
    "cp_marker",
    "id",
    (ColumnMap("id", kind="int"), ColumnMap("origin"), ColumnMap("committed_at", kind="timestamptz")),
)
FIRST_ROWS = 20_000
SECOND_SOURCE = 1_000_000_000  # the key range of a second source (many-to-one)


@dataclass
class Part:
    """One judged part of a clause: shown (True), disproven (False) or not shown (None)."""

    clause: str
    name: str | Text  # a Text where the report should say it in its language (its English is the key)
    ok: bool | None
    statistic: str | Text
    why: str | Text = ""
    data: dict[str, Any] = field(default_factory=dict)


def _side(sys: SyncSystem, node: str) -> Side:
    return Side(node, sys.dialect_of(node), lambda: sys.node_connect(node))  # type: ignore[arg-type]


def check(sys: SyncSystem, source: str, target: str, tm: TableMap) -> TableCheck:
    return Checker(_side(sys, source), _side(sys, target)).check(tm)


def _run_sql(sys: SyncSystem, node: str, *sql: str) -> None:
    with contextlib.closing(sys.node_connect(node)) as conn:
        for s in sql:
            execute(conn, s)


@contextlib.contextmanager
def scenario(sys: SyncSystem, nodes: list[str], tables: tuple[str, ...] = ("orders", "cp_marker")) -> Iterator[None]:
    """Drop whatever tasks and tables the scenario leaves, even when it fails."""
    try:
        for n in nodes:
            _run_sql(sys, n, *(f"DROP TABLE IF EXISTS {t}" for t in tables))
        yield
    finally:
        for name in list(sys.tasks):
            with contextlib.suppress(Exception):
                sys.drop_task(name)
        for n in nodes:
            with contextlib.suppress(Exception):
                _run_sql(sys, n, *(f"DROP TABLE IF EXISTS {t}" for t in tables))


def prepare(
    sys: SyncSystem, source: str, targets: list[str], first: int = 1, rows: int = FIRST_ROWS, changes: bool = False
) -> None:
    """orders (filled) and markers on the source, their copies (empty, no key constraint) on each target; with
    ``changes``, the change-kind markers' table too (a key on both sides)."""
    with contextlib.closing(sys.node_connect(source)) as conn:
        for ddl in source_ddl(conn, changes):
            execute(conn, "CREATE TABLE IF NOT EXISTS " + ddl.removeprefix("CREATE TABLE "))
        fill_orders(conn, rows, first)
    for t in targets:
        _run_sql(
            sys,
            t,
            "CREATE TABLE IF NOT EXISTS " + ORDERS_TARGET.removeprefix("CREATE TABLE "),
            "CREATE TABLE IF NOT EXISTS " + MARKER_TARGET.removeprefix("CREATE TABLE "),
            *(["CREATE TABLE IF NOT EXISTS " + CHANGE_TARGET.removeprefix("CREATE TABLE ")] if changes else []),
        )


def _stalls(report: LoadReport, t0: float, t1: float) -> list[int]:
    """Whole seconds in [t0, t1) without a single write on the source."""
    return [s for s in range(int(t0), int(t1)) if not report.per_second.get(s)]


def _equal_part(clause: str, name: str | Text, checks: list[TableCheck], what: str | Text) -> Part:
    bad = [c for c in checks if not c.equal]
    return Part(
        clause,
        name,
        not bad,
        msg("checker_said", what=what, summary=joined([c.summary_text(3) for c in checks])),
        why=joined([c.summary_text(5) for c in bad]),
        data={"checks": [c.evidence() for c in checks]},
    )


# -- BZ-SYNC-4 and BZ-SYNC-2 -------------------------------------------------------------------------------------
def capture_online(
    sys: SyncSystem,
    params: dict[str, Any],
    *,
    before_s: float = 3.0,
    timeout_s: float = 120.0,
    publish: str = "insert, update, delete",
) -> list[Part]:
    """The source writes steadily; the task is created, copies and streams; markers of every change kind measure
    the delay (the worst kind decides), and the final barrier waits on every kind."""
    a, b = "a", "b"
    src = lambda: sys.node_connect(a)  # noqa: E731
    dst = lambda: sys.node_connect(b)  # noqa: E731
    parts: list[Part] = []
    with scenario(sys, [a, b], ("orders", "cp_marker", "cp_change")):
        prepare(sys, a, [b], changes=True)
        load = SourceLoad(src, FIRST_ROWS + 1, rate=params["load_per_s"], max_s=timeout_s * 3)
        markers = Markers(src, dst, "a", per_second=params["markers_per_s"], max_s=timeout_s * 3)
        changes = ChangeMarkers(src, dst, "a", per_second=params["markers_per_s"], max_s=timeout_s * 3)
        load.start()
        try:
            time.sleep(before_s)
            t_create = load.elapsed()
            sys.create_task("cp_capture", a, b, ["orders", "cp_marker", "cp_change"], publish=publish)
            markers.start()
            changes.start()
            caught = sentinel(src, dst, timeout_s)
            t_sync = load.elapsed()
            window_from = time.time()
            time.sleep(params["window_s"])
            window_to = time.time()
        finally:
            report = load.stop()
            markers.pause()
            changes.pause()
        final = barrier(markers, src, timeout_s)
        every_kind = changes.wait_all(timeout_s, since=window_from)
        final_orders = sentinel(src, dst, timeout_s)
        markers.stop()
        changes.stop()
        checks = [check(sys, a, b, ORDERS), check(sys, a, b, MARKERS)]
    before = report.rate(0, t_create)
    during = report.rate(t_create, t_sync)
    stalls = _stalls(report, 0, report.seconds)
    rates = dict(
        before=f"{before:.0f}",
        during=f"{during:.0f}",
        ops=report.ops,
        bulk=report.bulk_transactions,
        errors=len(report.errors),
    )
    data = {
        "load": vars(report) | {"per_second": report.per_second},
        # what the clause made the case wait: the steady load before the task, the system's copy and catch-up under
        # it, and the window the delay is measured over (the run's cost counts it apart from the harness's work)
        "imposed_s": round(t_sync + (window_to - window_from), 3),
        "caught_up_s": caught,
        "final_barrier_s": {"markers": final, "orders": final_orders, "every change kind arrived": every_kind},
    }
    parts.append(
        Part(
            "BZ-SYNC-4",
            msg("name_source_never_stopped"),
            not report.errors and not stalls and caught is not None,
            msg("source_rates_caught", **rates, caught=f"{caught:.1f}")
            if caught is not None
            else msg("source_rates", **rates),
            why=joined(
                [
                    msg("sync_source_write_errors", errors=str(report.errors[:3])) if report.errors else "",
                    msg("sync_source_stalls", seconds=str(stalls[:10])) if stalls else "",
                    "" if caught is not None else msg("sync_not_caught_up", seconds=f"{timeout_s:g}"),
                ]
            ),
            data=data,
        )
    )
    parts.append(
        _equal_part(
            "BZ-SYNC-4",
            msg("name_snapshot_incremental"),
            checks,
            msg("after_final_barrier"),
        )
    )
    window = markers.delays(window_from, window_to)
    committed = [m for m, c in markers.committed.items() if window_from <= c < window_to]
    lost = [m for m in committed if m not in markers.seen]
    rate = len(committed) / max(1e-9, window_to - window_from)
    parts.append(delay_part(params, window, len(lost), rate, changes.by_kind(window_from, window_to),
                            window_to - window_from, every_kind))  # fmt: skip
    return parts


def delay_part(
    params: dict[str, Any],
    inserts: list[float],
    inserts_lost: int,
    rate: float,
    kinds: dict[str, tuple[list[float], int]],
    seconds: float,
    every_kind: bool = True,
) -> Part:
    """BZ-SYNC-2 judged on the worst change kind: the insert markers (``cp_marker``, ≥ 10/s) and the change-kind
    markers' inserts, updates, deletes and key changes, each its own p99 and max against the plan's bounds."""
    p99_max, max_max = params["plan_p99_s"], params["plan_max_s"]
    series = {"insert": (inserts + kinds.get("insert", ([], 0))[0], inserts_lost + kinds.get("insert", ([], 0))[1])}
    series.update({k: v for k, v in kinds.items() if k != "insert"})
    stats = {k: percentiles(d) for k, (d, _) in series.items()}
    described = "; ".join(
        f"{k} {len(d)} (p99 {stats[k].get('p99', float('nan')) * 1000:.0f} ms, max "
        f"{stats[k].get('max', float('nan')) * 1000:.0f} ms{f', {n} never arrived' if n else ''})"
        for k, (d, n) in series.items()
    )
    lat = msg(
        "delay_markers",
        seconds=f"{seconds:.1f}",
        load=params["load_per_s"],
        described=described,
        p99=f"{p99_max:g}",
        max=f"{max_max:g}",
    )
    few = [k for k, (d, n) in series.items() if len(d) + n < 3]
    problems: list[Text | str] = []
    for k, (_, n) in series.items():
        if n:
            problems.append(msg("sync_markers_lost", n=n, kind=k))
        st = stats[k]
        if st and st["p99"] > p99_max:
            problems.append(msg("sync_p99_over", kind=k, p99=f"{st['p99']:.3f}", limit=f"{p99_max:g}"))
        if st and st["max"] > max_max:
            problems.append(msg("sync_max_over", kind=k, max=f"{st['max']:.3f}", limit=f"{max_max:g}"))
    if not every_kind:
        problems.append(msg("sync_barrier"))
    if rate < 10 or few:
        why = (msg("sync_slow_writer", rate=f"{rate:.1f}") if rate < 10
               else msg("sync_few_markers", kinds=", ".join(few)))  # fmt: skip
        return Part("BZ-SYNC-2", msg("name_real_time_delay"), None, lat, why=why, data={"stats": stats})
    return Part(
        "BZ-SYNC-2",
        msg("name_real_time_delay"),
        not problems,
        lat,
        why=joined(problems),
        data={"delays_s": {k: [round(x, 4) for x in d] for k, (d, _) in series.items()}, "stats": stats},
    )


# -- BZ-SYNC-5 ---------------------------------------------------------------------------------------------------
def _short_load(sys: SyncSystem, sources: dict[str, int], seconds: float, rate: float) -> list[LoadReport]:
    loads = [
        SourceLoad(lambda n=n: sys.node_connect(n), first, rate=rate, max_s=seconds + 5, seed=i)  # type: ignore[misc]
        for i, (n, first) in enumerate(sources.items())
    ]
    for ld in loads:
        ld.start()
    time.sleep(seconds)
    return [ld.stop() for ld in loads]


def _barrier_to(sys: SyncSystem, source: str, target: str, origin: str, first_id: int, timeout: float) -> float | None:
    """A marker and a sentinel order from ``source`` through to ``target``: seconds until both arrived."""
    src, dst = (lambda: sys.node_connect(source)), (lambda: sys.node_connect(target))
    t0 = time.monotonic()
    m = Markers(src, dst, origin, first_id=first_id)
    m.start()
    m.pause()
    try:
        if barrier(m, src, timeout) is None:
            return None
    finally:
        m.stop()
    if sentinel(src, dst, timeout, base=0 if source == "a" else SECOND_SOURCE + 500_000_000) is None:
        return None
    return time.monotonic() - t0


def topologies(sys: SyncSystem, *, seconds: float = 3.0, rate: float = 100, timeout: float = 120) -> list[Part]:
    parts: list[Part] = []

    def run(
        name: str, label: Text, tasks: list[tuple[str, str, str]], pairs: list[tuple[str, str, TableMap]], **kw: Any
    ) -> None:
        """``name``: the topology's marker origin (ASCII); ``label``: what the report calls it."""
        nodes = sorted({n for _, s, t in tasks for n in (s, t)})
        sources = sorted({s for _, s, _ in tasks} - {t for _, _, t in tasks})
        with scenario(sys, nodes):
            for s in sources:
                first = 1 if s == "a" else SECOND_SOURCE
                prepare(sys, s, [], first)
            for n in set(nodes) - set(sources):
                prepare_target(
                    sys, n, cascade=any(s == n for _, s, _ in tasks), ddl=kw.get("target_ddl", ORDERS_TARGET)
                )
            for task, s, t in tasks:
                sys.create_task(task, s, t, kw.get("tables", ["orders", "cp_marker"]), **kw.get("options", {}))
            firsts = {s: (1 if s == "a" else SECOND_SOURCE) + FIRST_ROWS for s in sources}
            reports = _short_load(sys, firsts, seconds, rate)
            waits = {
                f"{s}→{t}": _barrier_to(sys, s, t, f"{name}-{s}-{t}", 10_000_000 * (i + 1), timeout)
                for i, (s, t, _) in enumerate(pairs)
            }
            checks = [check(sys, s, t, tm) for s, t, tm in pairs]
        errors = [e for r in reports for e in r.errors]
        arrows = ", ".join(f"{s}→{t}" for _, s, t in tasks)
        part = _equal_part("BZ-SYNC-5", label, checks, msg("topology_tasks", topology=label, tasks=arrows))
        late = [k for k, v in waits.items() if v is None]
        if late or errors:
            part.ok = False
            part.why = joined([
                part.why,
                msg("sync_markers_not_through", pairs=str(late)) if late else "",
                msg("sync_load_errors", errors=str(errors[:3])) if errors else "",
            ])  # fmt: skip
        part.data |= {"barrier_s": waits, "ops": [r.ops for r in reports]}
        parts.append(part)

    low = replace(ORDERS, target_where=f"id < {SECOND_SOURCE}")
    high = replace(ORDERS, source_where="", target_where=f"id >= {SECOND_SOURCE}")
    run("one-to-one, by table", msg("topo_one_to_one"), [("cp_t11", "a", "b")], [("a", "b", ORDERS)])
    run(
        "one-to-many",
        msg("topo_one_to_many"),
        [("cp_t1b", "a", "b"), ("cp_t1c", "a", "c")],
        [("a", "b", ORDERS), ("a", "c", ORDERS)],
    )
    run(
        "many-to-one",
        msg("topo_many_to_one"),
        [("cp_tac", "a", "c"), ("cp_tbc", "b", "c")],
        [("a", "c", low), ("b", "c", high)],
    )
    run(
        "cascade",
        msg("topo_cascade"),
        [("cp_tab", "a", "b"), ("cp_tbc2", "b", "c")],
        [("a", "b", ORDERS), ("a", "c", ORDERS)],
    )
    run("by user", msg("topo_by_user"), [("cp_tu", "a", "b")], [("a", "b", ORDERS)], tables=None)
    cols = ["id", "customer", "amount", "status"]
    narrow = TableMap(
        "orders", "orders", "id", tuple(c for c in ORDERS.columns if c.source in cols), exact_columns=True
    )
    run(
        "column filter",
        msg("topo_column_filter"),
        [("cp_tcol", "a", "b")],
        [("a", "b", narrow)],
        options={"columns": {"orders": cols}},
        target_ddl="CREATE TABLE orders (id bigint PRIMARY KEY, customer int, amount numeric(12,2), status text)",
    )
    return parts


def bidirectional(
    sys: SyncSystem, *, method: str = "pglogical", forward_origins: bool = False, seconds: float = 3.0,
    rate: float = 80, timeout: float = 60, settle_s: float = 2.0,
) -> Part:  # fmt: skip
    """a ⇄ b, both written at once (disjoint keys), markers both ways; every change must appear exactly once on
    the other side and never come back (the marker tables have no key, so an echo is a second row)."""
    a, b = "a", "b"
    with scenario(sys, [a, b]):
        prepare(sys, a, [])
        _run_sql(sys, a, "DROP TABLE cp_marker", MARKER_TARGET)  # no key: an echoed marker shows as a second row
        prepare_target(sys, b, ddl=ORDERS_SOURCE)  # both sides take writes: the same table on both
        opts: dict[str, Any] = {"method": method, "insert_only": ["cp_marker"], "forward_origins": forward_origins}
        sys.create_task("cp_bi_ab", a, b, ["orders", "cp_marker"], **opts)
        sys.create_task("cp_bi_ba", b, a, ["orders", "cp_marker"], copy_data=False, **opts)
        ma = Markers(lambda: sys.node_connect(a), lambda: sys.node_connect(b), "bi-a", first_id=1)
        mb = Markers(lambda: sys.node_connect(b), lambda: sys.node_connect(a), "bi-b", first_id=50_000_000)
        for m in (ma, mb):
            m.start()
        try:
            reports = _short_load(sys, {a: FIRST_ROWS + 1, b: SECOND_SOURCE + 1}, seconds, rate)
        finally:
            for m in (ma, mb):
                m.pause()
        waits = {
            "a→b": sentinel(lambda: sys.node_connect(a), lambda: sys.node_connect(b), timeout),
            "b→a": sentinel(
                lambda: sys.node_connect(b), lambda: sys.node_connect(a), timeout, base=SECOND_SOURCE + 500_000_000
            ),
        }
        for m in (ma, mb):
            m.wait_all(timeout)
        time.sleep(settle_s)  # an echo needs a round trip to show
        for m in (ma, mb):
            m.stop()
        with contextlib.closing(sys.node_connect(a)) as ca, contextlib.closing(sys.node_connect(b)) as cb:
            copies = {
                (node, origin): marker_copies(conn, origin)
                for node, conn in (("a", ca), ("b", cb))
                for origin in ("bi-a", "bi-b")
            }
        checks = [check(sys, a, b, ORDERS)]
    problems: list[Text | str] = []
    for (node, origin), got in copies.items():
        m = ma if origin == "bi-a" else mb
        want = set(m.committed)
        more = [k for k, n in got.items() if n > 1]
        lost = sorted(want - set(got))
        if more:
            problems.append(msg("sync_echo_home" if node == origin[-1] else "sync_echo_twice", n=len(more),
                                origin=origin[-1], node=node))  # fmt: skip
        if lost:
            problems.append(msg("sync_markers_missing", n=len(lost), origin=origin[-1], node=node))
    problems += [c.summary_text(5) for c in checks if not c.equal]
    problems += [msg("sync_no_sentinel", kind=k, timeout=f"{timeout:g}") for k, v in waits.items() if v is None]
    errors = [e for r in reports for e in r.errors]
    if errors:
        problems.append(msg("sync_load_errors", errors=str(errors[:3])))
    n_a, n_b = len(ma.committed), len(mb.committed)
    return Part(
        "BZ-SYNC-5",
        msg("name_bidirectional"),
        not problems,
        msg(
            "bidirectional_how",
            method=msg("method_forwarding", method=method) if forward_origins else method,
            rate=f"{rate:g}",
            seconds=f"{seconds:g}",
            n_a=n_a,
            n_b=n_b,
            settle=f"{settle_s:g}",
            checker=joined([c.summary_text(2) for c in checks]),
        ),
        why=joined(problems),
        data={"sentinel_s": waits, "checks": [c.evidence() for c in checks]},
    )


def prepare_target(sys: SyncSystem, node: str, *, cascade: bool = False, ddl: str = ORDERS_TARGET) -> None:
    """The copies on a target (a node that passes changes on, in a cascade, is one too)."""
    _run_sql(sys, node, "CREATE TABLE IF NOT EXISTS " + ddl.removeprefix("CREATE TABLE "))
    _run_sql(sys, node, "CREATE TABLE IF NOT EXISTS " + MARKER_TARGET.removeprefix("CREATE TABLE "))


def _marker_times(markers: Markers, ids: list[int], t0: float) -> Text | str:
    """Ids with their commit time relative to ``t0`` (the fault), the first few."""

    def one(m: int) -> Text:
        if m not in markers.committed:
            return msg("marker_not_ours", id=m)
        at = f"{markers.committed[m] - t0:+.2f}"
        if m in markers.seen:
            return msg("marker_seen", id=m, at=at, seen=f"{markers.seen[m] - t0:+.2f}")
        return msg("marker_committed", id=m, at=at)

    return joined([one(m) for m in ids[:5]])


def exactly_once(sys: SyncSystem, source: str, target: str, origin: str) -> tuple[list[int], list[int]]:
    """Markers of ``origin`` missing on the target, and those there more than once."""
    with contextlib.closing(sys.node_connect(source)) as s, contextlib.closing(sys.node_connect(target)) as t:
        a, b = marker_copies(s, origin), marker_copies(t, origin)
    return [m for m in a if m not in b], [m for m, n in b.items() if n > 1]
