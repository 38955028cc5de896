"""BZ-SYNC-7: the target cut off or down for a while under a source load; afterwards every change must arrive
exactly once, and the catch-up is timed."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from clauseproof.core.evidence import client_cost
from clauseproof.core.i18n import joined, msg
from clauseproof.sync.cases import (
    FIRST_ROWS,
    MARKERS,
    ORDERS,
    Part,
    _marker_times,
    check,
    exactly_once,
    prepare,
    scenario,
)
from clauseproof.sync.flow import (
    Markers,
    SourceLoad,
    barrier,
    sentinel,
)
from clauseproof.targets.roles import SyncSystem

# -- BZ-SYNC-7 ---------------------------------------------------------------------------------------------------
OUTAGES = {
    "network": "the target's network cut (the task's relay a black hole)",
    "host": "the target host down (every process of its server SIGKILLed, its network gone)",
    "database": "the target database down (its server stopped cleanly; connections refused)",
}


def outage(sys: SyncSystem, kind: str, params: dict[str, Any], *, steady_s: float = 2.0) -> Part:
    """While the source writes, the target is cut off / down for ``hold_s``; then every change must arrive once."""
    a, b = "a", "b"
    src = lambda: sys.node_connect(a)  # noqa: E731
    dst = lambda: sys.node_connect(b)  # noqa: E731
    hold, limit = params["hold_s"], params["catch_up_s"]
    task = f"cp_out_{kind}"
    slots: list[dict[str, Any]] = []
    with scenario(sys, [a, b]):
        prepare(sys, a, [b])
        sys.create_task(task, a, b, ["orders", "cp_marker"])
        markers = Markers(src, dst, origin=kind, per_second=20, max_s=hold + limit + 60)
        markers.start()
        first = sentinel(src, dst, limit)
        load = SourceLoad(src, FIRST_ROWS + 1, rate=params["load_per_s"], max_s=hold + limit + 60)
        load.start()
        healed = False
        try:
            time.sleep(steady_s)
            t_fault = time.time()
            sys.fault(kind, task)
            t_cut = time.time()  # a fault command returns once the fault took effect
            end = time.monotonic() + hold
            while time.monotonic() < end:
                with contextlib.suppress(Exception):
                    slots.append({"t": round(time.time() - t_fault, 1)} | sys.slot(task))
                time.sleep(1.0)
            t_heal = time.time()
            sys.heal(kind, task)
            healed = True
            time.sleep(steady_s)
        finally:
            if not healed:
                with contextlib.suppress(Exception):
                    sys.heal(kind, task)
            report = load.stop()
            markers.pause()
        final = barrier(markers, src, limit)
        final_orders = sentinel(src, dst, limit)
        markers.wait_all(max(1.0, t_heal + limit - time.time()))
        markers.stop()
        missing, doubled = exactly_once(sys, a, b, kind)
        checks = [check(sys, a, b, ORDERS), check(sys, a, b, MARKERS)]
    during = [m for m, c in markers.committed.items() if t_cut + 0.5 <= c < t_heal - 0.5]
    through = [m for m in during if markers.seen.get(m, float("inf")) < t_heal]
    before = [m for m, c in markers.committed.items() if c < t_heal]
    caught = [markers.seen[m] for m in before if m in markers.seen]
    catch_up = (max(caught) - t_heal) if caught and len(caught) == len(before) else None
    worst = max((s.get("retained_bytes") or 0 for s in slots), default=0)
    kept_as = {str(s.get("kept_as")): s.get("kept_as") for s in slots if s.get("exists")}  # each once, in order
    status = [kept_as[k] for k in sorted(kept_as)]
    applied = bool(during) and not through
    eq = all(c.equal for c in checks)
    ok: bool | None = eq and not missing and not doubled and not report.errors and final is not None
    why = joined(
        [
            joined([c.summary_text(5) for c in checks if not c.equal]),
            msg("outage_lost", n=len(missing), when=_marker_times(markers, missing, t_fault)) if missing else "",
            msg("outage_doubled", n=len(doubled)) if doubled else "",
            msg("outage_write_errors", errors=str(report.errors[:3])) if report.errors else "",
            "" if final is not None and final_orders is not None else msg("outage_not_caught_up", limit=f"{limit:g}"),
        ]
    )
    if ok and not applied:  # a fault that let changes through was not an outage: nothing was shown
        ok = None
        why = msg("outage_through", n=len(through), of=len(during))
    catch_txt = f"{catch_up:.1f} s" if catch_up is not None else msg("never")
    return Part(
        "BZ-SYNC-7",
        kind,
        ok,
        msg(
            "outage_how",
            outage=msg(f"outage_{kind}"),
            hold=f"{hold:g}",
            load=params["load_per_s"],
            ops=report.ops,
            bulk=report.bulk_transactions,
            errors=len(report.errors),
            during=len(during),
            through=len(through),
            caught=catch_txt,
            kept=f"{worst / 1e6:.1f}",
            status=status or "-",
            missing=len(missing),
            doubled=len(doubled),
            checker=joined([c.summary_text(2) for c in checks]),
        ),
        why=why,
        data={
            "catch_up_s": catch_up,
            "slot": slots,
            "first_barrier_s": first,
            "checks": [c.evidence() for c in checks],
            "load_client": client_cost(report.client_cpu_s, report.ops),
        },
    )
