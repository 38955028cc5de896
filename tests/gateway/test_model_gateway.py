"""SX-EDAS-3's check against the embedded LiteLLM gateway and its positive controls — one vendor behind every
model name, a URL forwarding the vendor's native answers untranslated, a stream buffered and replayed — each
judged FAIL on exactly the parts it breaks; start/stop leaves nothing (SIGKILL + reap: tests/gateway/test_gateway.py);
no LiteLLM is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from clauseproof.core.errors import ClauseproofError
from clauseproof.gateway.openai_compat import check
from clauseproof.targets.gateways import litellm as modelgateway
from clauseproof.targets.gateways.litellm import ModelGateway
from clauseproof.targets.host.processes import _pid_alive as _alive

#: timing-dependent (./run test runs these alone, after the rest):
#: stream deltas must arrive spread as the vendor sent them (0.1 s apart), not buffered
pytestmark = pytest.mark.timing

ROOT = Path(__file__).resolve().parents[2]


def _verdicts(**kw: bool) -> dict[str, bool | None]:
    g = ModelGateway(**kw)
    g.start()
    try:
        result = check(g.base_url, g.api_key, g.models(), g.vendors_url)
    finally:
        g.stop()
    return {str(part): ok for part, ok, _, _ in result.parts}


def test_the_embedded_gateway_passes_every_part_and_stop_leaves_nothing() -> None:
    g = ModelGateway()
    g.start()
    pids, folder = [p.pid for p in g.procs], g.folder
    try:
        result = check(g.base_url, g.api_key, g.models(), g.vendors_url)
    finally:
        g.stop()
    assert [p for p, ok, _, _ in result.parts if ok is not True] == []
    assert len(result.parts) == 10
    assert folder is not None and not folder.exists()
    assert not any(_alive(p) for p in pids)


def test_one_vendor_behind_every_model_fails_routing() -> None:
    v = _verdicts(one_vendor=True)
    assert v["vendor-b-chat: chat completion parses and comes from ollama"] is False
    assert v["vendor-b-chat: streaming (role, content deltas as sent, finish_reason, usage, [DONE])"] is False
    assert v["vendor-a-chat: chat completion parses and comes from anthropic"] is True


def test_native_answers_forwarded_untranslated_fail() -> None:
    v = _verdicts(passthrough=True)
    assert v["vendor-a-chat: chat completion parses and comes from anthropic"] is False
    assert v["vendor-a-chat: streaming (role, content deltas as sent, finish_reason, usage, [DONE])"] is False
    assert v["an unknown model is refused"] is False


def test_a_buffered_stream_fails_streaming_only() -> None:
    v = _verdicts(buffered=True)
    assert v["vendor-a-chat: streaming (role, content deltas as sent, finish_reason, usage, [DONE])"] is False
    assert v["vendor-b-chat: streaming (role, content deltas as sent, finish_reason, usage, [DONE])"] is False
    assert v["vendor-a-chat: chat completion parses and comes from anthropic"] is True


def test_no_litellm_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(modelgateway, "LITELLM_VENV", tmp_path / "none")
    with pytest.raises(ClauseproofError, match="LiteLLM's proxy is not installed") as exc:
        ModelGateway().start()
    assert "./run sets it up" in str(exc.value)
