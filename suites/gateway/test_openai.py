"""SX-EDAS-3: an OpenAI-compatible API over several model vendors, driven by the official ``openai`` client
(``clauseproof.gateway.openai_compat``) — models listed, chat completions that parse and come from the named
model's vendor, streaming (role, content deltas as the vendor sends them, finish_reason, usage, ``[DONE]``), the
vendors' native errors as OpenAI errors, and an unknown model refused.  On the embedded gateway: LiteLLM's proxy
in front of two fake vendors with different native shapes (Anthropic-style Messages, Ollama-style chat).
Starting the gateway is outside every measurement; nothing here is timed but the stream's spread."""

from __future__ import annotations

import pytest

from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import msg
from clauseproof.gateway.openai_compat import check
from clauseproof.targets.roles import ModelGateway


@pytest.mark.clause("SX-EDAS-3")
def test_openai_compatible_api_over_two_vendors(model_gateway: ModelGateway, evidence: CaseEvidence) -> None:
    evidence.record.target = model_gateway.label
    if not model_gateway.openai_url:
        evidence.not_shown("SX-EDAS-3", statistic=msg("no_openai_endpoint"), why=msg("no_openai_endpoint_why"))
        return
    evidence.parameters(gateway=model_gateway.describe(), client="the official openai Python SDK, no retries")
    result = check(model_gateway.openai_url, model_gateway.api_key, model_gateway.models(), model_gateway.vendors_url)
    for part, ok, measured, why in result.parts:
        said = msg("named_part", name=part, statistic=measured)
        evidence.part("SX-EDAS-3", ok, statistic=said, why="" if ok else why)
    evidence.parameters(**result.data)
    evidence.require_pass()
