"""A client history of a fault trial and its judge: RTO, RPO, duplicates, one writable leader, recovery of reads.

Jepsen's discipline, with the RTO/RPO verdict an acceptance clause asks for:

- every operation is logged when it is *invoked* and when it *completes*, on one monotonic clock, with
  its outcome: ``ok`` (acknowledged), ``fail`` (refused before it could take effect: the server said so)
  or ``info`` (indeterminate: a timeout or a connection lost after the request was sent — it may or may
  not have taken effect, so it is reported apart and counted neither as lost nor as present);
- writes insert unique ids; after the heal a final read lists every id the system holds;
- every node is asked ``≥ 10×/s`` whether it accepts writes (it acknowledges a write of its own), in rounds; two
  nodes writable in one round is a split brain whatever the RTO, and a frozen or cut-off leader that
  acknowledges a write after it is healed, while another node took over, is a stale leader.

The columns live in numpy arrays, so a history of 1,000,000 operations is judged in well under 10 s
(``./run bench --only history``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clauseproof.core.i18n import Text, msg

OK, FAIL, INFO, PENDING = 0, 1, 2, 3
OUTCOMES = {"ok": OK, "fail": FAIL, "info": INFO}
WRITE, READ = 0, 1


class History:
    """What the clients did, appended from any thread: ``i = h.invoke(process, WRITE, value)`` before sending,
    ``h.complete(i, "ok" | "fail" | "info")`` after.  Times are ``time.monotonic()`` seconds."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._lock = threading.Lock()
        self.n = 0
        self.process = np.zeros(capacity, dtype=np.int32)
        self.kind = np.zeros(capacity, dtype=np.int8)
        self.value = np.zeros(capacity, dtype=np.int64)
        self.invoked = np.zeros(capacity, dtype=np.float64)
        self.completed = np.full(capacity, np.nan, dtype=np.float64)
        self.outcome = np.full(capacity, PENDING, dtype=np.int8)

    def _grow(self) -> None:
        size = len(self.process) * 2
        for name in ("process", "kind", "value", "invoked", "completed", "outcome"):
            old = getattr(self, name)
            new = np.full(size, np.nan if name == "completed" else (PENDING if name == "outcome" else 0), old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def invoke(self, process: int, kind: int, value: int = 0, at: float | None = None) -> int:
        with self._lock:
            if self.n == len(self.process):
                self._grow()
            i = self.n
            self.process[i], self.kind[i], self.value[i] = process, kind, value
            self.invoked[i] = time.monotonic() if at is None else at
            self.n += 1
            return i

    def complete(self, i: int, outcome: str, at: float | None = None) -> None:
        with self._lock:
            self.completed[i] = time.monotonic() if at is None else at
            self.outcome[i] = OUTCOMES[outcome]

    def series(self, fault_at: float, recovered_at: float | None = None, bucket_s: float = 0.5) -> dict[str, Any]:
        """Writes per second (acknowledged, and refused or indeterminate) and write latency per ``bucket_s``, from
        the first operation on, with the fault (to the first acknowledged write after it) shaded — the report's
        load plot."""
        n = self.n
        writes = self.kind[:n] == WRITE
        if not writes.any() or np.isnan(self.completed[:n][writes]).any():
            return {}  # nothing written, or not closed: no plot
        t0 = float(self.invoked[:n].min())
        done = self.completed[:n][writes]
        ok = self.outcome[:n][writes] == OK
        latency_ms = (done - self.invoked[:n][writes]) * 1000
        edges = np.arange(t0, float(done.max()) + bucket_s, bucket_s)
        idx = np.digitize(done, edges) - 1
        out: dict[str, Any] = {"t": [round(float(e - t0), 3) for e in edges[:-1]], "t0": t0}
        out["requests_per_s"] = [int(((idx == b) & ok).sum() / bucket_s) for b in range(len(edges) - 1)]
        out["failures_per_s"] = [int(((idx == b) & ~ok).sum() / bucket_s) for b in range(len(edges) - 1)]
        for name, q in (("p50_ms", 50), ("p95_ms", 95), ("p99_ms", 99), ("max_ms", 100)):
            out[name] = [
                round(float(np.percentile(latency_ms[(idx == b) & ok], q)), 3) if ((idx == b) & ok).any() else None
                for b in range(len(edges) - 1)
            ]
        end = recovered_at if recovered_at is not None and math.isfinite(recovered_at) else fault_at
        label = "fault → first acknowledged write"
        out["windows"] = [{"label": label, "start": round(fault_at - t0, 3), "end": round(end - t0, 3)}]
        return out

    def close(self, at: float | None = None) -> None:
        """Operations still pending when the trial ends are indeterminate."""
        with self._lock:
            pending = self.outcome[: self.n] == PENDING
            self.completed[: self.n][pending] = time.monotonic() if at is None else at
            self.outcome[: self.n][pending] = INFO


@dataclass(frozen=True)
class LeaderSample:
    """One polling round: which nodes accepted writes at that instant (``None``: the node did not answer)."""

    at: float
    writable: dict[str, bool | None]


@dataclass
class Trial:
    """The judge's findings for one fault trial; ``findings`` say in words what failed, by kind."""

    fault: str
    fault_at: float
    deadline_s: float
    rto_s: float = math.inf  # first acknowledged write invoked after the fault, completed − fault instant
    all_writers_back_s: float = math.inf
    acknowledged: int = 0
    refused_after_fault: int = 0  # writes the system refused from the fault on (no quorum, read-only, ...)
    lost: list[int] = field(default_factory=list)  # acknowledged ids missing from the final read
    indeterminate: int = 0
    indeterminate_after_fault: int = 0
    indeterminate_present: int = 0
    failed_but_present: list[int] = field(default_factory=list)  # refused writes that took effect anyway
    duplicates: list[int] = field(default_factory=list)
    phantoms: list[int] = field(default_factory=list)  # ids in the final read nobody wrote
    split_brain: list[tuple[float, list[str]]] = field(default_factory=list)
    leader_before: str | None = None
    leader_after: str | None = None
    unavailable_s: float = 0.0  # longest stretch without an acknowledged write, from the fault on
    read_gap_s: float = 0.0  # longest stretch without a successful read on a surviving node, from the fault on
    fault_applied: bool = True
    victim: str | None = None  # the node the fault hit
    healed_at: float | None = None  # when a fault that is lifted (freeze, isolate) was lifted
    stale_writes: list[float] = field(default_factory=list)  # the victim writable after the heal, another leading
    unchecked: bool = False  # no final read could be made: lost writes unknown
    multi_writer: bool = False  # judged by the multi-writer rule (every node of the primary component writes)
    #: what failed, by kind (not_applied, rto, unchecked, lost, refused_applied, duplicates, phantoms, split_brain,
    #: stale_leader), as catalog sentences: in the report's language, English in :attr:`findings`
    said_as: dict[str, Text] = field(default_factory=dict)

    @property
    def findings(self) -> dict[str, str]:
        """What failed, in words (English), by kind."""
        return {kind: str(text) for kind, text in self.said_as.items()}

    @property
    def problems(self) -> list[str]:
        return list(self.findings.values())

    def about(self, *kinds: str) -> list[str]:
        """The findings of these kinds."""
        return [str(text) for text in self.said(*kinds)] if kinds else []

    def said(self, *kinds: str) -> list[Text]:
        """The findings of these kinds (all without kinds) as catalog sentences."""
        return [text for kind, text in self.said_as.items() if not kinds or kind in kinds]

    def find(self, kind: str, text: Text) -> None:
        self.said_as[kind] = text

    @property
    def rpo_rows(self) -> int:
        return len(self.lost)

    @property
    def failed_over(self) -> bool:
        """Another node leads after the fault (False also when no single leader was seen)."""
        return self.leader_after is not None and self.leader_after != self.leader_before


def _leader(samples: list[LeaderSample]) -> str | None:
    """The one writable node of the latest round that had exactly one (a round that straddles the fault may see
    the old leader gone and no new one yet)."""
    for s in reversed(samples):
        writable = [n for n, w in s.writable.items() if w]
        if len(writable) == 1:
            return writable[0]
    return None


def _longest_gap(times: np.ndarray, start: float, end: float) -> float:
    """The longest stretch in [start, end] holding none of ``times`` (sorted)."""
    inside = times[(times >= start) & (times <= end)]
    edges = np.concatenate(([start], inside, [end]))
    return float(np.max(np.diff(edges))) if len(edges) > 1 else end - start


def judge(
    history: History,
    *,
    fault: str,
    fault_at: float,
    end_at: float,
    final_ids: Iterable[int] | None,
    leaders: list[LeaderSample],
    deadline_s: float = 30.0,
    expect_leader_change: bool = True,
    victim: str | None = None,
    healed_at: float | None = None,
    victim_readers: Iterable[int] = (),
    multi_writer: bool = False,
    effective_at: float | None = None,
) -> Trial:
    """Judge one trial: ``fault_at`` is when the fault was applied to ``victim``, ``effective_at`` when it was in
    effect (a killed leader seen to stop answering; default ``fault_at``): a write invoked before then may have been
    served by the victim itself, so recovery is the first write acknowledged that was invoked after it, and the RTO
    counts from ``fault_at``.  ``healed_at`` when a fault that
    is lifted was lifted, ``end_at`` when the load stopped (before the final read, ``final_ids``), ``leaders`` the
    polling rounds; reads by ``victim_readers`` (the processes reading the victim's node) do not count in the read
    gap, which is about the surviving nodes.

    ``multi_writer``: every node of the primary component takes writes (Galera), so two writable nodes in a round
    are normal; the rule becomes that the victim, cut off or frozen, takes no write while the others do, from
    the fault until it is healed (a split brain otherwise).  The "leader" after the fault is then another node
    that acknowledged a write; the fault was applied if writes stalled or the victim stopped taking them (in more
    than a tenth of the rounds from the fault on)."""
    n = history.n
    kind, value, outcome = history.kind[:n], history.value[:n], history.outcome[:n]
    invoked, completed, process = history.invoked[:n], history.completed[:n], history.process[:n]
    writes = kind == WRITE
    t = Trial(
        fault=fault,
        fault_at=fault_at,
        deadline_s=deadline_s,
        victim=victim,
        healed_at=healed_at,
        multi_writer=multi_writer,
    )

    after = writes & (outcome == OK) & (invoked >= max(fault_at, effective_at or fault_at))
    if after.any():
        t.rto_s = float(np.min(completed[after]) - fault_at)
        per_writer = [
            float(np.min(completed[after & (process == p)]) - fault_at)
            for p in np.unique(process[writes & (invoked < fault_at)])
            if (after & (process == p)).any()
        ]
        writers = np.unique(process[writes & (invoked < fault_at)])
        if not len(writers):  # no writer was writing before the fault
            t.all_writers_back_s = t.rto_s
        else:
            t.all_writers_back_s = max(per_writer) if len(per_writer) == len(writers) else math.inf
    acked_times = np.sort(completed[writes & (outcome == OK)])
    t.unavailable_s = _longest_gap(acked_times, fault_at, end_at)
    surviving = (kind == READ) & ~np.isin(process, np.asarray(list(victim_readers), dtype=np.int32))
    read_ok = np.sort(completed[surviving & (outcome == OK)])
    t.read_gap_s = _longest_gap(read_ok, fault_at, end_at)  # no read on a surviving node: the whole window

    if final_ids is None:  # no final read: nothing about the acknowledged writes can be said
        t.unchecked = True
    final = np.asarray(list(final_ids or []), dtype=np.int64)
    uniq, counts = np.unique(final, return_counts=True)
    t.duplicates = uniq[counts > 1].tolist()
    acked = value[writes & (outcome == OK)]
    t.acknowledged = len(acked)
    t.lost = [] if t.unchecked else np.setdiff1d(acked, uniq, assume_unique=False).tolist()
    info = value[writes & (outcome == INFO)]
    t.indeterminate = len(info)
    t.indeterminate_after_fault = int((writes & (outcome == INFO) & (invoked >= fault_at)).sum())
    t.indeterminate_present = int(np.isin(info, uniq).sum())
    t.refused_after_fault = int((writes & (outcome == FAIL) & (invoked >= fault_at)).sum())
    refused = value[writes & (outcome == FAIL)]
    t.failed_but_present = refused[np.isin(refused, uniq)].tolist()
    t.phantoms = np.setdiff1d(uniq, value[writes]).tolist()

    if multi_writer:
        if expect_leader_change:  # a fault on the victim (not a step such as scaling, which hits no node)
            _judge_multi_writer(t, leaders, end_at)
        _findings(t)
        return t
    for s in leaders:
        up = sorted(node for node, w in s.writable.items() if w)
        if len(up) > 1:
            t.split_brain.append((s.at, up))
    t.leader_before = _leader([s for s in leaders if s.at < fault_at])
    t.leader_after = _leader([s for s in leaders if s.at >= fault_at])
    if victim is not None and healed_at is not None and t.leader_after not in (None, victim):
        t.stale_writes = [s.at for s in leaders if s.at >= healed_at and s.writable.get(victim)]
    disturbed = bool(((outcome[writes] != OK) & (invoked[writes] >= fault_at - 1)).any()) or t.unavailable_s > 1.0
    if expect_leader_change and t.leader_before is not None and t.leader_after == t.leader_before and not disturbed:
        t.fault_applied = False
    _findings(t)
    return t


def _judge_multi_writer(t: Trial, leaders: list[LeaderSample], end_at: float) -> None:
    """The multi-writer rule (see :func:`judge`)."""
    victim = t.victim
    until = t.healed_at if t.healed_at is not None else end_at
    during = [s for s in leaders if t.fault_at <= s.at < until]
    for s in during:
        up = sorted(node for node, w in s.writable.items() if w)
        if victim in up and len(up) > 1:
            t.split_brain.append((s.at, up))
    t.leader_before = victim
    others = [n for s in leaders if s.at >= t.fault_at for n, w in sorted(s.writable.items()) if w and n != victim]
    t.leader_after = others[0] if others else None
    # applied: the victim stopped taking writes (a fault that takes effect makes it unwritable for at least the
    # failure detection; one probe slower than TIMELY_S under load is not that), or writes stalled
    taking = sum(bool(s.writable.get(victim or "")) for s in during)
    if during and taking >= 0.9 * len(during) and t.unavailable_s <= 1.0:
        t.fault_applied = False


def _ids(ids: list[int], limit: int = 10) -> str:
    shown = ", ".join(map(str, ids[:limit]))
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _findings(t: Trial) -> None:
    # a fault not seen to happen has no RTO to judge, but what the trial saw still counts: a lost write or two
    # writable nodes is a finding whether or not the fault took effect (returning here hid them from the parts)
    if not t.fault_applied:
        if t.multi_writer:
            t.find("not_applied", msg("fault_not_applied_multi", victim=str(t.victim)))
        else:
            t.find("not_applied", msg("fault_not_applied", leader=str(t.leader_before)))
    elif t.rto_s > t.deadline_s:
        if not math.isinf(t.rto_s):
            t.find("rto", msg("rto_beyond", rto=f"{t.rto_s:.2f}", deadline=f"{t.deadline_s:g}"))
        elif t.refused_after_fault:
            t.find("rto", msg("no_write_after_fault_refused", n=t.refused_after_fault))
        else:
            t.find("rto", msg("no_write_after_fault"))
    if t.unchecked:
        t.find("unchecked", msg("no_final_read", n=t.acknowledged))
    if t.lost:
        t.find("lost", msg("writes_lost", n=len(t.lost), ids=_ids(t.lost)))
    if t.failed_but_present:
        t.find(
            "refused_applied", msg("refused_took_effect", n=len(t.failed_but_present), ids=_ids(t.failed_but_present))
        )
    if t.duplicates:
        t.find("duplicates", msg("ids_duplicated", n=len(t.duplicates), ids=_ids(t.duplicates)))
    if t.phantoms:
        t.find("phantoms", msg("ids_phantom", n=len(t.phantoms), ids=_ids(t.phantoms)))
    if t.stale_writes:
        healed = t.healed_at if t.healed_at is not None else t.fault_at
        first = f"{t.stale_writes[0] - healed:+.2f}"
        t.find(
            "stale_leader",
            msg("stale_leader", victim=str(t.victim), n=len(t.stale_writes), first=first, leader=str(t.leader_after)),
        )
    # multi-writer: the victim writing beside the others is a split brain only once the fault cut it off (unbroken,
    # it is the rule's normal state); one leader: two writable nodes in a round are one, fault applied or not
    if t.split_brain and t.multi_writer and t.fault_applied:
        at, nodes = t.split_brain[0]
        first, who = f"{at - t.fault_at:+.2f}", ", ".join(nodes)
        t.find("split_brain", msg("split_brain_multi", victim=str(t.victim), n=len(t.split_brain), first=first,
                                  nodes=who))  # fmt: skip
    elif t.split_brain and not t.multi_writer:
        at, nodes = t.split_brain[0]
        first, who = f"{at - t.fault_at:+.2f}", ", ".join(nodes)
        t.find("split_brain", msg("split_brain", n=len(t.split_brain), first=first, nodes=who))
