"""SX-ECS-8 ▲: placement by host, rack and zone; strict and soft anti-affinity.

Parts, each a row:

- **strict**: a strict anti-affinity group gets one server per compute host (N); each must run, on N distinct hosts;
- **strict, one too many**: server N+1 in the same group must be refused (never running): a cloud that stores the
  group's policy but does not enforce it (the scheduler's filter removed: the cheapest cheat) runs it beside another;
- **soft**: a soft anti-affinity group gets 2N servers; all must run, at most 2 per host, on every host;
- **topology**: the host, rack and zone of every server, read back through the admin API; a host without a zone or a
  rack is NOT SHOWN, naming it.

The hosts are counted from the compute services the API shows up; identity is the API's host name (on a vendor's
cloud the host list itself is the vendor's word: stated in the evidence).
"""

from __future__ import annotations

from collections import Counter

from clauseproof.compute.base import FAILED, RUNNING, ComputeDriver
from clauseproof.compute.batch import BatchResult, create_batch, delete_batch
from clauseproof.compute.roles import Placement, Where
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import Text, msg

CLAUSE = "SX-ECS-8"


def _hosts_of(where: dict[str, Where], ids: list[str]) -> list[str | None]:
    return [where[i].host if i in where else None for i in ids]


def judge_strict(hosts: list[str | None], n: int) -> tuple[bool, Text | str]:
    """N servers of a strict group: all placed, on N distinct hosts."""
    placed = [h for h in hosts if h]
    if len(placed) != n:
        return False, msg("aa_not_placed", missing=n - len(placed), n=n)
    crowded = {h: c for h, c in Counter(placed).items() if c > 1}
    if crowded:
        return False, msg("aa_share_host", hosts=", ".join(f"{h} ×{c}" for h, c in sorted(crowded.items())))
    return True, ""


def judge_one_too_many(state: str, host: str | None, fault: str, n: int) -> tuple[bool, Text | str]:
    """Server N+1 of a strict group with N hosts: must not run."""
    if state == RUNNING:
        return False, msg("aa_extra_runs", k=n + 1, n=n, host=host or "?")
    if state == FAILED:
        return True, msg("aa_extra_refused", fault=fault) if fault else msg("aa_extra_unscheduled")
    return False, msg("aa_extra_neither", k=n + 1, state=state)


def judge_soft(hosts: list[str | None], all_hosts: list[str]) -> tuple[bool, Text | str]:
    """2N servers of a soft group on N hosts: all placed, at most 2 per host, every host used."""
    placed = [h for h in hosts if h]
    if len(placed) != len(hosts):
        return False, msg("aa_soft_not_placed", missing=len(hosts) - len(placed), n=len(hosts))
    counts = Counter(placed)
    over = {h: c for h, c in counts.items() if c > 2}
    unused = sorted(set(all_hosts) - set(counts))
    if over or unused:
        spread = ", ".join(f"{h} ×{c}" for h, c in sorted(counts.items()))
        if unused:
            return False, msg("aa_not_spread_empty", spread=spread, empty=", ".join(unused))
        return False, msg("aa_not_spread", spread=spread)
    return True, ""


def _batch(
    driver: ComputeDriver, run_id: str, count: int, group: str, prefix: str, poll_s: float, timeout_s: float
) -> BatchResult:
    return create_batch(driver, run_id, count, poll_s=poll_s, timeout_s=timeout_s, group=group, prefix=prefix)


def check_anti_affinity(
    driver: ComputeDriver, run_id: str, evidence: CaseEvidence, *, poll_s: float, timeout_s: float
) -> None:
    assert isinstance(driver, Placement)
    hosts = driver.hosts()
    n = len(hosts)
    evidence.parameters(compute_hosts=hosts, policies=["anti-affinity", "soft-anti-affinity"])
    if n < 2:
        evidence.part(
            CLAUSE,
            None,
            statistic=msg("aa_strict_short"),
            not_shown=msg("aa_too_few_hosts", n=n),
        )
        return
    placed: dict[str, Where] = {}
    groups: list[str] = []
    created: list[str] = []
    try:
        # strict: one server per host
        strict = driver.create_group(run_id, "anti-affinity")
        groups.append(strict)
        first = _batch(driver, run_id, n, strict, "aa", poll_s, timeout_s)
        ids = [t.id for t in first.vms if t.id]
        created += ids
        where = driver.where(ids)
        placed.update(where)
        ok, why = judge_strict(_hosts_of(where, ids), n)
        evidence.part(
            CLAUSE,
            ok and not first.failures,
            statistic=msg("aa_strict", n=n, hosts=", ".join(f"{where[i].host}" for i in ids if i in where)),
            why=why or "; ".join(first.failures[:3]),
        )
        # strict: one too many
        extra = _batch(driver, run_id, 1, strict, "aax", poll_s, timeout_s)
        extra_ids = [t.id for t in extra.vms if t.id]
        created += extra_ids
        if extra_ids:
            w = driver.where(extra_ids)[extra_ids[0]]
            ok, why = judge_one_too_many(w.state, w.host, w.fault, n)
        else:  # refused at the API: also a refusal
            ok, why = True, msg("refused_by_api", error=str(extra.vms[0].error))
        evidence.part(CLAUSE, ok, statistic=msg("aa_one_too_many", n1=n + 1, n=n, why=why), why=why)
        # soft: 2N servers, at most 2 per host
        soft = driver.create_group(run_id, "soft-anti-affinity")
        groups.append(soft)
        spread = _batch(driver, run_id, 2 * n, soft, "saa", poll_s, timeout_s)
        sids = [t.id for t in spread.vms if t.id]
        created += sids
        where = driver.where(sids)
        placed.update(where)
        ok, why = judge_soft(_hosts_of(where, sids), hosts)
        per_host = Counter(h for h in _hosts_of(where, sids) if h)
        evidence.part(
            CLAUSE,
            ok and not spread.failures,
            statistic=msg("aa_soft", n2=2 * n, n=n, spread=", ".join(f"{h} ×{c}" for h, c in sorted(per_host.items()))),
            why=why or "; ".join(spread.failures[:3]),
        )
        # topology read back
        running = {i: w for i, w in placed.items() if w.host}
        no_rack = sorted({w.host for w in running.values() if not w.rack and w.host})
        no_zone = sorted({w.host for w in running.values() if not w.zone and w.host})
        evidence.parameters(placement={i: vars(w) for i, w in placed.items()})
        table = ", ".join(sorted({f"{w.host}: zone {w.zone}, rack {w.rack}" for w in running.values()}))
        if no_rack or no_zone:
            evidence.part(
                CLAUSE,
                None,
                statistic=msg("topology_read_back", table=table),
                not_shown=msg("no_rack_zone_for", racks=", ".join(no_rack), zones=", ".join(no_zone))
                if no_rack and no_zone
                else msg("no_rack_for", hosts=", ".join(no_rack))
                if no_rack
                else msg("no_zone_for", hosts=", ".join(no_zone)),
            )
        else:
            evidence.part(CLAUSE, True, statistic=msg("topology_read_back", table=table))
        evidence.part(CLAUSE, None, statistic=msg("placement_switch"), not_shown=msg("no_switch"))
    finally:
        if created:
            delete_batch(driver, run_id, created, poll_s=poll_s, timeout_s=timeout_s)
        for g in groups:
            driver.delete_group(g)
