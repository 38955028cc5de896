"""BZ-DB-3: the domestic CPU (Kunpeng, Phytium, Hygon) and OS (Kylin, UOS) of the database host, read from the host
itself (SQL, the profile's host command, or this machine for a server started here), never from the profile's
``[server]`` declaration, which is compared with the facts instead. The checks are in
``clauseproof.db_service.platform``."""

from __future__ import annotations

import pytest

from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import msg
from clauseproof.db_service.platform import check_platform
from clauseproof.targets.roles import Database


@pytest.mark.clause("BZ-DB-3")
def test_domestic_cpu_and_os_read_from_the_host(target: Database, evidence: CaseEvidence) -> None:
    facts = check_platform(target, evidence)
    unread = msg("unread")
    host = msg("host_shown", cpu=facts.cpu_vendor or unread, arch=facts.arch, os=facts.os_name or unread)
    evidence.note(msg("note_stable_operation", host=host))
    evidence.require_pass()
