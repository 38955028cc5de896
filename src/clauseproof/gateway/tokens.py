"""SX-EDAS-4: limits on token consumption — a quota of tokens per window and key, counted from what each answer
actually consumed, streaming answers included.

A token limit is declared as a rule (the embedded model gateway's :meth:`limit_rules`, or a profile's
``[[gateway.limits]]`` with ``kind = "tokens"``): ``tokens`` per ``window_s`` seconds, whether the windows are
``aligned`` to the clock (LiteLLM counts per calendar minute) or start with the first use, and its keys: the
``models`` (at least two, each its own quota) or ``credentials`` (API keys, each its own quota, all on the first
model).  Tokens are the answer's ``usage.total_tokens`` (prompt + completion), as the gateway reports them.

The check sends requests one after another (closed loop: the clause is about the quota, not a rate) on one key
until it is refused, then once more, and judges:

- **quota held, non-streaming**: the tokens of the answers accepted before the first refusal lie within one
  answer of the quota — not more than ``tokens`` plus one answer's ("at most one response beyond the quota"), not
  less than ``tokens`` minus one answer's (refused early is no more a limit *by tokens* than late);
- **quota held, streaming** — the second key, streamed with ``stream_options.include_usage``, the usage read from
  the stream's last chunk: a gateway that counts only non-streamed usage lets it run far past its quota;
- **refusals are 429 with Retry-After, and stay refused** (the request after the first refusal is refused too);
- **keys isolated**: right after the first key is refused, the second key is accepted.

The cheapest cheats and what catches them: a request-count limit dressed as a token limit (the two keys' requests
differ ~8x in size — small non-streamed, large streamed — so a request count that fits one key's quota misses the
other's by far); a quota configured higher than declared; streamed answers not counted; one quota for every key.
Bounds: a run stops at its first refusal, at ``3 x tokens`` spent, at ``MAX_REQUESTS`` requests or after
``MAX_RUN_S``; with aligned windows a run starts early enough in a window to finish inside it (else it waits for
the next one), and the window each request fell in is recorded.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from clauseproof.core.errors import ClauseproofError
from clauseproof.core.i18n import Text, joined, msg
from clauseproof.gateway.limits import NOT_SUPPORTED, retry_after_ok

MAX_REQUESTS = 300
MAX_RUN_S = 60.0
TIMEOUT_S = 30.0
#: the time a run may take; an aligned window with less left is waited out
RUN_BUDGET_S = 15.0
#: the two request sizes (words of prompt): small non-streamed, large streamed
SMALL_PROMPT = "Say hi."
LARGE_PROMPT = " ".join(f"word{i}" for i in range(40))

Part = tuple[str | Text, bool | None, str | Text, str | Text]


@dataclass(frozen=True)
class TokenRule:
    tokens: int = 0
    window_s: float = 60.0
    aligned: bool = False
    path: str = "/chat/completions"
    models: tuple[str, ...] = ()
    credentials: tuple[str, ...] = ()
    supported: bool = True
    why: str = ""

    @property
    def dimension(self) -> str:
        return "credential" if self.credentials else "model"

    @property
    def dimension_text(self) -> Text:
        return msg("dim_credential" if self.credentials else "limit_by_model")

    def keys(self, api_key: str) -> list[tuple[Text, str, str]]:
        """(name, model, API key) of each key the rule's quota is per."""
        if self.credentials:
            return [(msg("credential_n", n=i + 1), self.models[0], c) for i, c in enumerate(self.credentials)]
        return [(msg("model_named", model=m), m, api_key) for m in self.models]


