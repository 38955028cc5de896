"""BZ-SEC-1 on an embedded PostgreSQL that requires TLS (the positive control: every part passes, the certificate is
recorded) and the cheats judged FAIL: a server that accepts plaintext, an audit trail without the deletes, one
whose lines name neither user nor time."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from clauseproof.core.catalog import load_catalog
from clauseproof.core.evidence import CaseEvidence, CaseRecord
from clauseproof.db_service import security
from clauseproof.targets.roles import AuditTrail
from clauseproof.targets.single.postgres import EmbeddedPostgres
from tests.fix_targets import CATALOG


def _evidence() -> CaseEvidence:
    return CaseEvidence(CaseRecord("suites/db_service/t.py::t[x]", ["BZ-SEC-1"], "selftest"), load_catalog(CATALOG), 1)


@pytest.fixture(scope="module")
def tls_pg() -> Iterator[EmbeddedPostgres]:
    t = EmbeddedPostgres("selftest-postgresql-tls", "clauseproof_selftest_tls", None, tls=True)
    t.start()
    yield t
    t.stop()


def test_a_server_requiring_tls_passes_and_its_certificate_is_recorded(tls_pg: EmbeddedPostgres) -> None:
    ev = _evidence()
    security.check_transport(tls_pg, ev, declared_required=True)
    assert [m.verdict for m in ev.record.measurements] == ["PASS", "PASS"], [m.reason for m in ev.record.measurements]
    tls = ev.record.parameters["tls"]
    assert tls["protocol"] in ("TLSv1.2", "TLSv1.3") and "clauseproof selftest-postgresql-tls CA" in str(
        tls["certificate"]["issuer"]
    )
    assert "no encryption" in ev.record.parameters["plaintext_login"]


def test_a_server_accepting_plaintext_fails(pg_server: EmbeddedPostgres) -> None:
    ev = _evidence()
    security.check_transport(pg_server, ev, declared_required=True)
    verdicts = [(m.verdict, m.reason) for m in ev.record.measurements]
    assert verdicts[0][0] == "FAIL" and "no TLS" in verdicts[0][1]
    assert verdicts[1] == ("FAIL", "a plaintext login with the right password was accepted although the profile "
                                   "declares tls_required = true")  # fmt: skip


class Trail:
    """The real audit trail, its lines passed through ``edit`` (None drops a line)."""

    def __init__(self, real: AuditTrail, edit: object) -> None:
        self.real, self.edit = real, edit
        self.audit_source = "an imitation"

    def audit_start(self) -> None:
        self.real.audit_start()

    def audit_entries(self) -> list[str]:
        assert callable(self.edit)
        return [e for e in (self.edit(ln) for ln in self.real.audit_entries()) if e is not None]

    def audit_stop(self) -> None:
        self.real.audit_stop()


def _audit(server: EmbeddedPostgres, trail: AuditTrail) -> list[tuple[str, str]]:
    ev = _evidence()
    try:
        security.check_audit(server, trail, ev, wait_s=3)
    finally:
        trail.audit_stop()
    return [(m.verdict, m.reason) for m in ev.record.measurements]


def test_the_real_audit_trail_passes_and_its_imitations_fail(tls_pg: EmbeddedPostgres) -> None:
    assert _audit(tls_pg, tls_pg) == [("PASS", ""), ("PASS", "")]
    no_deletes = Trail(tls_pg, lambda ln: None if ",DELETE," in ln else ln)
    v = _audit(tls_pg, no_deletes)
    assert v[0][0] == "FAIL" and "not in the trail: DELETE" in v[0][1], v
    statements_only = Trail(tls_pg, lambda ln: re.sub(r"^.*AUDIT: ", "", ln))  # a statement log, not an audit trail
    v = _audit(tls_pg, statements_only)
    assert v[0][0] == "PASS" and v[1][0] == "FAIL", v
    assert "no user on CREATE TABLE, INSERT, UPDATE, DELETE" in v[1][1] and "no time near the change" in v[1][1]
