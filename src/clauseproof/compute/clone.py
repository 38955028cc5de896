"""SX-ECS-7 ▲: a server cloned into another availability zone, its system and data disks on another disk type, with
another flavour (CPU and memory).

The case makes a source server (a system disk it boots from and a data disk, in one zone, one flavour, one disk
type), asks the cloud for a clone in the other zone with the other flavour and disk type, and judges the clone as
the cloud's own APIs show it, read by the clone's id:

- the clone runs in the destination zone — the zone of the *host* it runs on (the host's aggregate, read through
  the admin API), not only the zone the server reports — and the source's zone was another;
- it has the new flavour's vCPUs and memory, which differ from the source's;
- its system disk and its data disk are of the new type;
- each of its disks is a copy of the source's disk of the same role, as the block-storage service recorded it
  (the volume's source).  The cheapest cheat, a new empty server given the source's name, has disks made new and
  fails here;
- the source is untouched (it still runs, in its zone, with its flavour and disks);
- where the block storage has zones, the clone's disks lie in the destination zone (one zone for every compute zone:
  NOT SHOWN, said);
- the disks' content equals the source's: only where a guest writes and reads it (NOT SHOWN otherwise, said).
"""

from __future__ import annotations

import time
from typing import Any

from clauseproof.compute.base import GONE, RUNNING
from clauseproof.compute.roles import Booted, Clone, Disk, Where
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import Text, joined, msg

CLAUSE = "SX-ECS-7"


def _by_role(disks: list[Disk]) -> dict[str, Disk]:
    return {d.role: d for d in disks}


def judge_clone(
    plan: dict[str, Any],  # "from" and "to": zone, flavour, vcpus, ram_mb, disk_type
    source: tuple[Booted, Where, list[Disk]],
    clone: tuple[Booted, Where, list[Disk]] | None,
    source_after: tuple[Booted, Where, list[Disk]] | None,
    disk_zones: list[str],
) -> list[tuple[Text, bool | None, Text | str]]:
    """(part, verdict, why) rows.  ``plan`` names ``from``/``to`` zone, flavour (with vcpus and ram_mb) and disk type;
    ``source``/``clone`` are (server, where, disks) as read by id; ``source_after`` the source read again after the
    clone; ``disk_zones`` the block storage's zones."""
    to, fr = plan["to"], plan["from"]
    rows: list[tuple[Text, bool | None, Text | str]] = []
    src_b, src_w, src_d = source
    if clone is None or clone[0].state == GONE:
        rows.append((msg("clone_exists"), False, msg("clone_not_made")))
        return rows
    b, w, d = clone
    runs = b.state == RUNNING and b.id != src_b.id
    rows.append((msg("clone_exists"), runs, "" if runs else msg("clone_state", state=b.state, id=b.id)))
    zone_ok = w.zone == to["zone"] and src_w.zone != to["zone"]
    rows.append((msg("clone_zone", zone=to["zone"]), zone_ok,
                 "" if zone_ok else msg("clone_zone_is", host=w.host or "?", zone=w.zone or "?",
                                        source_zone=src_w.zone or "?")))  # fmt: skip
    fl_ok = (b.vcpus, b.ram_mb) == (to["vcpus"], to["ram_mb"]) and (b.vcpus, b.ram_mb) != (src_b.vcpus, src_b.ram_mb)
    rows.append((msg("clone_flavour", flavour=to["flavour"], vcpus=to["vcpus"], ram=to["ram_mb"]), fl_ok,
                 "" if fl_ok else msg("clone_flavour_is", vcpus=b.vcpus, ram=b.ram_mb, source_vcpus=src_b.vcpus,
                                      source_ram=src_b.ram_mb)))  # fmt: skip
    mine, theirs = _by_role(d), _by_role(src_d)
    for role in ("system", "data"):
        disk, src = mine.get(role), theirs.get(role)
        type_part = msg("clone_system_type" if role == "system" else "clone_data_type", type=to["disk_type"])
        copy_part = msg("clone_system_copied" if role == "system" else "clone_data_copied")
        if disk is None:
            rows.append((type_part, False, msg("clone_no_disk")))
            rows.append((copy_part, False, msg("clone_no_disk")))
            continue
        type_ok = disk.type == to["disk_type"] and disk.type != fr["disk_type"]
        rows.append((type_part, type_ok, "" if type_ok else msg("clone_disk_type_is", disk=disk.id,
                                                                type=disk.type or "?")))  # fmt: skip
        copied = src is not None and disk.source == src.id and disk.id != src.id
        why = msg("clone_disk_not_copied", disk=disk.id, source=disk.source or "—", want=src.id if src else "?")
        rows.append((copy_part, copied, "" if copied else why))
    if source_after is None or source_after[0].state == GONE:
        rows.append((msg("clone_source_untouched"), False, msg("clone_source_gone", id=src_b.id)))
    else:
        a_b, a_w, a_d = source_after
        changed: list[Text | str] = []
        if a_b.state != RUNNING:
            changed.append(msg("clone_source_state", state=a_b.state))
        if a_w.zone != src_w.zone:
            changed.append(msg("clone_source_moved", before=src_w.zone or "?", after=a_w.zone or "?"))
        if (a_b.vcpus, a_b.ram_mb) != (src_b.vcpus, src_b.ram_mb):
            changed.append(msg("clone_source_resized", vcpus=a_b.vcpus, ram=a_b.ram_mb))
        if sorted(x.id for x in a_d) != sorted(x.id for x in src_d):
            changed.append(msg("clone_source_disks", disks=", ".join(x.id for x in a_d) or "—"))
        rows.append((msg("clone_source_untouched"), not changed, joined(changed)))
    if len(disk_zones) < 2:
        rows.append((msg("clone_disks_zone", zone=to["zone"]), None,
                     msg("clone_one_disk_zone", zone=", ".join(disk_zones) or "?")))  # fmt: skip
    else:
        wrong = [msg("clone_disk_in", disk=x.id, zone=x.zone or "?") for x in d if x.zone != to["zone"]]
        rows.append((msg("clone_disks_zone", zone=to["zone"]), not wrong, joined(wrong)))
    return rows


