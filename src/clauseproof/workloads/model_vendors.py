"""Two fake model vendors with different native APIs, for SX-EDAS-3 (an OpenAI-compatible gateway over several
vendors): the harness owns both, so it knows what each answered and can check what reached the client.

- ``/anthropic/v1/messages``: Anthropic's Messages shape — ``content`` blocks, ``stop_reason``, ``usage``
  ``input_tokens``/``output_tokens``; streaming as named SSE events (``message_start``, ``content_block_delta``
  with ``text_delta``, ``message_delta`` with the stop reason and output tokens, ``message_stop``); errors as
  ``{"type": "error", "error": {"type", "message"}}``.
- ``/ollama/api/chat`` (and ``/ollama/api/tags``): Ollama's shape — ``message``, ``done``/``done_reason``,
  ``prompt_eval_count``/``eval_count``; streaming as NDJSON lines; errors as ``{"error": "..."}``.

Every answer's text is ``"<vendor> says: <words>"`` with the words derived from the last user message, so
routing and content are checkable; a message containing ``please fail 429`` (or ``400``) makes the vendor
answer that native error.  Token counts are the word counts.  Streams send a word every ``DELAY_S`` so that a
gateway that buffers is seen.  ``GET /stats`` counts requests per vendor and model.  Loopback only.
Run: ``python clauseproof.workloads.model_vendors --port P``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from clauseproof.workloads.serve import serve

DELAY_S = 0.05
SEEN: Counter[str] = Counter()


def words_for(vendor: str, messages: list[dict[str, Any]]) -> tuple[list[str], int]:
    """The answer's words and the prompt's token count (words), from the last user message."""

    def text(m: dict[str, Any]) -> str:
        content = m.get("content", "")
        if isinstance(content, list):  # content blocks
            return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
        return str(content)

    last = next((m for m in reversed(messages) if m.get("role") == "user"), {"content": ""})
    prompt = sum(len(text(m).split()) for m in messages)
    echo = text(last).split()[:6]
    return [f"{vendor}", "says:", *echo], max(prompt, 1)


def _fail(content: str) -> int:
    for code in (429, 400):
        if f"please fail {code}" in content:
            return code
    return 0


async def anthropic(request: Request) -> Response:
    body = await request.json()
    model = str(body.get("model", ""))
    SEEN[f"anthropic {model}"] += 1
    msgs = body.get("messages", [])
    code = _fail(json.dumps(msgs))
    if code:
        kind = "rate_limit_error" if code == 429 else "invalid_request_error"
        return JSONResponse({"type": "error", "error": {"type": kind, "message": f"anthropic refuses: {code}"}}, code)
    words, prompt = words_for("anthropic", msgs)
    mid = f"msg_{time.monotonic_ns()}"
    if not body.get("stream"):
        return JSONResponse({
            "id": mid, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": " ".join(words)}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": len(words)},
        })  # fmt: skip

    async def events() -> AsyncIterator[bytes]:
        def ev(name: str, data: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

        yield ev("message_start", {"type": "message_start", "message": {
            "id": mid, "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": {"input_tokens": prompt, "output_tokens": 1}}})  # fmt: skip
        yield ev("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}})  # fmt: skip
        for i, w in enumerate(words):
            await asyncio.sleep(DELAY_S)
            delta = {"type": "text_delta", "text": (" " if i else "") + w}
            yield ev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        yield ev("content_block_stop", {"type": "content_block_stop", "index": 0})
        yield ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                   "usage": {"output_tokens": len(words)}})  # fmt: skip
        yield ev("message_stop", {"type": "message_stop"})

    return StreamingResponse(events(), media_type="text/event-stream")


async def ollama(request: Request) -> Response:
    body = await request.json()
    model = str(body.get("model", ""))
    SEEN[f"ollama {model}"] += 1
    msgs = body.get("messages", [])
    code = _fail(json.dumps(msgs))
    if code:
        return JSONResponse({"error": f"ollama refuses: {code}"}, code)
    words, prompt = words_for("ollama", msgs)
    now = "2026-11-27T00:00:00Z"
    final = {
        "model": model, "created_at": now, "message": {"role": "assistant", "content": ""}, "done": True,
        "done_reason": "stop", "total_duration": 1, "prompt_eval_count": prompt, "eval_count": len(words),
    }  # fmt: skip
    if body.get("stream") is False:
        return JSONResponse({**final, "message": {"role": "assistant", "content": " ".join(words)}})

    async def lines() -> AsyncIterator[bytes]:
        for i, w in enumerate(words):
            await asyncio.sleep(DELAY_S)
            message = {"role": "assistant", "content": (" " if i else "") + w}
            chunk = {"model": model, "created_at": now, "message": message, "done": False}
            yield (json.dumps(chunk) + "\n").encode()
        yield (json.dumps(final) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def ollama_tags(request: Request) -> Response:
    return JSONResponse({"models": [{"name": "llama3:latest", "model": "llama3:latest"}]})


async def stats(request: Request) -> Response:
    if request.method == "POST":
        SEEN.clear()
    return JSONResponse(dict(SEEN))


app = Starlette(
    routes=[
        Route("/anthropic/v1/messages", anthropic, methods=["POST"]),
        Route("/ollama/api/chat", ollama, methods=["POST"]),
        Route("/ollama/api/tags", ollama_tags),
        Route("/stats", stats, methods=["GET", "POST"]),
    ]
)


def main() -> None:
    serve(app, __doc__)


if __name__ == "__main__":
    main()
