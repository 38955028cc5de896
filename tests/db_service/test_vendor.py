"""The db_service suite against a vendor's service through a profile's ``[service]`` commands, end to end, with a
tool that cheats (always healthy, lists no slow query, an empty audit trail): each such part is FAIL, the platform
facts NOT SHOWN (this host), SX-RDS-1 skipped (a PostgreSQL-protocol target), and a bad section is a clear error."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.single.external import load_profile
from clauseproof.targets.single.postgres import EmbeddedPostgres
from tests.fix_targets import ROOT, vendor_profile

TOOL = f"{sys.executable} {ROOT / 'tests' / 'service_vendorctl.py'}"
SECTION = f"""[service]
slow_queries_command = "{TOOL} slow --since {{since}}"
health_command = "{TOOL} health"
host_command = "{TOOL} host"
audit_command = "{TOOL} audit --since {{since}}"
report_delay_s = 2
health_delay_s = 2
audit_delay_s = 2
tls_required = true
"""


def test_a_cheating_service_tool_fails_end_to_end(
    project: pytest.Pytester, pg_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    profile = vendor_profile(tmp_path / "vendor.toml", pg_server, SECTION)
    result = project.runpytest("suites/db_service", f"--cp-target={profile}", "--cp-results=results")
    result.assert_outcomes(failed=2, skipped=1, passed=2)  # passed: BZ-DB-3, SX-RDS-S2 (NOT SHOWN rows)
    doc = json.loads(next((project.path / "results").glob("*/evidence.json")).read_text())
    rows: dict[str, list[tuple[str, str]]] = {}
    for r in doc["clause_rows"]:
        rows.setdefault(r["id"], []).append((r["verdict"], r["reason"]))
    verdicts = {cid: [v for v, _ in r] for cid, r in rows.items()}
    # healthy before, after each fault; the lock wait never shown; slow statement never listed; connections: no opt-in
    assert verdicts["SX-RDS-5"] == ["FAIL", "PASS", "PASS", "FAIL", "PASS", "NOT SHOWN"], rows["SX-RDS-5"]
    assert "not listed after" in doc_reason(doc, "SX-RDS-5", 0) and "stayed healthy" in doc_reason(doc, "SX-RDS-5", 3)
    assert verdicts["BZ-DB-3"] == ["NOT SHOWN", "NOT SHOWN"]  # this host's own facts, read by the vendor's tool
    assert verdicts["BZ-SEC-1"] == ["FAIL", "FAIL", "FAIL", "NOT SHOWN"], rows["BZ-SEC-1"]
    assert "although the profile declares tls_required = true" in doc_reason(doc, "BZ-SEC-1", 1)
    assert verdicts["SX-RDS-1"] == ["SKIPPED"]  # a PostgreSQL-protocol target


def doc_reason(doc: dict[str, Any], clause: str, i: int) -> str:
    return str([r for r in doc["clause_rows"] if r["id"] == clause][i]["reason"])


def test_a_bad_service_section_names_file_line_and_fix(tmp_path: Path, pg_server: EmbeddedPostgres) -> None:
    profile = vendor_profile(tmp_path / "v.toml", pg_server, "[service]\nhealth_command = \"tool '{since}'\"\n")
    with pytest.raises(ClauseproofError) as exc:
        load_profile(profile)
    assert "[service] health_command" in str(exc.value) and "v.toml:" in str(exc.value)
