"""A reference OpenAI-style endpoint with a token quota per model, for the self-tests of SX-EDAS-4's token check
(``clauseproof.gateway.tokens``): done right it shows the check can PASS; each flag is one cheat the check must
judge FAIL.  It answers itself (``"ref says: <the prompt's first six words>"``, usage = words), counts each
accepted answer's total tokens against its model's quota (streams at their end), and refuses a model whose quota
is spent with 429 + ``Retry-After``.  Served by uvicorn in a thread on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Limiter:
    quota: int
    window_s: float = 600.0
    count_streams: bool = True  # cheat when False: streamed answers are not counted
    per_request: int = 0  # cheat when > 0: a request count instead of tokens
    shared: bool = False  # cheat: one quota for every model
    refuse_status: int = 429  # cheat when 503: refused without 429/Retry-After

    def __post_init__(self) -> None:
        self.used: dict[str, int] = defaultdict(int)
        self.started = time.monotonic()

    def key(self, model: str) -> str:
        return "all" if self.shared else model

    def full(self, model: str) -> bool:
        if time.monotonic() - self.started >= self.window_s:
            self.used.clear()
            self.started = time.monotonic()
        return self.used[self.key(model)] >= (self.per_request or self.quota)

    def charge(self, model: str, tokens: int) -> None:
        self.used[self.key(model)] += 1 if self.per_request else tokens

    def app(self) -> Starlette:
        async def chat(request: Request) -> Response:
            body = await request.json()
            model = str(body.get("model"))
            if self.full(model):
                left = max(1, round(self.window_s - (time.monotonic() - self.started)))
                headers = {"Retry-After": str(left)} if self.refuse_status == 429 else {}
                return JSONResponse({"error": {"message": "token quota spent"}}, self.refuse_status, headers=headers)
            prompt = str(body["messages"][-1]["content"]).split()
            words = ["ref", "says:", *prompt[:6]]
            usage = {"prompt_tokens": len(prompt), "completion_tokens": len(words),
                     "total_tokens": len(prompt) + len(words)}  # fmt: skip
            if not body.get("stream"):
                self.charge(model, usage["total_tokens"])
                choice = {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": " ".join(words)},
                }
                return JSONResponse({"object": "chat.completion", "model": model, "usage": usage, "choices": [choice]})

            async def events() -> AsyncIterator[bytes]:
                for w in words:
                    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": w}}]}
                    yield f"data: {json.dumps(chunk)}\n\n".encode()
                    await asyncio.sleep(0.002)
                yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode()
                yield b"data: [DONE]\n\n"
                if self.count_streams:
                    self.charge(model, usage["total_tokens"])

            return StreamingResponse(events(), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@contextlib.contextmanager
def serving(limiter: Limiter) -> Iterator[str]:
    """The limiter on a free loopback port for the block; yields its ``/v1`` base URL."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(limiter.app(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