def parse_token_rule(d: dict[str, Any], where: str = "a token limit") -> TokenRule:
    if d.get("supported", True) is False:
        return TokenRule(supported=False, why=str(d.get("why") or "the gateway declares it does not support this"))
    missing = [k for k in ("tokens", "window_s", "models") if k not in d]
    if missing:
        raise ClauseproofError(
            f"{where} (tokens) lacks {', '.join(missing)}",
            fix="a token limit states tokens (per window), window_s, models and optionally credentials "
            "(environment variable names) and aligned = true for windows that start on the clock",
        )
    try:
        tokens, window = int(d["tokens"]), float(d["window_s"])
    except (TypeError, ValueError):
        raise ClauseproofError(f"{where}: tokens and window_s must be numbers", fix="e.g. tokens = 480") from None
    if not (1 <= tokens <= 1_000_000 and 1 <= window <= 86_400):
        raise ClauseproofError(f"{where}: tokens {tokens} or window_s {window:g} out of range",
                               fix="1 ≤ tokens ≤ 1000000, 1 ≤ window_s ≤ 86400")  # fmt: skip
    models = d["models"]
    creds = d.get("credentials", [])
    if not isinstance(models, list) or not models or not isinstance(creds, list):
        raise ClauseproofError(f"{where}: models and credentials must be lists", fix='models = ["glm-4", "qwen-max"]')
    if len(creds) < 2 and len(models) < 2:
        raise ClauseproofError(f"{where} (tokens) needs at least two models or two credentials",
                               fix="two keys are needed to show each has its own quota")  # fmt: skip
    return TokenRule(tokens, window, bool(d.get("aligned", False)), str(d.get("path", "/chat/completions")),
                     tuple(map(str, models)), tuple(map(str, creds)))  # fmt: skip


@dataclass
class Call:
    at: float  # wall-clock seconds
    status: int
    tokens: int | None  # usage.total_tokens of an accepted answer (None: the answer carried no usage)
    retry_after: str | None = None
    error: str = ""


def call(client: httpx.Client, url: str, model: str, key: str, prompt: str, stream: bool) -> Call:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    at = time.time()
    try:
        with client.stream("POST", url, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
            if r.status_code != 200:
                r.read()
                return Call(at, r.status_code, None, r.headers.get("retry-after"))
            if not stream:
                usage = json.loads(r.read()).get("usage") or {}
                return Call(at, 200, usage.get("total_tokens"))
            total = None
            for line in r.iter_lines():
                if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]"):
                    chunk = json.loads(line[5:])
                    if chunk.get("usage"):
                        total = chunk["usage"].get("total_tokens")
            return Call(at, 200, total)
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        return Call(at, -1, None, error=f"{type(exc).__name__}: {str(exc)[:160]}")


@dataclass
class Run:
    key: Text
    stream: bool
    calls: list[Call] = field(default_factory=list)
    waited_s: float = 0.0
    window: int | None = None  # the aligned window's number (time // window_s)

    @property
    def accepted(self) -> list[Call]:
        first = self.first_refusal
        return [c for c in self.calls[: first if first is not None else len(self.calls)] if c.status == 200]

    @property
    def first_refusal(self) -> int | None:
        return next((i for i, c in enumerate(self.calls) if c.status != 200), None)

    @property
    def spent(self) -> int:
        return sum(c.tokens or 0 for c in self.accepted)


def _wait_for_window(rule: TokenRule) -> float:
    """With clock-aligned windows, wait for the next window when this one has less than a run's budget left."""
    if not rule.aligned:
        return 0.0
    left = rule.window_s - time.time() % rule.window_s
    if left >= RUN_BUDGET_S:
        return 0.0
    time.sleep(left + 0.2)
    return left + 0.2


