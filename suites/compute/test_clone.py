"""SX-ECS-7 ▲: a server cloned into another availability zone with another flavour and another disk type (the checks
are in ``clauseproof.compute.clone``)."""

from __future__ import annotations

import pytest

from clauseproof.compute.clone import check_clone
from clauseproof.compute.roles import Clone
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import msg, skip
from fixtures.cloud import Cloud


@pytest.mark.clause("SX-ECS-7")
def test_clone_across_zones(cloud: Cloud, evidence: CaseEvidence) -> None:
    cloud.record(evidence)
    if not isinstance(cloud.driver, Clone):
        skip(msg("skip_no_clone", cloud=cloud.driver.name))
    evidence.window(msg("win_clone"))
    check_clone(cloud.driver, cloud.run_id, evidence, timeout_s=cloud.settings.timeout_s)
    evidence.require_pass()
