"""A vendor's API gateway through a profile's ``[gateway]`` section (SX-EDAS-2…5).

```toml
[gateway]
base_url = "https://gw.example:8443"            # the limits' paths are relative to it
# SX-EDAS-2: the vendor routes stream_base_url to the harness's streaming upstream, started at upstream_listen
stream_base_url = "https://gw.example:8443/cp-stream"
upstream_listen = "192.0.2.50:18100"
# SX-EDAS-3: the vendor routes each model to the harness's fake vendor of that shape, started at
# fake_vendors_listen (Anthropic-style at /anthropic, Ollama-style at /ollama)
openai_base_url = "https://gw.example:8443/v1"
api_key_env = "GW_API_KEY"
models = { "qwen-max" = "anthropic", "glm-4" = "ollama" }
fake_vendors_listen = "192.0.2.50:18101"

[[gateway.limits]]                               # as many as configured (clauseproof.gateway.limits)
kind = "consumer"
path = "/api/echo"
rate = 50
burst = 5
header = "Authorization"
format = "Bearer {}"
consumers = { alice = ["GW_ALICE_KEY_1", "GW_ALICE_KEY_2"], bob = ["GW_BOB_KEY"] }   # environment variables

[[gateway.limits]]                               # QPS per model: the model is read from the JSON body
kind = "model"
path = "/v1/chat/completions"
models = ["qwen-max", "glm-4"]
rate = 20
burst = 5

[[gateway.limits]]                               # a token quota (clauseproof.gateway.tokens), via openai_base_url
kind = "tokens"
tokens = 2000                                    # total tokens per window and key
window_s = 60
aligned = true                                   # windows start on the clock's minute
models = ["qwen-max", "glm-4"]                   # each its own quota (or credentials = ["ENV_1", "ENV_2"])
```

Credentials come from the environment, never the profile.  The harness's upstream and fake vendors listen where
the profile says (the vendor's gateway must reach them); what the profile does not give is NOT SHOWN, naming the
keys that would show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from clauseproof.core.errors import ClauseproofError
from clauseproof.core.masking import from_env
from clauseproof.gateway.limits import parse_rule
from clauseproof.gateway.tokens import parse_token_rule
from clauseproof.targets.host.folders import make_private_folder
from clauseproof.targets.host.processes import OwnProcesses
from clauseproof.targets.sections import Section

SHAPES = ("anthropic", "ollama")
KEYS: dict[str, type | tuple[type, ...]] = {
    "base_url": str,
    "limits": list,
    "stream_base_url": str,
    "upstream_listen": str,
    "openai_base_url": str,
    "api_key_env": str,
    "models": dict,
    "fake_vendors_listen": str,
    "limits_reach_upstream": bool,
}


@dataclass(frozen=True)
class GatewaySection:
    base_url: str = ""
    limits: tuple[dict[str, Any], ...] = ()
    stream_base_url: str = ""
    upstream_listen: str = ""
    openai_base_url: str = ""
    api_key_env: str = ""
    models: dict[str, str] = field(default_factory=dict)
    fake_vendors_listen: str = ""
    #: the limited routes lead to the harness's upstream at upstream_listen (its /limit/ routes): arrivals counted
    limits_reach_upstream: bool = False


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(value)
    return host, int(port)


def parse(body: dict[str, Any], err: Any) -> GatewaySection | None:
    if not body:
        return None
    sec = "gateway"
    for key in ("base_url", "stream_base_url", "openai_base_url"):
        if key in body and urlsplit(str(body[key])).scheme not in ("http", "https"):
            raise err(sec, key, f"{body[key]!r} is not an http(s) URL", "e.g. https://gw.example:8443")
    for key in ("upstream_listen", "fake_vendors_listen"):
        if key in body:
            try:
                _listen(str(body[key]))
            except ValueError:
                raise err(sec, key, f"{body[key]!r} is not host:port", "e.g. 192.0.2.50:18100") from None
    pairs = (("stream_base_url", "upstream_listen"), ("openai_base_url", "fake_vendors_listen"),
             ("openai_base_url", "api_key_env"), ("openai_base_url", "models"))  # fmt: skip
    for a, b in pairs:
        if a in body and b not in body:
            raise err(sec, b, f"{a} is given without {b}", f"give {b} too (docs/targets.md, [gateway])")
    models = {str(k): str(v) for k, v in dict(body.get("models", {})).items()}
    bad = {m: v for m, v in models.items() if v not in SHAPES}
    if bad:
        raise err(sec, "models", f"{bad}: each model names the fake vendor shape it routes to",
                  f"one of {', '.join(SHAPES)}")  # fmt: skip
    limits = []
    for i, d in enumerate(body.get("limits", [])):
        if not isinstance(d, dict):
            raise err(sec, "limits", f"limit {i + 1} is not a table", "write [[gateway.limits]] blocks")
        tokens = d.get("kind") == "tokens"
        if tokens and not (body.get("openai_base_url") and body.get("api_key_env")):
            raise err(sec, "openai_base_url", "a token limit is given without openai_base_url and api_key_env",
                      "token quotas are spent through the OpenAI-compatible endpoint")  # fmt: skip
        if not tokens and d.get("kind") not in ("route",) and "base_url" not in body:
            raise err(sec, "base_url", "limits are given without base_url", "their paths are relative to base_url")
        probe = dict(d)
        if "consumers" in d:  # environment variable names: checked for shape here, read at start
            if not isinstance(d["consumers"], dict) or not all(isinstance(v, list) for v in d["consumers"].values()):
                raise err(sec, "limits", f"[[gateway.limits]] {i + 1}: consumers {d['consumers']!r} is not a table of "
                          "lists", 'consumers = { alice = ["ENV_1", "ENV_2"], bob = ["ENV_3"] }')  # fmt: skip
            probe["consumers"] = {n: [f"<{v}>" for v in vs] for n, vs in dict(d["consumers"]).items()}
        try:
            (parse_token_rule if tokens else parse_rule)(probe, f"[[gateway.limits]] {i + 1}")
        except ClauseproofError as exc:
            raise err(sec, "limits", exc.what, exc.fix) from None
        limits.append(dict(d))
    return GatewaySection(
        str(body.get("base_url", "")), tuple(limits), str(body.get("stream_base_url", "")),
        str(body.get("upstream_listen", "")), str(body.get("openai_base_url", "")), str(body.get("api_key_env", "")),
        models, str(body.get("fake_vendors_listen", "")), bool(body.get("limits_reach_upstream", False)),
    )  # fmt: skip


#: ``[gateway]`` of a profile, registered in pyproject.toml (entry point group ``clauseproof.sections``).
SECTION = Section("gateway", KEYS, parse)


def _env(name: str, what: str) -> str:
    value = from_env(name, what)
    if not value:
        raise ClauseproofError(
            f"{what}: the environment variable {name} is empty",
            fix=f"export {name}=... before the run (credentials never go in the profile)",
        )
    return value


class VendorGateway(OwnProcesses):
    """The gateway of a profile: its limits, and where the harness's stream upstream and fake vendors listen."""

    def __init__(self, label: str, section: GatewaySection) -> None:
        self.label, self.section = label, section
        super().__init__()
        self.api_key = ""
        self._rules: list[dict[str, Any]] = []

    # the interface of the embedded gateways (targets/gateways/nginx.py, targets/gateways/litellm.py)
    @property
    def base_url(self) -> str:
        return self.section.base_url

    @property
    def stream_url(self) -> str:
        return self.section.stream_base_url

    @property
    def direct_url(self) -> str:
        return f"http://{self.section.upstream_listen}"

    @property
    def openai_url(self) -> str:
        return self.section.openai_base_url

    @property
    def vendors_url(self) -> str:
        return f"http://{self.section.fake_vendors_listen}"

    def models(self) -> dict[str, str]:
        return dict(self.section.models)

    def limit_rules(self) -> list[dict[str, Any]]:
        return list(self._rules)

    @property
    def limits_reach_upstream(self) -> bool:
        return self.section.limits_reach_upstream and bool(self.section.upstream_listen)

    def start(self) -> None:
        s = self.section
        for i, d in enumerate(s.limits):
            rule = dict(d)
            if "consumers" in d:
                rule["consumers"] = {n: [_env(v, f"[[gateway.limits]] {i + 1} consumer {n}") for v in vs]
                                     for n, vs in dict(d["consumers"]).items()}  # fmt: skip
                rule["consumer_envs"] = {n: [f"${v}" for v in vs] for n, vs in dict(d["consumers"]).items()}
            if "credentials" in d:
                rule["credentials"] = [_env(v, f"[[gateway.limits]] {i + 1} credential") for v in d["credentials"]]
                rule["credential_envs"] = [f"${v}" for v in d["credentials"]]
            self._rules.append(rule)
        if s.openai_base_url:
            self.api_key = _env(s.api_key_env, "[gateway] api_key_env")
        self.folder = make_private_folder("gateway")
        try:
            if s.upstream_listen:
                host, port = _listen(s.upstream_listen)
                self._start_workload("gateway-upstream", "stream_upstream", port, "the streaming upstream", host)
            if s.fake_vendors_listen:
                host, port = _listen(s.fake_vendors_listen)
                self._start_workload("model-vendors", "model_vendors", port, "the fake model vendors", host)
        except BaseException:
            self.stop()
            raise

    def describe(self) -> dict[str, Any]:
        s = self.section
        return {
            "label": self.label,
            "gateway": f"the vendor's gateway at {s.base_url or s.openai_base_url or s.stream_base_url}",
            "limits_declared": len(s.limits),
            "stream_route": s.stream_base_url
            and f"{s.stream_base_url} → the harness's upstream at {s.upstream_listen}",
            "models": {
                m: f"→ the harness's {v}-style fake vendor at {s.fake_vendors_listen}" for m, v in s.models.items()
            },
        }
