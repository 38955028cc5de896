"""SX-EDAS-4/5: rate limits through a gateway, measured with open-loop load at multiples of each declared limit.

A limit is declared as a rule (the embedded gateway's :meth:`limit_rules`, or a profile's ``[[gateway.limits]]``):
its ``kind`` (what keys the bucket: ``header``, ``query``, ``ip``, ``consumer``, ``route``, ``model`` — the model
named in an OpenAI-style JSON body), ``rate`` (requests/s), ``burst`` (requests that may pass at once) and what a
client varies to be another key.  A ``tokens`` rule is a token quota, measured by :mod:`clauseproof.gateway.tokens`.
For each rule, each multiple of the plan (0.5x, 1x, 2x, 10x) is offered open loop on a key of its own for
``step_s`` seconds (:mod:`clauseproof.gateway.openloop`), and the parts are judged:

- **accepted rate**: accepted/s within the plan's tolerance of ``min(multiple, 1) x rate`` (a burst's worth of
  requests above it allowed once per step);
- **every sliding window**: the accepted requests of any ``window_s`` window (by the time each left the client)
  at most ``rate x window_s + burst``, plus one for the request a window's edge may shift;
- **refusals**: every refused request answered 429 with a ``Retry-After`` (seconds or an HTTP date), nothing
  else (no 5xx, no reset);
- **keys isolated**: one key at the highest multiple and another at the lowest at the same time: the quiet key
  keeps its whole rate;
- **a consumer's credentials share its limit** (consumer rules with a consumer of two credentials): both at 1x
  together get one limit, not two;
- **refused requests never reach the upstream**: where the limited routes lead to the harness's own upstream, the
  requests that arrived there are counted and must be the accepted ones (a request with no answer may or may not
  have arrived); a gateway that answers 429 but forwards the request anyway FAILs here, one that answers 2xx
  without asking the upstream too.

The cheapest cheats and what catches them: a limit configured higher than declared (the accepted rate at 2x/10x
is too high); one bucket for every key (the quiet key is refused); a limit that answers 503 or resets the
connection (the refusals part); a limit keyed on a value the client can vary per request, e.g. a consumer's
credential instead of the consumer (the shared-credentials part).  A generator that fell behind its schedule
makes the rate parts NOT SHOWN, saying so: it did not offer the rate it claims.  A rule whose kind the gateway
cannot enforce (``supported = false``) is a NOT SHOWN row naming why.
"""

from __future__ import annotations

import json
import string
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from clauseproof.core.errors import ClauseproofError
from clauseproof.core.i18n import Text, msg
from clauseproof.gateway.openloop import NO_ANSWER, LoadResult, Sample, Stream, run
from clauseproof.targets.host.processes import service_headers

#: the measured value of a part the target declares it does not support (the suite says it in the report language)
NOT_SUPPORTED = "not supported by this target"
KINDS = ("header", "query", "ip", "consumer", "route", "model", "tokens")
#: which clause a rule's kind proves: SX-EDAS-4 (header, query, IP, consumer), SX-EDAS-5 (QPS per
#: consumer, route, model)
CLAUSES = {
    "header": ("SX-EDAS-4",),
    "query": ("SX-EDAS-4",),
    "ip": ("SX-EDAS-4",),
    "consumer": ("SX-EDAS-4", "SX-EDAS-5"),
    "route": ("SX-EDAS-5",),
    "model": ("SX-EDAS-5",),
}


@dataclass(frozen=True)
class Key:
    """One bucket a client can address: the path, header, query and client address that make it."""

    name: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    params: tuple[tuple[str, str], ...] = ()
    source: str | None = None
    method: str = "GET"
    body: bytes | None = None

    def stream(self, name: str, rate: float) -> Stream:
        return Stream(name, rate, self.path, self.headers, self.params, self.source, self.method, self.body)


