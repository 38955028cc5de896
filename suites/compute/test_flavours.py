"""SX-ECS-S3: every flavour the clause lists exists, boots, and the booted server reports it (the checks are in
``clauseproof.compute.flavours``)."""

from __future__ import annotations

import pytest

from clauseproof.compute.flavours import check_flavours
from clauseproof.compute.roles import Flavours
from clauseproof.core.catalog import Catalog
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import msg, skip
from fixtures.cloud import Cloud


@pytest.mark.clause("SX-ECS-S3")
def test_listed_flavours_boot(cloud: Cloud, evidence: CaseEvidence, clause_catalog: Catalog) -> None:
    cloud.record(evidence)
    if not isinstance(cloud.driver, Flavours):
        skip(msg("skip_no_flavours", cloud=cloud.driver.name))
    s = cloud.settings
    evidence.window(msg("win_flavours"))
    check_flavours(cloud.driver, cloud.run_id, clause_catalog["SX-ECS-S3"].text, evidence, poll_s=s.poll_interval_s,
                   timeout_s=s.timeout_s)  # fmt: skip
    evidence.require_pass()
