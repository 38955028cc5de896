"""A vendor's gateway through a profile's ``[gateway]`` section: the profile is checked when loaded (bad URLs,
missing pairs, bad limit rules, unknown shapes are clear errors naming the key); a run against a gateway the
test configures like a vendor would — nginx routing a stream path to the harness's upstream at
``upstream_listen`` and limiting a header — gives SX-EDAS-2 and the header limit's parts, and NOT SHOWN rows
for what the profile does not give; credentials come from the environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clauseproof.core.errors import ClauseproofError
from clauseproof.gateway.vendor import GatewaySection, VendorGateway
from clauseproof.targets.gateways.litellm import ModelGateway
from clauseproof.targets.host.folders import free_port
from clauseproof.targets.single.external import load_profile

ROOT = Path(__file__).resolve().parents[2]
TARGET = '[target]\ndialect = "postgresql"\nhost = "127.0.0.1"\nport = 5432\nuser = "postgres"\ndatabase = "postgres"\n'

VENDOR_NGINX = """\
worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections 512; }}
http {{ access_log off; client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;
  uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;
  upstream up {{ server 127.0.0.1:{u}; keepalive 8; }}
  proxy_http_version 1.1; proxy_set_header Connection "";
  limit_req_zone $http_x_tenant zone=t:1m rate=40r/s; limit_req_status 429;
  server {{ listen 127.0.0.1:{g};
    location /cp-stream/ {{ proxy_pass http://up/; proxy_buffering off; }}
    location /api/ {{ limit_req zone=t burst=3 nodelay; error_page 429 = @l; proxy_pass http://up/limit/; }}
    location @l {{ add_header Retry-After 2 always; return 429; }}
  }}
}}
"""


def _section(tmp_path: Path, body: str) -> GatewaySection:
    path = tmp_path / "vendor.toml"
    path.write_text(TARGET + body)
    section = load_profile(path).section("gateway")
    assert isinstance(section, GatewaySection)
    return section


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('[gateway]\nbase_url = "gw.example"\n', "is not an http(s) URL"),
        ('[gateway]\nstream_base_url = "http://gw/s"\n', "stream_base_url is given without upstream_listen"),
        ('[gateway]\nopenai_base_url = "http://gw/v1"\nfake_vendors_listen = "h:1"\napi_key_env = "K"\n'
         'models = { m = "gemini" }\n', "each model names the fake vendor shape"),
        ('[gateway]\nupstream_listen = "nohost"\n', "is not host:port"),
        ('[gateway]\nbase_url = "http://gw"\n[[gateway.limits]]\nkind = "header"\npath = "/x"\nrate = 5\n'
         'burst = 1\n', "lacks header"),
        ('[[gateway.limits]]\nkind = "query"\npath = "/x"\nrate = 5\nburst = 1\nparam = "k"\n',
         "limits are given without base_url"),
        ('[[gateway.limits]]\nkind = "tokens"\ntokens = 100\nwindow_s = 60\nmodels = ["a", "b"]\n',
         "a token limit is given without openai_base_url and api_key_env"),
        ('openai_base_url = "http://gw/v1"\napi_key_env = "K"\nfake_vendors_listen = "h:1"\n'
         'models = { m = "ollama" }\n[[gateway.limits]]\nkind = "tokens"\ntokens = 100\n'
         'models = ["a", "b"]\n', "lacks window_s"),
    ],
)  # fmt: skip
def test_a_bad_gateway_section_is_a_clear_error(tmp_path: Path, body: str, says: str) -> None:
    with pytest.raises(ClauseproofError, match=says.replace("(", r"\(").replace(")", r"\)")) as exc:
        _section(tmp_path, body if body.startswith("[gateway]") else "[gateway]\n" + body)
    assert "vendor.toml" in str(exc.value)


def test_consumer_credentials_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    section = _section(
        tmp_path,
        '[gateway]\nbase_url = "http://127.0.0.1:9"\n[[gateway.limits]]\nkind = "consumer"\npath = "/x"\nrate = 5\n'
        'burst = 1\nheader = "Authorization"\nformat = "Bearer {}"\n'
        'consumers = { alice = ["CP_T_ALICE"], bob = ["CP_T_BOB"] }\n',
    )
    monkeypatch.setenv("CP_T_ALICE", "a-secret")
    monkeypatch.delenv("CP_T_BOB", raising=False)
    with pytest.raises(ClauseproofError, match="CP_T_BOB, which is not set"):
        VendorGateway("v", section).start()
    monkeypatch.setenv("CP_T_BOB", "b-secret")
    g = VendorGateway("v", section)
    g.start()
    try:
        assert g.limit_rules()[0]["consumers"] == {"alice": ["a-secret"], "bob": ["b-secret"]}
    finally:
        g.stop()


@pytest.fixture
def vendor_nginx(tmp_path: Path) -> Iterator[tuple[int, int]]:
    u, g = free_port(), free_port()
    d = tmp_path / "nginx"
    d.mkdir()
    (d / "nginx.conf").write_text(VENDOR_NGINX.format(d=d, u=u, g=g))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([nginx, "-c", str(d / "nginx.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        yield u, g
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow  # a whole suite run through a profile (~20 s); ./run slow
def test_a_vendor_gateway_run_through_its_profile(tmp_path: Path, vendor_nginx: tuple[int, int]) -> None:
    u, g = vendor_nginx
    profile = tmp_path / "vendor.toml"
    profile.write_text(
        TARGET + f'[gateway]\nbase_url = "http://127.0.0.1:{g}"\nstream_base_url = "http://127.0.0.1:{g}/cp-stream"\n'
        f'upstream_listen = "127.0.0.1:{u}"\n[[gateway.limits]]\nkind = "header"\npath = "/api/echo"\nrate = 40\n'
        'burst = 4\nheader = "X-Tenant"\n'
    )
    results = tmp_path / "results"
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "suites/gateway", f"--cp-target={profile}", f"--cp-results={results}",
         "--cp-formats=html", "-p", "no:randomly", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "CLAUSEPROOF_PARENT_PID": ""},
    )  # fmt: skip
    doc = json.loads(next(results.glob("*/evidence.json")).read_text())
    rows = [(row["id"], row.get("statistic", ""), row["verdict"]) for row in doc["clause_rows"]
            if row["id"] in ("SX-EDAS-2", "SX-EDAS-3", "SX-EDAS-4", "SX-EDAS-5")]  # fmt: skip
    edas2 = [v for c, _, v in rows if c == "SX-EDAS-2"]
    assert edas2 == ["PASS"] * 6, (rows, r.stdout[-2000:])
    header = [v for c, st, v in rows if c == "SX-EDAS-4" and not st.startswith("token")]
    # the fifth part, refusals never forwarded, needs arrivals counted at the harness's upstream: this profile does
    # not say its limited route leads there (limits_reach_upstream), so it is a row that says so, not an absent one
    assert header == ["PASS"] * 4 + ["NOT SHOWN"], rows
    assert any("refused requests never reach the upstream" in st for c, st, v in rows
               if c == "SX-EDAS-4" and v == "NOT SHOWN" and not st.startswith("token")), rows  # fmt: skip
    assert [v for c, st, v in rows if c == "SX-EDAS-4" and st.startswith("token")] == ["NOT SHOWN"], rows
    assert [(st.split(":")[0], v) for c, st, v in rows if c == "SX-EDAS-3"] == [("OpenAI-compatible API", "NOT SHOWN")]
    assert [(st.split(":")[0], v) for c, st, v in rows if c == "SX-EDAS-5"] == [("rate limits", "NOT SHOWN")]


@pytest.mark.slow  # a whole suite run through a profile (~20 s); ./run slow
def test_a_vendor_model_gateway_calling_the_harness_fakes(tmp_path: Path) -> None:
    """The vendor's gateway (here LiteLLM, configured as a vendor would) routes its models to the harness's fake
    vendors at fake_vendors_listen, which the run starts; its token quota is declared in the profile and spent
    through openai_base_url (LiteLLM 1.108.7 counts no streamed answer and sends no Retry-After: both FAIL)."""
    port = free_port()
    m = ModelGateway(vendors_port=port)
    m.start()
    try:
        profile = tmp_path / "vendor.toml"
        profile.write_text(
            TARGET + f'[gateway]\nopenai_base_url = "{m.base_url}"\napi_key_env = "CP_T_GW_KEY"\n'
            f'models = {{ "vendor-a-chat" = "anthropic", "vendor-b-chat" = "ollama" }}\n'
            f'fake_vendors_listen = "127.0.0.1:{port}"\n'
            '[[gateway.limits]]\nkind = "tokens"\ntokens = 480\nwindow_s = 60\naligned = true\n'
            'models = ["limited-a-chat", "limited-b-chat"]\n'
        )
        results = tmp_path / "results"
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "suites/gateway/test_openai.py",
             "suites/gateway/test_limits.py::test_limits_by_token_consumption", f"--cp-target={profile}",
             f"--cp-results={results}", "--cp-formats=html", "-p", "no:randomly", "-q"],
            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "CP_T_GW_KEY": m.api_key},
        )  # fmt: skip
    finally:
        m.stop()
    doc = json.loads(next(results.glob("*/evidence.json")).read_text())
    verdicts = [row["verdict"] for row in doc["clause_rows"] if row["id"] == "SX-EDAS-3"]
    assert verdicts == ["PASS"] * 10, (verdicts, r.stdout[-2000:])
    tokens = [row["verdict"] for row in doc["clause_rows"] if row["id"] == "SX-EDAS-4"]
    # ... and one dimension (model), one granularity (60 s) declared: two NOT SHOWN rows
    assert tokens == ["PASS", "FAIL", "FAIL", "PASS", "NOT SHOWN", "NOT SHOWN"], (tokens, r.stdout[-2000:])