def chat_body(model: str) -> bytes:
    """An OpenAI-style chat request naming ``model`` — after the messages, so a gateway that reads the model from
    the body's first bytes instead of parsing it does not find it there."""
    return json.dumps({"messages": [{"role": "user", "content": "Say hello."}], "model": model}).encode()


@dataclass(frozen=True)
class Rule:
    kind: str
    rate: float = 0.0
    burst: int = 1
    path: str = ""
    header: str = ""
    param: str = ""
    fmt: str = "{}"
    sources: tuple[str, ...] = ()
    consumers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    routes: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    supported: bool = True
    why: str = ""

    @property
    def label(self) -> Text:
        """What the rule limits by, in the report's words."""
        return msg(f"limit_by_{self.kind}", header=self.header, param=self.param)

    def keys(self, tag: str) -> list[Key] | None:
        """The distinct keys a client can use, or None where any number can be made (a fresh one per step)."""
        if self.kind == "ip":
            return [Key(f"ip {s}", self.path, source=s) for s in self.sources]
        if self.kind == "consumer":
            return [
                Key(f"consumer {name}", self.path, ((self.header, self.fmt.format(creds[0])),))
                for name, creds in self.consumers
            ]
        if self.kind == "route":
            return [Key(f"route {r}", r) for r in self.routes]
        if self.kind == "model":
            json_ = (("Content-Type", "application/json"),)
            return [Key(f"model {m}", self.path, json_, method="POST", body=chat_body(m)) for m in self.models]
        return None

    def fresh(self, tag: str, i: int) -> Key:
        value = f"cp-{tag}-{i}"
        if self.kind == "header":
            return Key(f"{self.header}: {value}", self.path, headers=((self.header, value),))
        return Key(f"{self.param}={value}", self.path, params=((self.param, value),))


def parse_rule(d: dict[str, Any], where: str = "a limit rule") -> Rule:
    """A rule from its declaration (a profile's ``[[gateway.limits]]`` table or the embedded gateway's own),
    refusing one that cannot be measured with a message naming what is missing."""
    kind = d.get("kind")
    if kind not in KINDS:
        raise ClauseproofError(
            f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}", fix="set kind to what keys the limit"
        )
    if kind == "tokens":
        raise ClauseproofError(
            f"{where}: a token-consumption limit is measured by clauseproof.gateway.tokens, not as a request rate",
            fix="pass it to clauseproof.gateway.tokens.parse_token_rule",
        )
    if d.get("supported", True) is False:
        return Rule(kind, supported=False, why=str(d.get("why") or "the gateway declares it does not support this"))
    need = {"header": ["path", "header"], "query": ["path", "param"], "ip": ["path", "sources"],
            "consumer": ["path", "header", "consumers"], "route": ["routes"],
            "model": ["path", "models"]}[kind]  # fmt: skip
    missing = [k for k in ["rate", "burst", *need] if k not in d]
    if missing:
        raise ClauseproofError(
            f"{where} ({kind}) lacks {', '.join(missing)}",
            fix=f"a {kind} limit states rate (requests/s), burst and {', '.join(need)}",
        )
    try:
        rate, burst = float(d["rate"]), int(d["burst"])
    except (TypeError, ValueError):
        raise ClauseproofError(f"{where}: rate and burst must be numbers", fix="e.g. rate = 50, burst = 5") from None
    if not (0 < rate <= 10_000 and 1 <= burst <= 100_000):
        raise ClauseproofError(f"{where}: rate {rate:g}/s or burst {burst} is out of range", fix="0 < rate ≤ 10000")
    fmt = d.get("format", "{}")
    try:
        fields = [(n, spec, conv) for _, n, spec, conv in string.Formatter().parse(str(fmt)) if n is not None]
    except ValueError:
        fields = []
    if not isinstance(fmt, str) or fields != [("", "", None)]:
        raise ClauseproofError(f"{where}: format {fmt!r} must hold exactly one bare {{}} where the credential goes",
                               fix='e.g. format = "Bearer {}"')  # fmt: skip
    if not isinstance(d.get("consumers", {}), dict):
        raise ClauseproofError(f"{where}: consumers must be a table", fix="consumers = { alice = [...], bob = [...] }")
    consumers = tuple((str(n), tuple(str(c) for c in creds)) for n, creds in dict(d.get("consumers", {})).items())
    many = {"ip": "sources", "route": "routes", "model": "models"}.get(kind)
    if many and (not isinstance(d[many], list) or len(d[many]) < 2):
        raise ClauseproofError(f"{where} ({kind}) needs at least two {many} (a list)",
                               fix="two keys are needed to show they are isolated")  # fmt: skip
    if kind == "consumer" and (len(consumers) < 2 or any(not c for _, c in consumers)):
        raise ClauseproofError(f"{where}: needs at least two consumers, each with a credential",
                               fix="consumers = { alice = [...], bob = [...] }")  # fmt: skip
    return Rule(
        kind, rate, burst, str(d.get("path", "")), str(d.get("header", "")), str(d.get("param", "")),
        str(d.get("format", "{}")), tuple(map(str, d.get("sources", ()))), consumers,
        tuple(map(str, d.get("routes", ()))), tuple(map(str, d.get("models", ()))),
    )  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """The acceptance plan's parameters (the catalog's ``params`` of SX-EDAS-4/5)."""

    multiples: tuple[float, ...] = (0.5, 1, 2, 10)
    step_s: float = 2.0
    tolerance: float = 0.1
    window_s: float = 1.0
    max_lag_ms: float = 10.0

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> Plan:
        return cls(
            tuple(float(m) for m in p["multiples"]), float(p["step_s"]), float(p["tolerance"]),
            float(p["window_s"]), float(p["max_lag_ms"]),
        )  # fmt: skip


