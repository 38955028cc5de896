"""SX-RDS-S2 through a vendor's [instance_classes] whose every class is the same server (the cheapest cheat): the
larger classes are judged FAIL, naming the smaller class they equal and the vCPUs they lack; the embedded stand-in is
NOT SHOWN for every class of the clause."""

from __future__ import annotations

import sys
from pathlib import Path

from clauseproof.core.catalog import load_catalog
from clauseproof.core.evidence import CaseEvidence, CaseRecord
from clauseproof.db_service.classes import CLASSES, check_classes
from clauseproof.targets.single.external import ExternalTarget
from clauseproof.targets.single.postgres import EmbeddedPostgres
from tests.fix_targets import CATALOG, ROOT, vendor_profile


def _evidence() -> CaseEvidence:
    return CaseEvidence(CaseRecord("suites/db_service/t.py::t[x]", ["SX-RDS-S2"], "selftest"), load_catalog(CATALOG), 1)


def test_every_class_the_same_server_fails(pg_server: EmbeddedPostgres, tmp_path: Path) -> None:
    tool = f"{sys.executable} {ROOT / 'tests' / 'classes_vendorctl.py'} {pg_server.port}"
    section = (f'[instance_classes]\ncreate = "{tool} create {{name}} {{vcpus}} {{memory_gb}} {{disk_gb}}"\n'
               f'drop = "{tool} drop {{name}}"\nclasses = ["2c8g250", "2c16g250", "4c16g250"]\n')  # fmt: skip
    target = ExternalTarget.from_profile(vendor_profile(tmp_path / "v.toml", pg_server, section), "clauseproof_st_cls")
    target.start()
    ev = _evidence()
    try:
        check_classes(target, ev, level_s=0.3)  # no vCPU figure is asserted here: short levels do
    finally:
        target.stop()
    rows = [(m.verdict, m.reason) for m in ev.record.measurements]
    assert len(rows) == 3
    assert rows[1][0] == "FAIL" and "smaller class 2c8g250: the same size under another name" in rows[1][1], rows
    # (the vCPU part is not asserted: beside the other self-tests' load, more sessions win a larger share of this
    # machine's CPUs than one session, and the ratio is no measure of the server; on a vendor's instance it is)
    assert rows[2][0] == "FAIL" and "class 2c8g250: the same size under another name" in rows[2][1], rows
    measured = ev.record.parameters["classes"]
    assert {m["instance"] for m in measured.values()} == {f"127.0.0.1:{pg_server.port}"}  # what the evidence shows


def test_the_embedded_stand_in_offers_no_classes(pg_server: EmbeddedPostgres) -> None:
    ev = _evidence()
    check_classes(pg_server, ev)
    assert [m.verdict for m in ev.record.measurements] == ["NOT SHOWN"] * len(CLASSES)