def _exhaust(client: httpx.Client, url: str, rule: TokenRule, key: tuple[Text, str, str], stream: bool,
             before: list[Call]) -> Run:  # fmt: skip
    """Requests on ``key`` until refused, then one more; ``before``: this key's earlier calls, counted when they
    fell in the same window."""
    name, model, api_key = key
    run = Run(name, stream)
    run.waited_s = _wait_for_window(rule)
    start = time.time()
    if rule.aligned:
        run.window = int(start // rule.window_s)
        run.calls = [c for c in before if int(c.at // rule.window_s) == run.window]
    else:
        run.calls = list(before)
    prompt = LARGE_PROMPT if stream else SMALL_PROMPT
    while len(run.calls) < MAX_REQUESTS and time.time() - start < MAX_RUN_S and run.spent <= 3 * rule.tokens:
        c = call(client, url, model, api_key, prompt, stream)
        run.calls.append(c)
        if c.status != 200:
            run.calls.append(call(client, url, model, api_key, prompt, stream))  # stays refused?
            break
    return run


@dataclass
class TokenResult:
    rule: TokenRule
    parts: list[Part] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)


def check_tokens(base_url: str, api_key: str, rule: TokenRule) -> TokenResult:
    """Every part of one token rule, measured through the OpenAI-style ``base_url`` (``…/v1``)."""
    res = TokenResult(rule)
    label = msg("token_quota_label", tokens=rule.tokens, window=f"{rule.window_s:g}", dimension=rule.dimension_text)
    if not rule.supported:
        res.parts.append((msg("token_limits"), None, NOT_SUPPORTED, rule.why))
        return res
    url = base_url.rstrip("/") + "/" + rule.path.lstrip("/")
    a, b = rule.keys(api_key)[:2]
    with httpx.Client(timeout=TIMEOUT_S) as client:
        first = _exhaust(client, url, rule, a, False, [])
        # isolation: right after the first key is refused, the second is accepted
        probe = call(client, url, b[1], b[2], LARGE_PROMPT, True)
        second = _exhaust(client, url, rule, b, True, [probe])
    res.runs = [_describe(r, rule) for r in (first, second)]
    res.parts = [_quota_part(label, rule, first), _quota_part(label, rule, second), _refusals(label, first, second)]
    refused_a = first.first_refusal is not None
    res.parts.append((
        msg("keys_isolated", rule=label),
        probe.status == 200 if refused_a else None,
        msg("right_after_refused", first=first.key, second=b[0], status=probe.status),
        msg("refused_too", second=b[0], status=probe.status) if refused_a
        else msg("never_refused", first=first.key),
    ))  # fmt: skip
    return res


def _describe(run: Run, rule: TokenRule) -> dict[str, Any]:
    return {
        "key": run.key, "streamed": run.stream, "waited_for_window_s": round(run.waited_s, 2), "window": run.window,
        "calls": [{"at": round(c.at, 3), "status": c.status, "tokens": c.tokens, "retry_after": c.retry_after,
                   **({"error": c.error} if c.error else {})} for c in run.calls],
        "spent_before_first_refusal": run.spent, "quota": rule.tokens,
    }  # fmt: skip


def _quota_part(label: Text, rule: TokenRule, run: Run) -> Part:
    name = msg("quota_held_streaming" if run.stream else "quota_held", label=label, which=run.key)
    errors = [c for c in run.calls if c.status < 0]  # any answer other than 200 is a refusal, judged below
    if errors:
        return (name, False, msg("requests_unanswered", n=len(errors), error=errors[0].error),
                msg("requests_failed_not_refused"))  # fmt: skip
    acc = run.accepted
    if any(c.tokens is None for c in acc):
        n = sum(c.tokens is None for c in acc)
        return (name, None, msg("answers_without_usage", n=n, of=len(acc)), msg("answers_without_usage_why"))
    biggest = max((c.tokens or 0 for c in acc), default=0)
    lo, hi = rule.tokens - biggest, rule.tokens + biggest
    counted = dict(n=len(acc), spent=run.spent, biggest=biggest, quota=rule.tokens, lo=max(lo, 0), hi=hi)
    if run.first_refusal is None:
        times = f"{run.spent / rule.tokens:.1f}"
        why = msg("tokens_never_refused_streamed" if run.stream else "tokens_never_refused", spent=run.spent, x=times)
        return (name, False, msg("tokens_accepted_never_refused", **counted), why)
    ok = lo <= run.spent <= hi
    why = msg("tokens_beyond_quota" if run.spent > hi else "tokens_short_of_quota", spent=run.spent)
    return (name, ok, msg("tokens_accepted_then_refused", **counted), why)


def _refusals(label: Text, *runs: Run) -> Part:
    refused = [(r, r.calls[i:]) for r in runs if (i := r.first_refusal) is not None]
    name = msg("refusals_stay", rule=label)
    if not refused:
        return (name, False, msg("nothing_refused_short"), msg("nothing_refused"))
    bad: dict[str, Text] = {}  # each kind of wrong answer once per key
    for r, after in refused:
        for c in after:
            if c.status != 429 or not retry_after_ok(c.retry_after):
                said = msg("key_status" if c.status != 429 else "key_429_no_retry_after", which=r.key, status=c.status)
                bad.setdefault(str(said), said)
    shown = joined([msg("key_statuses", which=r.key, statuses=str([c.status for c in after]),
                        retry=repr(after[0].retry_after)) for r, after in refused])  # fmt: skip
    return (name, not bad, shown, msg("not_so", what=joined(list(bad.values()))))
