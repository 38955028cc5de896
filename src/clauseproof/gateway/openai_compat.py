"""SX-EDAS-3: an OpenAI-compatible API over several model vendors, driven by the official ``openai`` client.

For every model the gateway declares (name → the vendor that must answer it), through the SDK:

- **listed**: ``models.list()`` names it;
- **chat completion**: the answer parses in the SDK, its text is the vendor's (each fake vendor answers
  ``"<vendor> says: <the prompt's words>"``, so a wrong route shows) with ``finish_reason`` ``stop`` and usage equal
  to the vendor's own counts, and the vendor's request counter moved;
- **streaming**: the first delta carries the role, the content deltas join to the vendor's text and arrive as the
  vendor sends them (spread over at least half the vendor's own send time: not buffered), the last choice chunk
  has ``finish_reason``, a usage chunk follows when ``stream_options.include_usage`` asks, and the raw stream ends
  with ``data: [DONE]``;
- **errors**: the vendor's native 429 and 400 reach the client as the SDK's ``RateLimitError`` and
  ``BadRequestError`` with an OpenAI error body (``{"error": {"message", ...}}``); an unknown model is a 4xx with
  an OpenAI error body.

The cheapest cheats and what catches them: one vendor behind every model name (the text and the vendors'
counters name the vendor that answered); a URL that forwards the vendor's native answer untranslated (it does
not parse into choices); a stream buffered and replayed (the deltas' spread).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from clauseproof.core.i18n import Text, joined, msg
from clauseproof.targets.host.processes import service_headers

VENDOR_DELAY_S = 0.05  # clauseproof.workloads.model_vendors's pause between streamed words
TIMEOUT_S = 20.0


def expected_text(vendor: str, prompt: str) -> str:
    return " ".join([vendor, "says:", *prompt.split()[:6]])


Part = tuple[str | Text, bool | None, str | Text, str | Text]


@dataclass
class Result:
    parts: list[Part] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def _vendor_counts(vendors_url: str | None) -> dict[str, int]:
    if not vendors_url:
        return {}
    return dict(httpx.get(f"{vendors_url}/stats", timeout=5, headers=service_headers()).raise_for_status().json())


def _error_shape(exc: Any) -> bool:
    """The raw answer is an OpenAI error: ``{"error": {"message": "...", ...}}``."""
    try:
        body = exc.response.json()
    except (AttributeError, ValueError):
        return False
    return (
        isinstance(body, dict) and isinstance(body.get("error"), dict) and isinstance(body["error"].get("message"), str)
    )


def check(base_url: str, api_key: str, models: dict[str, str], vendors_url: str | None = None) -> Result:
    """Every part of SX-EDAS-3 for every model in ``models`` (name → vendor), through ``base_url`` (``.../v1``)."""
    import openai

    res = Result()
    client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=TIMEOUT_S, max_retries=0)
    try:
        listed = sorted(m.id for m in client.models.list().data)
        missing = [m for m in models if m not in listed]
        listed_said = f"models.list(): {listed}"
        res.parts.append((msg("models_listed"), not missing, listed_said, msg("not_listed", missing=str(missing))))
    except (openai.OpenAIError, ValueError) as exc:
        res.parts.append((msg("models_listed"), False, msg("models_list_failed"), f"{type(exc).__name__}: {exc}"))
    for model, vendor in models.items():
        res.parts.extend(_chat(client, model, vendor, vendors_url, res.data))
        res.parts.extend(_stream(client, base_url, api_key, model, vendor, res.data))
        res.parts.extend(_errors(client, model))
    try:
        client.chat.completions.create(model="cp-no-such-model", messages=[{"role": "user", "content": "hi"}])
        res.parts.append((msg("unknown_model_refused"), False, msg("answered"), msg("undeclared_model_answered")))
    except openai.APIStatusError as exc:
        ok = 400 <= exc.status_code < 500 and _error_shape(exc)
        res.parts.append((msg("unknown_model_refused"), ok, f"{type(exc).__name__} {exc.status_code}",
                          msg("status_body", status=exc.status_code, body=str(exc.body)[:120])))  # fmt: skip
    except openai.OpenAIError as exc:
        res.parts.append((msg("unknown_model_refused"), False, type(exc).__name__, str(exc)[:200]))
    return res


def _chat(client: Any, model: str, vendor: str, vendors_url: str | None, data: dict[str, Any]) -> list[Part]:
    import openai

    prompt = f"route check {model} {time.monotonic_ns()}"
    want = expected_text(vendor, prompt)
    name = msg("chat_parses", model=model, vendor=vendor)
    before = _vendor_counts(vendors_url)
    try:
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
        text = r.choices[0].message.content if r.choices else None
        finish = r.choices[0].finish_reason if r.choices else None
        usage = (r.usage.prompt_tokens, r.usage.completion_tokens) if r.usage else None
    except (openai.OpenAIError, AttributeError, TypeError, IndexError) as exc:
        return [(name, False, msg("sdk_unreadable_answer"), f"{type(exc).__name__}: {str(exc)[:200]}")]
    after = _vendor_counts(vendors_url)
    moved = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    routed = not vendors_url or (list(moved) and all(k.startswith(vendor) for k in moved))
    want_usage = (len(prompt.split()), len(want.split()))
    data.setdefault("chat", {})[model] = {"text": text, "finish_reason": finish, "usage": usage, "vendors_hit": moved}
    ok = text == want and finish == "stop" and usage == want_usage and bool(routed)
    why: list[Text | str] = []
    if text != want:
        why.append(msg("chat_text_differs", text=repr(text), want=repr(want)))
    if finish != "stop":
        why.append(f"finish_reason {finish!r}")
    if usage != want_usage:
        why.append(msg("usage_differs", usage=str(usage), want=str(want_usage)))
    if not routed:
        why.append(msg("vendors_hit", moved=str(moved) if moved else msg("nobody")))
    said = msg("chat_answer", text=repr(text), finish=repr(finish), usage=str(usage), moved=str(moved))
    return [(name, ok, said, joined(why))]


def _stream(client: Any, base_url: str, api_key: str, model: str, vendor: str, data: dict[str, Any]) -> list[Part]:
    import openai

    prompt = f"stream check {model} {time.monotonic_ns()}"
    want = expected_text(vendor, prompt)
    name = msg("streaming_parts", model=model)
    arrivals: list[float] = []
    pieces: list[str] = []
    roles: list[str | None] = []
    finishes: list[str] = []
    usage = None
    t0 = time.monotonic()
    try:
        for ch in client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}], stream=True,
            stream_options={"include_usage": True},
        ):  # fmt: skip
            for c in ch.choices or []:
                if c.delta and c.delta.role:
                    roles.append(c.delta.role)
                if c.delta and c.delta.content:
                    pieces.append(c.delta.content)
                    arrivals.append(time.monotonic() - t0)
                if c.finish_reason:
                    finishes.append(c.finish_reason)
            if ch.usage:
                usage = (ch.usage.prompt_tokens, ch.usage.completion_tokens)
    except (openai.OpenAIError, AttributeError, TypeError, ValueError) as exc:
        return [(name, False, msg("sdk_unreadable_stream"), f"{type(exc).__name__}: {str(exc)[:200]}")]
    raw_last = ""
    with (
        httpx.Client(timeout=TIMEOUT_S) as h,
        h.stream("POST", f"{base_url}/chat/completions", headers={"Authorization": f"Bearer {api_key}"},
                 json={"model": model, "messages": [{"role": "user", "content": "raw"}], "stream": True}) as r,
    ):  # fmt: skip
        lines = [ln for ln in r.iter_lines() if ln.strip()]
        raw_last = lines[-1] if lines else ""
    text = "".join(pieces)
    vendor_spread = (len(want.split()) - 1) * VENDOR_DELAY_S
    spread = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    want_usage = (len(prompt.split()), len(want.split()))
    checks: list[tuple[Text | str, bool]] = [
        (msg("stream_role_first"), bool(roles) and roles[0] == "assistant"),
        (msg("stream_joins", want=repr(want), text=repr(text)), text == want),
        (msg("stream_spread", n=len(pieces), spread=f"{spread:.2f}", vendor=f"{vendor_spread:.2f}"),
         len(pieces) >= 3 and spread >= vendor_spread / 2),
        (f"finish_reason {finishes[-1] if finishes else None!r}", finishes[-1:] == ["stop"]),
        (msg("usage_counted", usage=str(usage), want=str(want_usage)), usage == want_usage),
        (msg("stream_ends_with", last=repr(raw_last[:40])), raw_last.strip() == "data: [DONE]"),
    ]  # fmt: skip
    data.setdefault("stream", {})[model] = {"deltas": pieces, "arrivals_s": [round(a, 3) for a in arrivals],
                                            "usage": usage, "finish": finishes, "raw_last": raw_last}  # fmt: skip
    bad = [k for k, ok in checks if not ok]
    return [(name, not bad, joined([k for k, _ in checks]), msg("not_so", what=joined(bad)))]


def _errors(client: Any, model: str) -> list[Part]:
    import openai

    out: list[Part] = []
    for code, kind in ((429, openai.RateLimitError), (400, openai.BadRequestError)):
        name = msg("native_error_passed", model=model, code=code, kind=kind.__name__)
        try:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"please fail {code}"}])
            out.append((name, False, msg("answered"), msg("error_not_passed", code=code)))
        except kind as exc:
            ok = exc.status_code == code and _error_shape(exc)
            out.append((name, ok, f"{type(exc).__name__} {exc.status_code}: {str(exc.body)[:100]}",
                        msg("status_body", status=exc.status_code, body=json.dumps(exc.body)[:150])))  # fmt: skip
        except openai.OpenAIError as exc:
            out.append((name, False, type(exc).__name__, f"{type(exc).__name__}: {str(exc)[:200]}"))
    return out