def retry_after_ok(v: str | None) -> bool:
    if v is None:
        return False
    if v.strip().isdigit():
        return True
    try:
        parsedate_to_datetime(v)
    except (TypeError, ValueError, IndexError):
        return False
    return True


@dataclass
class StepStats:
    key: str
    multiple: float
    offered: int
    accepted: int
    refused: int
    other: dict[str, int]
    bad_retry_after: int
    max_window: int

    def rate(self, step_s: float) -> float:
        return self.accepted / step_s


def _max_window(samples: list[Sample], window_s: float) -> int:
    times = sorted(s.sent for s in samples if 200 <= s.status < 300)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def stats(samples: list[Sample], key: str, multiple: float, window_s: float) -> StepStats:
    statuses = Counter(s.status for s in samples)
    other = {
        ("no answer" if st < 0 else str(st)): n for st, n in statuses.items() if not (200 <= st < 300 or st == 429)
    }
    return StepStats(
        key, multiple, len(samples), sum(n for st, n in statuses.items() if 200 <= st < 300), statuses.get(429, 0),
        other, sum(1 for s in samples if s.status == 429 and not retry_after_ok(s.retry_after)),
        _max_window(samples, window_s),
    )  # fmt: skip


#: (part, shown / disproven / not shown, what was measured, why)
Part = tuple[str | Text, bool | None, str | Text, str | Text]


@dataclass
class RuleResult:
    rule: Rule
    parts: list[Part] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    lag_ms: list[dict[str, float]] = field(default_factory=list)
    #: Why an earlier attempt was not judged (the generator lagged behind its own schedule): it was measured again.
    repeated_because: str = ""
    #: seconds the clause's measurement imposed: each step's window of offered load, and the waits for a reused
    #: key's bucket to drain (every attempt's) — the run's cost counts them apart from the harness's overhead
    imposed_s: float = 0.0


