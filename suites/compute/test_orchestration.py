"""SX-ECS-5: a Heat stack — a server, a volume and their attachment, with depends_on, get_resource and get_attr —
judged on each service's own view (the checks are in ``clauseproof.compute.orchestration``)."""

from __future__ import annotations

import pytest

from clauseproof.compute.orchestration import check_stack
from clauseproof.compute.roles import Orchestration
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import msg, skip
from fixtures.cloud import Cloud


@pytest.mark.clause("SX-ECS-5")
def test_stack_with_dependencies(cloud: Cloud, evidence: CaseEvidence) -> None:
    cloud.record(evidence)
    if not isinstance(cloud.driver, Orchestration):
        skip(msg("skip_no_orchestration", cloud=cloud.driver.name))
    evidence.window(msg("win_stack"))
    check_stack(cloud.driver, cloud.run_id, evidence, timeout_s=cloud.settings.timeout_s)
    evidence.require_pass()
