"""A settle window for the sync checker: keys whose row on either side changed within the replication lag are not
judged (:class:`Settle`; ``clauseproof sync-diff --settle COLUMN:SECONDS``).  The cut-off comes from the source's
clock; the young keys are read when the check starts and again when it ends."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clauseproof.core.errors import ClauseproofError
from clauseproof.sync.mapping import TableMap, key_text, now_us
from clauseproof.sync.outcome import TableCheck

#: rows younger than a settle window read from each side at most (more: the lag is larger than a check can leave out)
YOUNG_MAX = 100_000
#: a settle column's newest time may run this far ahead of the source's clock (more: its zone is not the mapping's)
AHEAD_US = 60_000_000

#: runs a query (made for each side's SQL builder by the callable) on both sides at once: the source's rows, the
#: target's
Both = Callable[[Callable[[Any], str]], tuple[list[Any], list[Any]]]


@dataclass(frozen=True)
class Settle:
    """Rows still inside the replication lag are not judged: a key whose row on either side has ``column`` (a
    timestamp column of the mapping, its source name) within ``min_age_s`` seconds of the source's clock is left out
    of the differences — counted and listed apart (reladiff's ``--min-age``).  The cut-off is fixed when the check
    starts and the young keys are read again when it ends, so a row changed during the check is left out too.  A
    delete has no row left to carry a time: a row deleted on the source within the lag is still an extra row."""

    column: str
    min_age_s: float


def start(both: Both, tm: TableMap, settle: Settle, result: TableCheck) -> None:
    """The cut-off from the source's clock, both clocks recorded, and the keys already inside the window."""
    col = next((c for c in tm.columns if c.source == settle.column), None)
    if col is None or col.kind not in ("timestamp", "timestamptz"):
        stamps = [c.source for c in tm.columns if c.kind in ("timestamp", "timestamptz")]
        raise ClauseproofError(
            f"table {tm.name}: the settle column {settle.column!r} is "
            + ("not among the compared columns" if col is None else f"a {col.kind} column, not a timestamp"),
            checked="the mapping's columns",
            fix="name a timestamp column the sync updates with each change: "
            + (", ".join(stamps) if stamps else "this table has none"),
        )
    if not settle.min_age_s > 0:
        raise ClauseproofError(f"the settle window must be a positive number of seconds, not {settle.min_age_s}")
    (s_now,), (t_now,) = both(lambda q: now_us(q.dialect))
    now = int(s_now[0])
    cutoff = now - round(settle.min_age_s * 1_000_000)
    result.settle = {
        "column": settle.column,
        "min_age_s": settle.min_age_s,
        "cutoff_utc": _iso(cutoff),
        "source_clock_utc": _iso(now),
        "target_clock_ahead_s": round((int(t_now[0]) - now) / 1e6, 3),
    }
    result.settle_us = (cutoff, now)
    young(both, tm, settle, result)


def young(both: Both, tm: TableMap, settle: Settle, result: TableCheck) -> None:
    """Add to ``result.young_keys`` every key whose row on either side is inside the settle window."""
    assert result.settle is not None and result.settle_us is not None
    cutoff, now = result.settle_us
    got = both(lambda q: q.young(tm, settle.column, q.side, cutoff, YOUNG_MAX + 1))
    counts: dict[str, int] = {}
    for side, rows in zip(("source", "target"), got, strict=True):
        if len(rows) > YOUNG_MAX:
            raise ClauseproofError(
                f"table {tm.name}: more than {YOUNG_MAX:,} rows on the {side} have {settle.column} within "
                f"{settle.min_age_s:g} s of the source's clock — more than a check can leave out",
                checked=f"{settle.column} >= {_iso(cutoff)} on the {side}",
                fix="wait until the sync has caught up, or give a shorter settle window",
            )
        newest = max((int(r[-1]) for r in rows), default=cutoff)
        if newest > now + AHEAD_US:
            raise ClauseproofError(
                f"table {tm.name}: {settle.column} on the {side} runs {(newest - now) / 1e6:,.0f} s ahead of the "
                "source's clock: its times are not in the zone the mapping reads them in, so the rows inside "
                "the settle window cannot be told",
                checked=f"the newest {settle.column} on the {side} against the source's clock ({_iso(now)})",
                fix="declare the column's zone in the mapping (or compare without a settle window)",
            )
        for r in rows:
            if tm.hashed:
                canon = [v.decode() if isinstance(v, bytes) else v for v in r[:-1]]
                result.young_keys.add(key_text(canon, tm))
            else:
                result.young_keys.add(int(r[0]))
        counts[side] = len(rows)
    result.settle["young_rows"] = counts


def _iso(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).isoformat(timespec="milliseconds")
