"""SX-RDS-5: slow-query analysis, self-diagnosis and health status.

A statement made slow on purpose must be listed, with its time, and 20 fast ones beside it must not; the health
status must be healthy, then name a real fault the harness causes (a session blocked on a held row lock; every
connection taken), then recover. The embedded servers answer from their own slow logs and catalogs; a vendor's
service through its profile's ``[service]`` commands. The checks are in ``clauseproof.db_service.diagnosis``."""

from __future__ import annotations

import pytest

from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import msg
from clauseproof.core.settings import Settings
from clauseproof.db_service import diagnosis
from clauseproof.db_service.vendor import diagnosis_of
from clauseproof.targets.roles import Database


@pytest.mark.clause("SX-RDS-5")
def test_slow_queries_and_health(target: Database, evidence: CaseEvidence, cp_settings: Settings) -> None:
    diag, (delay_s, health_s), why_not = diagnosis_of(target)
    if diag is None:
        for part in ("slow-query analysis lists the marked slow statement", "health status names a real fault"):
            evidence.part("SX-RDS-5", None, statistic=part, not_shown=why_not)
        return
    evidence.parameters(source=diag.diagnosis_source)
    evidence.window(msg("win_diagnosis"))
    fill = "" if target.profile is None or cp_settings.destructive else (
        "taking every connection of a vendor's service needs --cp-destructive=yes")  # fmt: skip
    try:
        diagnosis.check_slow_queries(target, diag, evidence, delay_s)
        diagnosis.check_health(target, diag, evidence, fill, health_s)
    finally:
        diag.diagnosis_stop()
    evidence.require_pass()
