"""SX-EDAS-2: SSE and streamable HTTP through the gateway, transparently — each event within a stated delay of
the same stream read directly (no buffering), heartbeats forwarded, framing intact, ``Last-Event-ID`` resume,
and upstream connections reused.  The window of each delay: from the upstream's send (its wall-clock stamp in
the event) to the client's read of the event's last line; set-up (starting nginx and the upstream, connecting)
is outside it."""

from __future__ import annotations

import pytest

from clauseproof.core.catalog import Catalog
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import msg
from clauseproof.gateway.streaming import check
from clauseproof.targets.roles import HttpGateway


@pytest.mark.clause("SX-EDAS-2")
def test_streaming_passes_through(gateway: HttpGateway, evidence: CaseEvidence, clause_catalog: Catalog) -> None:
    evidence.record.target = gateway.label
    if not gateway.stream_url:
        evidence.not_shown("SX-EDAS-2", statistic=msg("no_stream_route"), why=msg("no_stream_route_why"))
        return
    params = clause_catalog["SX-EDAS-2"].params
    evidence.parameters(
        gateway=gateway.describe(),
        schedule=f"{params['events']} events {params['interval_s']} s apart, a heartbeat between each two",
        extra_delay_bound=f"{params['extra_delay_s']} s: the acceptance plan's (the tender gives none)",
    )
    result = check(
        gateway.stream_url,
        gateway.direct_url,
        events=int(params["events"]),
        interval_s=float(params["interval_s"]),
        extra_delay_s=float(params["extra_delay_s"]),
        requests=int(params["requests"]),
    )
    for part, ok, measured, why in result.parts:
        evidence.part(
            "SX-EDAS-2", ok, statistic=msg("named_part", name=part, statistic=measured), why="" if ok else why
        )
    evidence.parameters(**result.data)
    evidence.require_pass()