def _view(driver: Clone, vid: str) -> tuple[Booted, Where, list[Disk]] | None:
    try:
        b = driver.booted(vid)
    except Exception:
        return None
    return b, driver.where([vid])[vid], driver.disks(vid)


def _plain(view: tuple[Booted, Where, list[Disk]] | None) -> dict[str, Any] | None:
    if view is None:
        return None
    b, w, d = view
    return {"server": vars(b), "where": vars(w), "disks": [vars(x) for x in d]}


def check_clone(driver: Any, run_id: str, evidence: CaseEvidence, *, timeout_s: float) -> None:
    """``driver`` plays :class:`~clauseproof.compute.roles.Clone`."""
    assert isinstance(driver, Clone)
    plan = driver.clone_plan()
    evidence.parameters(clone_plan=plan)
    if plan.get("missing"):  # one zone, one flavour or one disk type: nothing to clone across
        lacks = {"zone": msg("clone_lacks_zone"), "disk type": msg("clone_lacks_type"),
                 "flavour": msg("clone_lacks_flavour")}  # fmt: skip
        evidence.part(
            CLAUSE,
            None,
            statistic=msg("clone_short"),
            not_shown=msg("clone_cannot", what=joined([lacks[m] for m in plan["missing"]])),
        )
        return
    fr, to = plan["from"], plan["to"]
    try:
        src_id = driver.create_cloneable(run_id, f"cp-{run_id}-clone-src", zone=fr["zone"], flavour=fr["flavour"],
                                         disk_type=fr["disk_type"])  # fmt: skip
        source = _view(driver, src_id)
        if source is None or source[0].state != RUNNING:
            evidence.part(CLAUSE, False, statistic=msg("clone_source"),
                          why=msg("clone_state", state=source[0].state if source else GONE, id=src_id))  # fmt: skip
            return
        t0 = time.perf_counter()
        clone_id: str | None = None
        try:
            clone_id = driver.clone_server(run_id, src_id, f"cp-{run_id}-clone-dst", zone=to["zone"],
                                           flavour=to["flavour"], disk_type=to["disk_type"])  # fmt: skip
            refused = ""
        except Exception as exc:  # the cloud refused the clone: a FAIL naming its answer, not an error
            refused = str(exc)
        took = round(time.perf_counter() - t0, 2)
        clone = _view(driver, clone_id) if clone_id else None
        source_after = _view(driver, src_id)
        disk_zones = driver.disk_zones()
        evidence.parameters(clone={"source": _plain(source), "clone": _plain(clone),
                                   "source_after": _plain(source_after), "seconds": took,
                                   "refused": refused, "disk_zones": disk_zones,
                                   "how": getattr(driver, "clone_how", "")})  # fmt: skip
        if refused:
            evidence.part(CLAUSE, False, statistic=msg("clone_part", took=took, part=msg("clone_exists")),
                          why=msg("clone_refused", why=refused))  # fmt: skip
            return
        for part, ok, why in judge_clone(plan, source, clone, source_after, disk_zones):
            evidence.part(CLAUSE, ok, statistic=msg("clone_part", took=took, part=part), why=why,
                          not_shown=why if ok is None else "")  # fmt: skip
        evidence.part(
            CLAUSE,
            None,
            statistic=msg("clone_content"),
            not_shown=msg("clone_content_no_guest" if not driver.boots_guests else "clone_content_unread"),
        )
    finally:
        left = driver.delete_clone_set(run_id, timeout_s)
        evidence.part(CLAUSE, not left, statistic=msg("clone_deleted"),
                      why=msg("still_there", left=", ".join(left)) if left else "")  # fmt: skip
