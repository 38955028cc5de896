"""SX-EDAS-4 (limits by header, query parameter, client IP, consumer, token consumption) and SX-EDAS-5 (QPS limits
per consumer, route, model): each request-rate limit the gateway declares is offered open loop at 0.5x, 1x, 2x and
10x (``clauseproof.gateway.limits``); accepted rate, sliding windows, 429 + Retry-After, key isolation and, for
consumers, credentials sharing the consumer's limit.  The window of each step holds only the offered requests
(``step_s`` seconds); starting the gateway and making keys is outside it.  Token quotas are spent through the
OpenAI-compatible gateway, non-streamed and streamed (``clauseproof.gateway.tokens``); nothing there is timed.
A kind the gateway cannot enforce is a NOT SHOWN row naming why."""

from __future__ import annotations

from typing import Any

import pytest

from clauseproof.core.catalog import Catalog
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import msg
from clauseproof.gateway.limits import (
    CLAUSES,
    NOT_SUPPORTED,
    Plan,
    RuleResult,
    check_rule,
    declared,
    parse_rule,
    upstream_arrivals,
)
from clauseproof.gateway.tokens import check_tokens, parse_token_rule
from clauseproof.run.plugin import RUN_KEY
from clauseproof.targets.roles import HttpGateway, ModelGateway

Gateway = HttpGateway


@pytest.fixture(scope="module")
def measured(request: pytest.FixtureRequest) -> dict[str | int, Any]:
    """Each rule measured once per module (the consumer rule proves both clauses); header and query keys are
    named after the run (``cp-<run id>-<rule>-<step>``), so no earlier run's bucket is counted."""
    return {"run": request.config.stash[RUN_KEY].run_id}


def _results(
    gateway: Gateway, plan: Plan, clause: str, done: dict[str | int, Any], evidence: CaseEvidence
) -> list[RuleResult]:
    """The gateway's rules that prove ``clause``, measured (or taken from ``done``); the measurement's windows and
    drain waits counted as imposed by the case that measured them."""
    out = []
    for i, d in enumerate(gateway.limit_rules()):
        if d.get("kind") == "tokens":  # test_limits_by_token_consumption
            continue
        rule = parse_rule(d, f"the gateway's limit rule {i + 1}")
        if clause in CLAUSES[rule.kind]:
            if i not in done:
                counted = getattr(gateway, "limits_reach_upstream", False)
                arrivals = upstream_arrivals(gateway.direct_url) if counted else None
                done[i] = check_rule(gateway.base_url, rule, plan, f"{done['run']}-{i}", arrivals,
                                     "the profile does not say its limited routes lead to the harness's upstream "
                                     "([gateway] limits_reach_upstream = true with upstream_listen)")  # fmt: skip
                evidence.imposed(done[i].imposed_s, "rate steps offered open loop, and buckets drained between them")
            out.append(done[i])
    return out


def _record(evidence: CaseEvidence, clause: str, results: list[RuleResult], params: dict[str, Any]) -> None:
    if not results:
        evidence.not_shown(clause, statistic=msg("no_rate_limits"), why=msg("no_rate_limits_why"))
        return
    evidence.parameters(
        plan=f"{params}: the acceptance plan's (the tender states no tolerance)",
        steps={str(r.rule.label): r.steps for r in results},
        generator_lag_ms={str(r.rule.label): r.lag_ms for r in results},
        measured_again={str(r.rule.label): r.repeated_because for r in results if r.repeated_because},
    )
    for r in results:
        _parts(evidence, clause, r.parts)


def _parts(evidence: CaseEvidence, clause: str, parts: list[tuple[Any, bool | None, Any, Any]]) -> None:
    for part, ok, measured, why in parts:
        unsupported = measured == NOT_SUPPORTED
        evidence.part(
            clause,
            ok,
            statistic=msg("named_part", name=part, statistic=msg("not_supported") if unsupported else measured),
            why="" if ok else why,
            not_shown=msg("not_supported_why", why=why) if unsupported else why,
        )


@pytest.mark.clause("SX-EDAS-4")
def test_limits_by_header_query_ip_consumer_tokens(
    gateway: Gateway, evidence: CaseEvidence, clause_catalog: Catalog, measured: dict[str | int, Any]
) -> None:
    evidence.record.target = gateway.label
    params = clause_catalog["SX-EDAS-4"].params
    evidence.parameters(gateway=gateway.describe())
    _record(evidence, "SX-EDAS-4", _results(gateway, Plan.from_params(params), "SX-EDAS-4", measured, evidence), params)
    evidence.require_pass()


@pytest.mark.clause("SX-EDAS-5")
def test_qps_limits_per_consumer_route_model(
    gateway: Gateway, evidence: CaseEvidence, clause_catalog: Catalog, measured: dict[str | int, Any]
) -> None:
    evidence.record.target = gateway.label
    params = clause_catalog["SX-EDAS-5"].params
    evidence.parameters(gateway=gateway.describe())
    _record(evidence, "SX-EDAS-5", _results(gateway, Plan.from_params(params), "SX-EDAS-5", measured, evidence), params)
    evidence.require_pass()


@pytest.mark.clause("SX-EDAS-4")
def test_limits_by_token_consumption(model_gateway: ModelGateway, evidence: CaseEvidence) -> None:
    evidence.record.target = model_gateway.label
    decls = [d for d in model_gateway.limit_rules() if d.get("kind") == "tokens"]
    if not decls or not model_gateway.openai_url:
        evidence.not_shown("SX-EDAS-4", statistic=msg("no_token_limits"), why=msg("no_token_limits_why"))
        return
    evidence.parameters(gateway=model_gateway.describe())
    held: dict[tuple[str, float], bool] = {}  # (dimension, window) -> every part shown
    rules = []
    for i, d in enumerate(decls):
        rule = parse_token_rule(d, f"token limit {i + 1}")
        rules.append(rule)
        res = check_tokens(model_gateway.openai_url, model_gateway.api_key, rule)
        evidence.parameters(**{f"token_limit_{i + 1}": {"declared": declared(d), "runs": res.runs}})
        _parts(evidence, "SX-EDAS-4", res.parts)
        if rule.supported:
            dim = (rule.dimension, rule.window_s)
            held[dim] = held.get(dim, True) and all(ok for _, ok, _, _ in res.parts)
    # the clause asks for quotas "in several dimensions and several time granularities" (多维度、多时间粒度)
    dims = {rule.dimension: rule.dimension_text for rule in rules}
    for what, values in (("dimensions", {d for d, _ in held}), ("granularities", {f"{w:g} s" for _, w in held})):
        listed = [dims.get(v, v) for v in sorted(values)] or "-"
        evidence.part(
            "SX-EDAS-4",
            (all(held.values()) if len(values) >= 2 else None),
            statistic=msg(f"token_quotas_{what}", declared=listed),
            why=msg("token_quota_failed", which=listed),
            not_shown=msg(f"token_quotas_{what}_few", n=len(values), declared=listed),
        )
    evidence.require_pass()