class _Keys:
    """Hands out keys, a fresh one per step where the rule allows, else waiting until a reused key's bucket has
    drained (its burst at its rate, at least ``pause_s``)."""

    def __init__(self, rule: Rule, tag: str, pause_s: float) -> None:
        self.rule, self.tag, self.pause_s = rule, tag, pause_s
        self.fixed = rule.keys(tag)
        self.n = 0
        self.last_used: dict[str, float] = {}
        self.waited_s = 0.0

    def take(self, count: int) -> list[Key]:
        if self.fixed is None:
            keys = [self.rule.fresh(self.tag, self.n + i) for i in range(count)]
        else:
            keys = [self.fixed[(self.n + i) % len(self.fixed)] for i in range(count)]
        self.n += count
        wait = max((self.last_used.get(k.name, -1e9) + self.pause_s - time.monotonic() for k in keys), default=0.0)
        if wait > 0:
            time.sleep(wait)
            self.waited_s += wait
        return keys

    def used(self, keys: list[Key]) -> None:
        for k in keys:
            self.last_used[k.name] = time.monotonic()


#: How often a rule is measured when the generator lags behind its own schedule (the load offered was not the load
#: planned: no verdict can come of it); every attempt's lag is in the evidence.
ATTEMPTS = 2


def check_rule(
    base_url: str, rule: Rule, plan: Plan, tag: str, arrivals: Callable[[], int] | None = None, why_no_count: str = ""
) -> RuleResult:
    """Every part of one rule, measured through ``base_url``; ``arrivals`` counts the requests that reached the
    upstream's limited routes so far (None: the routes lead elsewhere, ``why_no_count`` says where). A measurement
    whose load generator lagged (a hiccup of the client machine) is taken again once, with fresh keys; the parts of
    the last attempt are judged, and still NOT SHOWN if it lagged too."""
    lags: list[dict[str, float]] = []
    reasons: list[str] = []
    imposed = 0.0
    for attempt in range(ATTEMPTS):
        res, why = _check_once(base_url, rule, plan, tag if attempt == 0 else f"{tag}-a{attempt + 1}", arrivals,
                               why_no_count)  # fmt: skip
        res.lag_ms = lags + res.lag_ms
        res.repeated_because = "; ".join(reasons)
        imposed += res.imposed_s
        res.imposed_s = imposed
        if not why:
            break
        lags, reasons = res.lag_ms, [*reasons, f"attempt {attempt + 1}: {why}"]
    return res


def _check_once(
    base_url: str, rule: Rule, plan: Plan, tag: str, arrivals: Callable[[], int] | None, why_no_count: str
) -> tuple[RuleResult, str]:
    res = RuleResult(rule)
    if not rule.supported:
        res.parts.append((msg("rule_limits", rule=rule.label), None, NOT_SUPPORTED, rule.why))
        return res, ""
    arrived_before = arrivals() if arrivals is not None else None
    keys = _Keys(rule, tag, max(1.0, rule.burst / rule.rate + 0.5))
    every: list[Sample] = []

    def offer(streams: list[Stream], ks: list[Key]) -> LoadResult:
        result = run(base_url, streams, plan.step_s)
        keys.used(ks)
        res.lag_ms.append(result.lag_ms())
        every.extend(result.samples)
        return result

    steps: list[StepStats] = []
    for m in plan.multiples:
        (k,) = keys.take(1)
        r = offer([k.stream(k.name, m * rule.rate)], [k])
        steps.append(stats(r.samples, k.name, m, plan.window_s))
    hi, lo = max(plan.multiples), min(plan.multiples)
    loud, quiet = keys.take(2)
    r = offer([loud.stream("loud", hi * rule.rate), quiet.stream("quiet", lo * rule.rate)], [loud, quiet])
    iso = [stats(r.of("loud"), loud.name, hi, plan.window_s), stats(r.of("quiet"), quiet.name, lo, plan.window_s)]
    shared: StepStats | None = None
    two = next(((n, c) for n, c in rule.consumers if len(c) >= 2), None) if rule.kind == "consumer" else None
    if two:
        k1, k2 = (Key(f"consumer {two[0]} credential {i + 1}", rule.path, ((rule.header, rule.fmt.format(c)),))
                  for i, c in enumerate(two[1][:2]))  # fmt: skip
        wait = keys.last_used.get(f"consumer {two[0]}", -1e9) + keys.pause_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)
            keys.waited_s += wait
        r = offer([k1.stream("c1", rule.rate), k2.stream("c2", rule.rate)], [k1, k2])
        shared = stats(r.samples, f"consumer {two[0]}, two credentials", 2.0, plan.window_s)
    res.steps = [s.__dict__ for s in [*steps, *iso, *([shared] if shared else [])]]
    res.imposed_s = plan.step_s * len(res.lag_ms) + keys.waited_s
    # the generator's lag over all the rule's requests (one late request among 25 is no lag of the offered rate)
    overall = LoadResult(plan.step_s * len(res.lag_ms), every)
    res.lag_ms.append({"all": True, **overall.lag_ms()})
    why = overall.lagging(plan.max_lag_ms)
    res.parts = _judge(rule, plan, steps, iso, shared, [why] if why else [])
    res.parts.append(_forwarded(rule, every, arrived_before, arrivals, why_no_count))
    return res, why


