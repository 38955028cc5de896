"""BZ-SEC-1 (seed 003 三、3): data in transit protected — TLS 1.2+ offered, its certificate recorded, and a login
without TLS refused because it is plaintext — and a traceable audit trail: every data change the harness makes is
there with its user and time. The checks are in ``clauseproof.db_service.security``."""

from __future__ import annotations

import pytest

from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import msg
from clauseproof.db_service import security
from clauseproof.db_service.vendor import audit_of, section_of
from clauseproof.targets.roles import Database


@pytest.mark.clause("BZ-SEC-1")
def test_transport_security_and_audit_trail(target: Database, evidence: CaseEvidence) -> None:
    section = section_of(target)
    evidence.window(msg("win_none"))
    security.check_transport(target, evidence, section.tls_required if section else None)
    trail, delay_s, why_not = audit_of(target)
    if trail is None:
        evidence.part("BZ-SEC-1", None, statistic=msg("audit_in_trail_short"), not_shown=why_not)
    else:
        try:
            security.check_audit(target, trail, evidence, delay_s)
        finally:
            trail.audit_stop()
    evidence.require_pass()
