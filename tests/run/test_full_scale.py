"""The full-scale acceptance run on the embedded default, as a user runs it (slow: ./run slow)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.fix_targets import ROOT


@pytest.mark.slow
def test_full_scale_acceptance_run_reports_every_clause(tmp_path: pytest.TempPathFactory) -> None:
    results = tmp_path / "results"  # type: ignore[operator]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "suites", f"--cp-results={results}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]  # 1: a clause FAILed
    doc = json.loads((results / "latest" / "evidence.json").read_text())
    assert doc["parameters"]["scale"] == 1 and doc["parameters"]["repeats"] == 3
    rows = {(r["id"], r["target"]): r for r in doc["clause_rows"]}
    for cid in ("BZ-DB-4a", "BZ-DB-4b", "BZ-DB-4c", "BZ-DB-4d"):
        for target in ("embedded-postgresql", "embedded-mariadb"):
            assert rows[(cid, target)]["verdict"] in ("PASS", "FAIL"), rows[(cid, target)]
    assert {r["id"] for r in doc["clause_rows"]} == {c["id"] for c in doc["catalog"]}
    assert not [r for r in doc["clause_rows"] if r["verdict"] == "ERROR"]
    for cid in ("SX-RDS-2a", "SX-RDS-2b", "SX-RDS-2c"):
        for target in ("embedded-postgresql-replicated", "embedded-mariadb-replicated"):
            assert rows[(cid, target)]["verdict"] in ("PASS", "FAIL"), rows[(cid, target)]
    for target in ("embedded-postgresql", "embedded-mariadb"):
        assert rows[("SX-RDS-6", target)]["verdict"] in ("PASS", "FAIL"), rows[("SX-RDS-6", target)]
    assert rows[("SX-ECS-6a", "simulated EC2 (moto)")]["verdict"] == "NOT EVIDENCE"
    assert (results / "latest" / "report.html").is_file()