def upstream_arrivals(direct_url: str) -> Callable[[], int]:
    """How many requests have reached the harness's upstream's limited routes
    (``clauseproof.workloads.stream_upstream``)."""

    def count() -> int:
        import httpx

        answer = httpx.get(f"{direct_url}/stats", timeout=5.0, headers=service_headers())
        return int(answer.raise_for_status().json()["limit_arrivals"])

    return count


def _forwarded(
    rule: Rule, every: list[Sample], before: int | None, arrivals: Callable[[], int] | None, why_no_count: str
) -> Part:
    """The requests that reached the upstream against the accepted ones: a refusal that was forwarded anyway is no
    limit at all (the upstream carries the load the limit is there to keep off it)."""
    part = msg("refused_not_forwarded", rule=rule.label)
    if arrivals is None or before is None:
        return (part, None, msg("arrivals_not_counted"), why_no_count or msg("upstream_not_ours"))
    time.sleep(0.2)  # the last forwarded requests land
    arrived = arrivals() - before
    accepted = sum(1 for s in every if 200 <= s.status < 300)
    refused = sum(1 for s in every if s.status == 429)
    unanswered = sum(1 for s in every if s.status == NO_ANSWER)
    ok = accepted <= arrived <= accepted + unanswered
    return (
        part,
        ok,
        msg("arrivals_how", arrived=arrived, accepted=accepted, refused=refused, unanswered=unanswered),
        msg("refused_forwarded", n=arrived - accepted)
        if arrived > accepted
        else msg("accepted_not_forwarded", n=accepted - arrived),
    )


def _expected(rule: Rule, multiple: float) -> float:
    return min(multiple, 1.0) * rule.rate


def _rate_ok(rule: Rule, plan: Plan, s: StepStats) -> bool:
    exp = _expected(rule, s.multiple)
    return exp * (1 - plan.tolerance) <= s.rate(plan.step_s) <= exp * (1 + plan.tolerance) + rule.burst / plan.step_s


