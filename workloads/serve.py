"""How the harness's own HTTP workloads (``stream_upstream.py``, ``model_vendors.py``) start: a port and an address
from the command line, tied to the run's life (``CLAUSEPROOF_PARENT_PID``: never outlive the run, whatever kills
it), then uvicorn."""

from __future__ import annotations

import argparse
import os
from typing import Any


def serve(app: Any, description: str | None, **uvicorn_options: Any) -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default loopback)")
    a = p.parse_args()
    parent = os.environ.get("CLAUSEPROOF_PARENT_PID")
    if parent:
        from clauseproof.core.reaper import die_with_parent

        die_with_parent(int(parent))
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning", **uvicorn_options)
