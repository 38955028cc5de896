"""BZ-SYNC-3 with a vendor's own checker, end to end through a profile's [sync] check_command: an honest checker
(clauseproof's own, as a vendor tool) passes; one that compares row counts only is judged FAIL."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from clauseproof.targets.single.mariadb import EmbeddedMariaDB
from clauseproof.targets.single.postgres import EmbeddedPostgres
from tests.fix_targets import ROOT, vendor_profile


def _profile(tmp_path: Path, pg: EmbeddedPostgres, my: EmbeddedMariaDB, cheat: str) -> Path:
    a, b = pg._ep(), my._ep()
    os.environ["SYNC_CHECK_A_PW"], os.environ["SYNC_CHECK_B_PW"] = pg.password, my.password
    os.environ["VENDORCTL_A_URL"] = f"postgresql://{a.user}:{pg.password}@{a.host}:{a.port}/{a.database}"
    os.environ["VENDORCTL_B_URL"] = f"mysql://{b.user}:{my.password}@{b.host}:{b.port}/"
    tool = f"{sys.executable} {ROOT / 'tests' / 'sync_checkctl.py'} {cheat}".strip()
    section = (
        f'[sync]\nnodes = [{{ name = "a", url = "postgresql://{a.user}@{a.host}:{a.port}/{a.database}", '
        f'password_env = "SYNC_CHECK_A_PW" }}, {{ name = "b", url = "mysql://{b.user}@{b.host}:{b.port}/", '
        f'password_env = "SYNC_CHECK_B_PW" }}]\n'
        'create_task = "true {name}"\ndrop_task = "true {name}"\nsupports = ["capture"]\n'
        f'check_command = "{tool} --schema {{schema}} {{source_table}} {{target_table}}"\n'
    )
    path = vendor_profile(tmp_path / "vendor.toml", pg, section, name="vendor-sync-check")
    passed = 'pass_env = ["VENDORCTL_A_URL", "VENDORCTL_B_URL"]\n'  # the tool's node URLs, passed on by name
    path.write_text(path.read_text().replace("[target]\n", "[target]\n" + passed, 1))
    return path


@pytest.mark.parametrize(("cheat", "verdicts"), [("", ["PASS", "PASS", "PASS"]),
                                                  ("--counts-only", ["PASS", "PASS", "FAIL"])])  # fmt: skip
def test_the_vendors_checker_is_judged_on_the_seeded_differences(
    project: pytest.Pytester, pg_server: EmbeddedPostgres, mariadb_server: EmbeddedMariaDB, tmp_path: Path,
    cheat: str, verdicts: list[str],
) -> None:  # fmt: skip
    profile = _profile(tmp_path, pg_server, mariadb_server, cheat)
    result = project.runpytest("suites/sync", f"--cp-target={profile}", "-k", "vendors_own_checker")
    result.assert_outcomes(**({"passed": 1} if not cheat else {"failed": 1}))
    doc = json.loads((project.path / "results" / "latest" / "evidence.json").read_text())
    rows = [m for c in doc["cases"] for m in c["measurements"]]
    assert [m["verdict"] for m in rows] == verdicts, [(m["verdict"], m["reason"]) for m in rows]
    if cheat:
        assert "not named: [5, 101, 202, 303, 404, 505, 707, 808, 20100]" in rows[2]["reason"]  # 20100: the extra row