def _judge(
    rule: Rule, plan: Plan, steps: list[StepStats], iso: list[StepStats], shared: StepStats | None, lagging: list[str]
) -> list[Part]:
    lab, tol = rule.label, f"±{plan.tolerance * 100:g} %"
    lag_why = lagging[0] if lagging else ""
    parts: list[Part] = []
    rates = [
        msg(
            "step_rate",
            multiple=f"{s.multiple:g}",
            got=f"{s.rate(plan.step_s):.1f}",
            offered=f"{s.offered / plan.step_s:.0f}",
            expected=f"{_expected(rule, s.multiple):g}",
        )
        for s in steps
    ]
    off = [f"{s.multiple:g}x: {s.rate(plan.step_s):.1f}/s" for s in steps if not _rate_ok(rule, plan, s)]
    parts.append((
        msg("accepted_rate", rule=lab, multiples=", ".join(f"{m:g}x" for m in plan.multiples), rate=f"{rule.rate:g}"),
        None if lag_why else not off,
        msg("accepted_rate_how", rates=rates, tol=tol, burst=rule.burst, step=f"{plan.step_s:g}"),
        msg("outside_tolerance", off=", ".join(off)),
    ))  # fmt: skip
    bound = rule.rate * plan.window_s + rule.burst + 1
    worst = max(steps + iso, key=lambda s: s.max_window)
    window = f"{plan.window_s:g}"
    parts.append((
        msg("window_within", rule=lab, window=window),
        None if lag_why else worst.max_window <= bound,
        msg("window_how", window=window, most=worst.max_window, multiple=f"{worst.multiple:g}", which=worst.key,
            allowed=f"{rule.rate * plan.window_s:g}", burst=rule.burst),
        msg("window_exceeded", most=worst.max_window, window=window, bound=f"{bound:g}"),
    ))  # fmt: skip
    every = steps + iso + ([shared] if shared else [])
    refused = sum(s.refused for s in every)
    bad = sum(s.bad_retry_after for s in every)
    other: Counter[str] = Counter()
    for s in every:
        other.update(s.other)
    parts.append((
        msg("refusals_429", rule=lab),
        refused > 0 and not bad and not other,
        msg("refusals_how", refused=refused, bad=bad, other=str(dict(other) or "-")),
        msg("other_answers", other=str(dict(other))) if other else
        msg("bad_retry_after", n=bad) if bad else msg("nothing_refused"),
    ))  # fmt: skip
    loud, quiet = iso
    iso_ok = _rate_ok(rule, plan, quiet) and _rate_ok(rule, plan, loud)
    parts.append((
        msg("keys_isolated", rule=lab),
        None if lag_why else iso_ok,
        msg("keys_isolated_how", loud=loud.key, loud_x=f"{loud.multiple:g}", loud_rate=f"{loud.rate(plan.step_s):.1f}",
            quiet=quiet.key, quiet_x=f"{quiet.multiple:g}", accepted=quiet.accepted, offered=quiet.offered,
            quiet_rate=f"{quiet.rate(plan.step_s):.1f}", expected=f"{_expected(rule, quiet.multiple):g}", tol=tol),
        msg("keys_share_bucket", rate=f"{quiet.rate(plan.step_s):.1f}")
        if not _rate_ok(rule, plan, quiet) else msg("loud_key_got", rate=f"{loud.rate(plan.step_s):.1f}"),
    ))  # fmt: skip
    if rule.kind == "consumer":
        if shared is None:
            parts.append((msg("credentials_share", rule=lab), None, msg("no_two_credentials"), ""))
        else:
            ok = _rate_ok(rule, plan, shared)
            parts.append((
                msg("credentials_share", rule=lab),
                None if lag_why else ok,
                msg("credentials_share_how", keys=shared.key, rate=f"{shared.rate(plan.step_s):.1f}",
                    expected=f"{rule.rate:g}", tol=tol),
                msg("per_credential", rate=f"{shared.rate(plan.step_s):.1f}"),
            ))  # fmt: skip
    if lag_why:
        parts = [(p, ok, m, w) if ok is not None or "refusals" in p else (p, None, m, lag_why) for p, ok, m, w in parts]
    return parts


def declared(rule: dict[str, Any]) -> dict[str, Any]:
    """A limit rule as the evidence records it: credentials by the environment variables they came from (a
    vendor's), or as *** (the embedded gateway's, made per start), never by value."""
    out = {k: v for k, v in rule.items() if k not in ("consumer_envs", "credential_envs")}
    if "consumers" in rule:
        out["consumers"] = rule.get("consumer_envs") or {n: ["***"] * len(v) for n, v in rule["consumers"].items()}
    if "credentials" in rule:
        out["credentials"] = rule.get("credential_envs") or ["***"] * len(rule["credentials"])
    return out
