"""SX-RDS-4's automatic backups and retention through a vendor's [backup_policy] commands, over a tool with a real
scheduler (tests/backup_vendorctl.py): the honest tool passes; one that keeps 30 days whatever it is told, and one
whose scheduled backups are of an empty database, are judged FAIL; the embedded engines are NOT SHOWN."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from clauseproof.backup.policy import check_automatic_backups
from clauseproof.core.catalog import load_catalog
from clauseproof.core.evidence import CaseEvidence, CaseRecord
from clauseproof.targets.single.external import ExternalTarget
from clauseproof.targets.single.postgres import EmbeddedPostgres
from tests.fix_targets import CATALOG, ROOT, vendor_profile


def _evidence() -> CaseEvidence:
    return CaseEvidence(CaseRecord("suites/backup/t.py::t[x]", ["SX-RDS-4"], "selftest"), load_catalog(CATALOG), 1.0)


def _run(server: EmbeddedPostgres, tmp_path: Path, cheat: str = "") -> list[tuple[str, str]]:
    state = tmp_path / "state"
    state.mkdir()
    tool = f"{sys.executable} {ROOT / 'tests' / 'backup_vendorctl.py'} --state {state} --port {server.port}"
    tool += f" --cheat {cheat}" if cheat else ""
    section = (f'[backup_policy]\nshow = "{tool} show"\nset = "{tool} set {{retention_days}} {{interval_s}}"\n'
               f'list = "{tool} list"\nrestore = "{tool} restore {{id}} {{new_database}}"\ninterval_s = 2\n'
               "wait_s = 20\n")  # fmt: skip
    target = ExternalTarget.from_profile(vendor_profile(tmp_path / "v.toml", server, section), "clauseproof_st_pol")
    target.start()
    ev = _evidence()
    try:
        check_automatic_backups(target, ev)
    finally:
        target.stop()
    return [(m.verdict, m.reason) for m in ev.record.measurements]


def test_an_honest_scheduler_passes(pg_server: EmbeddedPostgres, tmp_path: Path) -> None:
    assert _run(pg_server, tmp_path) == [("PASS", ""), ("PASS", "")]


@pytest.mark.parametrize(
    ("cheat", "failed", "reason"),
    [("retention", 0, "retention_days = 30"), ("empty", 1, "the restore failed")],
)
def test_a_cheating_policy_fails(pg_server: EmbeddedPostgres, tmp_path: Path, cheat: str, failed: int,
                                 reason: str) -> None:  # fmt: skip
    verdicts = _run(pg_server, tmp_path, cheat)
    assert verdicts[failed][0] == "FAIL" and reason in verdicts[failed][1], verdicts
    assert verdicts[1 - failed][0] == "PASS", verdicts


def test_the_embedded_engines_are_not_shown(pg_server: EmbeddedPostgres) -> None:
    ev = _evidence()
    check_automatic_backups(pg_server, ev)
    assert [m.verdict for m in ev.record.measurements] == ["NOT SHOWN", "NOT SHOWN"]
    assert "no backup scheduler of their own" in ev.record.measurements[0].reason
