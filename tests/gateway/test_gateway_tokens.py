"""SX-EDAS-4's token-consumption check (``clauseproof.gateway.tokens``): a correct reference limiter passes every
part; the cheats — a quota set 2x higher, streamed answers not counted, a request count dressed as a token quota,
one quota for every model, refusals without 429/Retry-After — each FAIL on exactly their parts; LiteLLM 1.108.7,
the embedded stand-in, fails on what it really lacks (streams uncounted, no Retry-After); bad declarations are clear
errors."""

from __future__ import annotations

from typing import Any

import pytest

from clauseproof.core.errors import ClauseproofError
from clauseproof.gateway.tokens import TokenResult, check_tokens, parse_token_rule
from clauseproof.targets.gateways.litellm import ModelGateway
from tests.token_limiter import Limiter, serving

QUOTA = 240
RULE = {"kind": "tokens", "tokens": QUOTA, "window_s": 600, "models": ["m-a", "m-b"]}


def _check(limiter: Limiter) -> tuple[TokenResult, dict[str, bool | None]]:
    with serving(limiter) as url:
        res = check_tokens(url, "sk-test", parse_token_rule(RULE))
    return res, {str(p).split(": ", 1)[1].split(", model")[0]: ok for p, ok, _, _ in res.parts}


def test_a_correct_token_limiter_passes_every_part() -> None:
    res, v = _check(Limiter(QUOTA))
    assert v == {
        "quota held, non-streaming": True,
        "quota held, streaming (usage from the stream)": True,
        "refusals are 429 with Retry-After, and stay refused": True,
        "keys isolated": True,
    }, res.parts
    small, large = res.runs
    assert QUOTA - 6 <= small["spent_before_first_refusal"] <= QUOTA + 6
    assert {c["tokens"] for c in large["calls"] if c["status"] == 200} == {48}  # 40 prompt words + 8 answer words


@pytest.mark.parametrize(
    ("cheat", "fails"),
    [
        (Limiter(2 * QUOTA), {"quota held, non-streaming", "quota held, streaming (usage from the stream)"}),
        (Limiter(QUOTA, count_streams=False), {"quota held, streaming (usage from the stream)"}),
        # fits the small requests' quota exactly (40 x 6 tokens) and lets the large ones run ~8x over
        (Limiter(QUOTA, per_request=QUOTA // 6), {"quota held, streaming (usage from the stream)"}),
        (Limiter(QUOTA, shared=True), {"keys isolated"}),
        (Limiter(QUOTA, refuse_status=503), {"refusals are 429 with Retry-After, and stay refused"}),
    ],
    ids=["quota-2x", "streams-uncounted", "request-count", "one-quota", "503"],
)
def test_each_cheat_fails_on_its_parts(cheat: Limiter, fails: set[str]) -> None:
    res, v = _check(cheat)
    if cheat.shared:  # the second model starts refused: its own run shows no quota either
        fails = fails | {"quota held, streaming (usage from the stream)"}
    assert {k for k, ok in v.items() if ok is False} == fails, res.parts
    assert all(ok is True for k, ok in v.items() if k not in fails), res.parts


@pytest.mark.slow  # LiteLLM's start and up to a minute's wait for its quota window (~25 s); ./run slow
def test_litellm_fails_on_streams_uncounted_and_no_retry_after() -> None:
    """What the embedded stand-in really does (LiteLLM 1.108.7, per-model ``tpm`` per calendar minute): the
    non-streamed quota holds; streamed answers are never counted (BerriAI/litellm#41610) and its 429 carries no
    Retry-After."""
    g = ModelGateway()
    g.start()
    try:
        (decl,) = g.limit_rules()
        res = check_tokens(g.openai_url, g.api_key, parse_token_rule(decl))
    finally:
        g.stop()
    v = {str(p).split(": ", 1)[1].split(", model")[0]: (ok, str(m)) for p, ok, m, _ in res.parts}
    assert v["quota held, non-streaming"][0] is True
    assert v["quota held, streaming (usage from the stream)"][0] is False
    assert "never refused" in v["quota held, streaming (usage from the stream)"][1]
    assert v["refusals are 429 with Retry-After, and stay refused"] == (
        False, "model limited-a-chat: [429, 429] (Retry-After None)",
    )  # fmt: skip
    assert v["keys isolated"][0] is True


def test_an_unsupported_token_limit_is_a_row_saying_so() -> None:
    res = check_tokens("http://127.0.0.1:9/v1", "k", parse_token_rule({"kind": "tokens", "supported": False,
                                                                       "why": "counts requests"}))  # fmt: skip
    assert [(ok, m, why) for _, ok, m, why in res.parts] == [(None, "not supported by this target", "counts requests")]


@pytest.mark.parametrize(
    ("decl", "says"),
    [
        ({"tokens": 100, "window_s": 60}, "lacks models"),
        ({"tokens": "many", "window_s": 60, "models": ["a", "b"]}, "must be numbers"),
        ({"tokens": 0, "window_s": 60, "models": ["a", "b"]}, "out of range"),
        ({"tokens": 100, "window_s": 60, "models": ["a"]}, "at least two models or two credentials"),
        ({"tokens": 100, "window_s": 60, "models": "a"}, "must be lists"),
    ],
)
def test_a_token_rule_that_cannot_be_measured_is_a_clear_error(decl: dict[str, Any], says: str) -> None:
    with pytest.raises(ClauseproofError, match=says):
        parse_token_rule({"kind": "tokens", **decl}, "profile limit 2")
