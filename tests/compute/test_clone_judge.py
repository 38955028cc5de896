"""SX-ECS-7's judge and its case on an in-memory cloud: an honest clone passes; the cheapest cheats — a new empty
server under the source's name, a clone that stays in the source's zone, a move instead of a copy, the old disk
type — are judged FAIL; a refused clone is FAIL naming the cloud's answer; a cloud with one zone is NOT SHOWN."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from clauseproof.compute.base import RUNNING
from clauseproof.compute.clone import check_clone, judge_clone
from clauseproof.compute.roles import Booted, Clone, Disk, Where
from clauseproof.core.catalog import load_catalog
from clauseproof.core.evidence import FAIL, NOT_SHOWN, PASS, CaseEvidence, CaseRecord
from tests.fix_targets import CATALOG

PLAN: dict[str, Any] = {
    "from": {"zone": "az1", "flavour": "small", "vcpus": 1, "ram_mb": 512, "disk_type": "ssd"},
    "to": {"zone": "az2", "flavour": "big", "vcpus": 2, "ram_mb": 1024, "disk_type": "hdd"},
}
ZONE = {"h1": "az1", "h2": "az2"}


def _server(vid: str, host: str, vcpus: int, ram: int, state: str = RUNNING) -> tuple[Booted, Where]:
    b = Booted(id=vid, name=vid, state=state, image=None, vcpus=vcpus, ram_mb=ram, flavour=None, host=host)
    return b, Where(host=host, zone=ZONE[host], rack=None)


def _disks(prefix: str, dtype: str, zone: str, sources: tuple[str | None, str | None] = (None, None)) -> list[Disk]:
    return [Disk(f"{prefix}-sys", "system", dtype, zone, sources[0], 1),
            Disk(f"{prefix}-data", "data", dtype, zone, sources[1], 1)]  # fmt: skip


SOURCE = (*_server("src", "h1", 1, 512), _disks("s", "ssd", "az1"))
HONEST = (*_server("dst", "h2", 2, 1024), _disks("c", "hdd", "az1", ("s-sys", "s-data")))


def _verdicts(rows: list[tuple[Any, bool | None, Any]]) -> dict[str, bool | None]:
    return {str(part): ok for part, ok, _ in rows}


def test_an_honest_clone_passes_and_one_storage_zone_is_not_shown() -> None:
    rows = judge_clone(PLAN, SOURCE, HONEST, SOURCE, ["az1"])
    v = _verdicts(rows)
    assert [ok for ok in v.values() if ok is not True] == [None]  # only the disks' zone
    assert any("one zone (az1)" in str(why) for _, ok, why in rows if ok is None)
    # block storage with zones: the clone's disks must lie in the destination zone
    moved = (*HONEST[:2], _disks("c", "hdd", "az2", ("s-sys", "s-data")))
    assert all(ok for _, ok, _ in judge_clone(PLAN, SOURCE, moved, SOURCE, ["az1", "az2"]))
    stayed = judge_clone(PLAN, SOURCE, HONEST, SOURCE, ["az1", "az2"])
    assert [str(w) for _, ok, w in stayed if ok is False] == ["disk c-sys lies in az1; disk c-data lies in az1"]


def test_a_new_empty_server_under_the_source_name_is_judged_fail() -> None:
    # the cheapest cheat: a fresh server (right zone, flavour and disk type) whose disks were made new
    empty = (*_server("dst", "h2", 2, 1024), _disks("c", "hdd", "az1"))
    rows = judge_clone(PLAN, SOURCE, empty, SOURCE, ["az1"])
    failed = [str(p) for p, ok, _ in rows if ok is False]
    assert failed == [
        "the clone's system disk is a copy of the source's (the source the block storage recorded)",
        "the clone's data disk is a copy of the source's (the source the block storage recorded)",
    ]
    assert "has source —, not the source's disk s-sys" in " ".join(str(w) for _, ok, w in rows if ok is False)


def test_a_clone_in_the_source_zone_with_the_old_flavour_and_type_fails() -> None:
    same = (*_server("dst", "h1", 1, 512), _disks("c", "ssd", "az1", ("s-sys", "s-data")))
    failed = {str(p): str(w) for p, ok, w in judge_clone(PLAN, SOURCE, same, SOURCE, ["az1"]) if ok is False}
    assert len(failed) == 4  # zone, flavour, two disk types
    zone = failed["the clone runs in the destination zone az2 (by its host's aggregate)"]
    assert "it runs on host h1, in zone az1" in zone


def test_a_move_instead_of_a_copy_fails() -> None:
    # the source itself moved to the other zone (a migration called a clone): it is no longer untouched
    moved_source = (*_server("src", "h2", 1, 512), SOURCE[2])
    rows = judge_clone(PLAN, SOURCE, HONEST, moved_source, ["az1"])
    assert [str(w) for p, ok, w in rows if ok is False] == ["its zone changed from az1 to az2"]
    gone = judge_clone(PLAN, SOURCE, HONEST, None, ["az1"])
    assert [str(w) for p, ok, w in gone if ok is False] == ["the source server src is gone"]


def test_no_clone_is_judged_fail() -> None:
    rows = judge_clone(PLAN, SOURCE, None, SOURCE, ["az1"])
    assert [(str(p), ok) for p, ok, _ in rows] == [("the clone exists and runs (a new id)", False)]


class MemoryCloud:
    """An in-memory cloud playing Clone; ``cheat`` makes its clone a new empty server, ``refuse`` refuses it."""

    boots_guests = False

    def __init__(self, *, cheat: bool = False, refuse: bool = False, zones: int = 2) -> None:
        self.cheat, self.refuse, self.zones = cheat, refuse, zones
        self.servers: dict[str, tuple[Booted, Where, list[Disk]]] = {}
        self.ids = itertools.count(1)

    def clone_plan(self) -> dict[str, Any]:
        if self.zones < 2:
            return {"missing": ["zone"]}
        return PLAN

    def _make(self, name: str, zone: str, flavour: str, disk_type: str, sources: tuple[str | None, str | None]) -> str:
        f = PLAN["from"] if flavour == "small" else PLAN["to"]
        vid = f"vm{next(self.ids)}"
        host = "h1" if zone == "az1" else "h2"
        b, w = _server(vid, host, int(f["vcpus"]), int(f["ram_mb"]))
        self.servers[vid] = (b, w, _disks(vid, disk_type, "az1", sources))
        return vid

    def create_cloneable(self, run_id: str, name: str, *, zone: str, flavour: str, disk_type: str) -> str:
        return self._make(name, zone, flavour, disk_type, (None, None))

    def clone_server(self, run_id: str, source: str, name: str, *, zone: str, flavour: str, disk_type: str) -> str:
        if self.refuse:
            raise RuntimeError("HTTP 400: Invalid volume_type provided")
        sources = (None, None) if self.cheat else (f"{source}-sys", f"{source}-data")
        return self._make(name, zone, flavour, disk_type, sources)

    def disks(self, vid: str) -> list[Disk]:
        return self.servers[vid][2]

    def disk_zones(self) -> list[str]:
        return ["az1"]

    def booted(self, vid: str) -> Booted:
        return self.servers[vid][0]

    def where(self, ids: list[str]) -> dict[str, Where]:
        return {i: self.servers[i][1] for i in ids}

    def delete_clone_set(self, run_id: str, timeout_s: float) -> list[str]:
        self.servers.clear()
        return []


def _run(cloud: MemoryCloud) -> CaseEvidence:
    assert isinstance(cloud, Clone)
    record = CaseRecord("suites/compute/test_clone.py::t", ["SX-ECS-7"], "selftest")
    ev = CaseEvidence(record, load_catalog(CATALOG), 1.0)
    check_clone(cloud, "r1", ev, timeout_s=5)
    return ev


def test_the_case_on_an_honest_cloud_passes_what_it_shows() -> None:
    ev = _run(MemoryCloud())
    verdicts = [m.verdict for m in ev.record.measurements]
    assert FAIL not in verdicts and verdicts.count(NOT_SHOWN) == 2  # the disks' zone and their content
    assert verdicts.count(PASS) == 9  # exists, zone, flavour, 2 × (type, copy), source untouched, deleted
    ev.require_pass()


def test_the_case_on_a_cheating_cloud_fails() -> None:
    ev = _run(MemoryCloud(cheat=True))
    assert [m.verdict for m in ev.record.measurements].count(FAIL) == 2
    with pytest.raises(pytest.fail.Exception, match="SX-ECS-7 FAIL"):
        ev.require_pass()


def test_a_refused_clone_is_fail_naming_the_answer_and_one_zone_is_not_shown() -> None:
    ev = _run(MemoryCloud(refuse=True))
    failed = [m for m in ev.record.measurements if m.verdict == FAIL]
    assert len(failed) == 1 and "Invalid volume_type provided" in failed[0].reason
    ev = _run(MemoryCloud(zones=1))
    shown = [(m.verdict, m.reason) for m in ev.record.measurements]
    assert shown[0] == (NOT_SHOWN, "nothing to clone across: the cloud lacks a second availability zone")
