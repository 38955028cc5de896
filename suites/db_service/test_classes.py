"""SX-RDS-S2: the instance classes of the clause, each created through the vendor's API (``[instance_classes]``) and
measured — vCPUs by how CPU-bound sessions scale, memory by the engine's own buffer growing with the class — then
dropped. NOT SHOWN on the embedded stand-in, which offers no classes. The checks are in
``clauseproof.db_service.classes``."""

from __future__ import annotations

import pytest

from clauseproof.core.evidence import CaseEvidence
from clauseproof.db_service.classes import check_classes
from clauseproof.targets.roles import Database


@pytest.mark.clause("SX-RDS-S2")
def test_instance_classes_measured(target: Database, evidence: CaseEvidence) -> None:
    check_classes(target, evidence)
    evidence.require_pass()
