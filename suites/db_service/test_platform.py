"""BZ-DB-3: the domestic CPU (Kunpeng, Phytium, Hygon) and OS (Kylin, UOS) of the database host, read from the host
itself (SQL, the profile's host command, or this machine for a server started here), never from the profile's
``[server]`` declaration, which is compared with the facts instead. The checks are in
``clauseproof.db_service.platform``."""

from __future__ import annotations

import pytest

from clauseproof.core.evidence import CaseEvidence
from clauseproof.db_service.platform import check_platform
from clauseproof.targets.roles import Database


@pytest.mark.clause("BZ-DB-3")
def test_domestic_cpu_and_os_read_from_the_host(target: Database, evidence: CaseEvidence) -> None:
    facts = check_platform(target, evidence)
    evidence.note(
        f"stable operation on this host ({facts.cpu_vendor or 'unread'} {facts.arch}, {facts.os_name or 'unread'}) "
        "is shown by the bulk-load and failover suites run against the same target in this run"
    )
    evidence.require_pass()
