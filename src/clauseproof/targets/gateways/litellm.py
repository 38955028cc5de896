"""The embedded OpenAI-compatible model gateway (SX-EDAS-3 stand-in): LiteLLM's proxy (PyPI ``litellm[proxy]``, a
real, widely used gateway that speaks the OpenAI API to clients and each vendor's native API upstream), in its
own virtualenv (``.venv-litellm``, made by ``./run``: its pins would fight the harness's), configured by the
harness in front of two fake vendors with different native shapes (``clauseproof.workloads.model_vendors``: an
Anthropic-style Messages API and an Ollama-style chat API).

Models: ``vendor-a-chat`` → the Anthropic-style vendor, ``vendor-b-chat`` → the Ollama-style vendor; the same two
as ``limited-a-chat`` and ``limited-b-chat`` with a token quota each (SX-EDAS-4, :meth:`limit_rules`).  Clients
authenticate with a key made per start.  Positive controls: ``one_vendor=True`` routes every model to vendor A
(the cheapest fake of "many vendors"); ``passthrough=True`` replaces LiteLLM with nginx forwarding
``/v1/chat/completions`` to vendor A's native endpoint untranslated (an "OpenAI-compatible" URL that is not);
``buffered=True`` puts nginx in front, buffering and gzipping the streams and ignoring LiteLLM's
``X-Accel-Buffering: no`` (a stream replayed at its end).  Every process lives in a ``clauseproof-modelgw-*``
folder, registered with the reaper, stopped by :meth:`stop`, on Ctrl-C/SIGTERM and by ``clauseproof reap``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from clauseproof.core import masking
from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.host.folders import free_port, make_private_folder
from clauseproof.targets.host.processes import NGINX_HEAD, OwnProcesses, own_code_user, service_user, wait_port

ROOT = Path(__file__).resolve().parents[4]
VENDORS = "model_vendors"  # a module of clauseproof.workloads
LITELLM_VENV = Path(os.environ.get("CLAUSEPROOF_LITELLM_VENV", str(ROOT / ".venv-litellm")))
START_TIMEOUT_S = 60
MODELS = {"vendor-a-chat": "anthropic", "vendor-b-chat": "ollama"}
#: the token-limited models (SX-EDAS-4): the same two vendors, each model with a quota of ``TOKENS_PER_MINUTE``
#: (LiteLLM's per-deployment ``tpm``, counted per calendar minute from each answer's usage, enforced by its
#: usage-based router before each call).  LiteLLM 1.108.7 counts no streamed answer against it (its usage callback
#: finds no model name on a stream: BerriAI/litellm#41610) and sends no Retry-After: SX-EDAS-4 judges both.
LIMITED = {"limited-a-chat": "anthropic", "limited-b-chat": "ollama"}
TOKENS_PER_MINUTE = 480

PASSTHROUGH_NGINX = (
    NGINX_HEAD
    + """\
    server {{
        listen 127.0.0.1:{port};
        location = /v1/chat/completions {{ proxy_pass http://127.0.0.1:{vendors}/anthropic/v1/messages; }}
        location = /v1/models {{
            default_type application/json;
            return 200 '{{"object": "list", "data": [{{"id": "vendor-a-chat", "object": "model"}},
                        {{"id": "vendor-b-chat", "object": "model"}}]}}';
        }}
    }}
}}
"""
)

BUFFERING_NGINX = (
    NGINX_HEAD
    + """\
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{inner};
            proxy_http_version 1.1;
            proxy_buffering on;
            proxy_ignore_headers X-Accel-Buffering;
            gzip on; gzip_min_length 0; gzip_types text/event-stream application/json;
        }}
    }}
}}
"""
)


def litellm_command() -> Path:
    exe = LITELLM_VENV / "bin" / "litellm"
    if not exe.exists():
        raise ClauseproofError(
            f"LiteLLM's proxy is not installed at {exe}: the embedded OpenAI-compatible gateway is LiteLLM",
            fix="./run sets it up (a virtualenv .venv-litellm with litellm[proxy]); or set CLAUSEPROOF_LITELLM_VENV",
        )
    return exe


class ModelGateway(OwnProcesses):
    """LiteLLM (or a control) in front of the two fake vendors; ``base_url`` is its OpenAI ``/v1``."""

    label = "embedded-litellm-gateway"

    def __init__(
        self, *, one_vendor: bool = False, passthrough: bool = False, buffered: bool = False, vendors_port: int = 0
    ) -> None:
        """``vendors_port``: the fake vendors are someone else's to start, on that port (the vendor-profile
        self-test plays a vendor whose gateway calls the harness's fakes)."""
        self.one_vendor, self.passthrough, self.buffered = one_vendor, passthrough, buffered
        self.own_vendors = not vendors_port
        super().__init__()
        self.port, self.vendors_port = 0, vendors_port
        self.api_key = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def openai_url(self) -> str:
        return self.base_url

    @property
    def vendors_url(self) -> str:
        return f"http://127.0.0.1:{self.vendors_port}"

    def models(self) -> dict[str, str]:
        """Model name → the vendor that must answer it (what the gateway declares)."""
        return dict(MODELS)

    def limit_rules(self) -> list[dict[str, Any]]:
        """The token limit this gateway declares, in the form a profile's ``[[gateway.limits]]`` states it."""
        if self.passthrough:
            return [{"kind": "tokens", "supported": False, "why": "nginx forwarding untranslated counts no tokens"}]
        return [{"kind": "tokens", "tokens": TOKENS_PER_MINUTE, "window_s": 60, "aligned": True,
                 "models": list(LIMITED)}]  # fmt: skip

    def start(self) -> None:
        exe = None if self.passthrough else litellm_command()
        self.folder = make_private_folder("modelgw", service_user("www-data"))  # its nginx controls run as www-data
        try:
            if self.own_vendors:
                self.vendors_port = free_port()
                self._start_workload("model-vendors", VENDORS, self.vendors_port, "the fake model vendors")
            self.port = free_port()
            self.api_key = masking.new_secret(16, prefix="sk-cp-")
            if self.passthrough:
                conf = self.folder / "nginx.conf"
                conf.write_text(PASSTHROUGH_NGINX.format(folder=self.folder, port=self.port, vendors=self.vendors_port))
                nginx = shutil.which("nginx") or "/usr/sbin/nginx"
                ng = self._spawn("modelgw-nginx", [nginx, "-c", str(conf)], self.folder / "nginx.out", pdeathsig=True,
                                 user=service_user("www-data"))  # fmt: skip
                wait_port(self.port, ng, "nginx", self.folder / "error.log")
                return
            assert exe is not None
            # LiteLLM runs as the harness's own-code user, in a folder of its own (its home: it writes caches)
            home = make_private_folder("litellm")
            self.more_folders.append(home)
            config = home / "litellm.json"  # YAML is a superset of JSON
            config.write_text(json.dumps(self._config(), indent=1))
            config.chmod(0o600)
            own_code_user().give(config)
            own_code_user().give(home)
            lenv = {
                **masking.child_env({"HOME": str(home)}),
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price list from GitHub
                "LITELLM_TELEMETRY": "False",
                "LITELLM_MASTER_KEY": self.api_key,
                "LITELLM_LOG": "ERROR",
                "NO_DOCS": "True",
            }
            log = self.folder / "litellm.log"
            lp = self._spawn(
                "model-gateway",
                [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(self.port),
                 "--num_workers", "1"],
                log, lenv, pdeathsig=True, own_code=Path(exe),
            )  # fmt: skip
            self._wait_ready(lp, log)
            if self.buffered:  # the control: nginx in front, buffering and compressing the streams
                inner, self.port = self.port, free_port()
                conf = self.folder / "nginx.conf"
                conf.write_text(BUFFERING_NGINX.format(folder=self.folder, port=self.port, inner=inner))
                nginx = shutil.which("nginx") or "/usr/sbin/nginx"
                ng = self._spawn("modelgw-nginx", [nginx, "-c", str(conf)], self.folder / "nginx.out", pdeathsig=True,
                                 user=service_user("www-data"))  # fmt: skip
                wait_port(self.port, ng, "nginx", self.folder / "error.log")
        except BaseException:
            self.stop()
            raise

    def _config(self) -> dict[str, Any]:
        vendor_a = {"model": "anthropic/claude-3-5-haiku-20241022", "api_base": f"{self.vendors_url}/anthropic",
                    "api_key": "vendor-a-key"}  # fmt: skip
        vendor_b = {"model": "ollama_chat/llama3", "api_base": f"{self.vendors_url}/ollama"}
        limit = {"tpm": TOKENS_PER_MINUTE}
        return {
            "model_list": [
                {"model_name": "vendor-a-chat", "litellm_params": vendor_a},
                {"model_name": "vendor-b-chat", "litellm_params": vendor_a if self.one_vendor else vendor_b},
                {"model_name": "limited-a-chat", "litellm_params": {**vendor_a, **limit}},
                {"model_name": "limited-b-chat", "litellm_params": {**vendor_b, **limit}},
            ],
            "router_settings": {"routing_strategy": "usage-based-routing-v2"},
            "litellm_settings": {"drop_params": True, "telemetry": False, "num_retries": 0},
            "general_settings": {"master_key": self.api_key},
        }

    def _wait_ready(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        import httpx

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/health/liveliness", timeout=2).status_code == 200:
                    return
            time.sleep(0.25)
        tail = log.read_text(errors="replace").strip().splitlines()[-8:] if log.exists() else []
        raise ClauseproofError(
            f"LiteLLM did not answer on 127.0.0.1:{self.port} within {START_TIMEOUT_S} s"
            + (f" (it exited with {proc.returncode})" if proc.poll() is not None else "")
            + "; its log ends:\n    "
            + "\n    ".join(tail),
            checked=f"GET http://127.0.0.1:{self.port}/health/liveliness",
        )

    def describe(self) -> dict[str, Any]:
        if self.passthrough:
            gw = "nginx forwarding to vendor A untranslated (POSITIVE CONTROL)"
        else:
            out = subprocess.run([str(LITELLM_VENV / "bin" / "python"), "-c",
                                  "import importlib.metadata as m; print(m.version('litellm'))"],
                                 capture_output=True, text=True, check=False, timeout=30)  # fmt: skip
            gw = f"LiteLLM proxy {out.stdout.strip()}"
            gw += " (ONE VENDOR FOR EVERY MODEL: positive control)" if self.one_vendor else ""
            gw += " behind nginx BUFFERING AND COMPRESSING the streams (positive control)" if self.buffered else ""
        return {
            "label": self.label,
            "gateway": gw,
            "models": {
                m: f"{v} ({'Anthropic Messages' if v == 'anthropic' else 'Ollama chat'} shape)"
                for m, v in MODELS.items()
            },
            "vendors": "clauseproof.workloads.model_vendors (Starlette on uvicorn), the harness's own fakes",
        }
