"""SX-EDAS-1: role-based access control — least privilege and tenant isolation — as a matrix of (subject, operation)
→ allowed / refused, driven through the cloud's API with users the harness creates (the checks are in
``clauseproof.access.rbac``, the matrix in ``clauseproof/access/matrix.toml``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clauseproof.access.rbac import check_matrix
from clauseproof.compute.roles import AccessControl
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import msg, skip
from fixtures.cloud import Cloud


@pytest.mark.clause("SX-EDAS-1")
def test_role_matrix(cloud: Cloud, evidence: CaseEvidence) -> None:
    cloud.record(evidence)
    if not isinstance(cloud.driver, AccessControl):
        skip(msg("skip_no_roles", cloud=cloud.driver.name))
    evidence.window(msg("win_rbac"))
    matrix = cloud.settings.profile.get("access_matrix")
    check_matrix(cloud.driver, cloud.run_id, evidence, Path(matrix) if matrix else None)
    evidence.require_pass()
