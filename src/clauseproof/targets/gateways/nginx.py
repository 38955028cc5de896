"""The embedded API gateway (SX-EDAS-2/4/5 stand-in): Debian's nginx, configured by the harness, in front of the
harness's own streaming upstream (``clauseproof.workloads.stream_upstream``, Starlette on uvicorn), all on loopback; for
the per-model limit nginx hands ``/limit/model/`` to Debian's HAProxy, which reads the model from the JSON body
(nginx's ``limit_req`` keys only on what it has before the body).

nginx proxies ``/`` to the upstream with HTTP/1.1 and ``proxy_buffering off`` (SSE and chunked responses pass
as they arrive) and keeps idle upstream connections (``keepalive``), so client requests reuse upstream sockets.
The positive controls make the same gateway buffer (``buffering=True``: proxy buffering on and the streams
gzip-compressed, a common misconfiguration) or open a socket per request
(``reuse=False``): the suite must judge those FAIL.  Both processes live in a ``clauseproof-gateway-*`` folder,
are registered with the reaper, and are stopped by :meth:`stop`, on Ctrl-C/SIGTERM and by ``clauseproof reap``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

from clauseproof.core import masking
from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.host.folders import free_port, make_private_folder
from clauseproof.targets.host.processes import NGINX_HEAD, OwnProcesses, service_user, wait_port

UPSTREAM = "stream_upstream"  # a module of clauseproof.workloads

NGINX_CONF = (
    NGINX_HEAD
    + """\
    upstream app {{
        server 127.0.0.1:{upstream_port};
        {keepalive}
    }}
    upstream models {{
        server 127.0.0.1:{models_port};
        keepalive 16;
    }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_read_timeout 60s;
{limits}
    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 100000;
        location / {{
            proxy_pass http://app;
            proxy_buffering {buffering};
            {compress}
        }}
{limit_locations}
        location /limit/model/ {{
            proxy_pass http://models;
        }}
        location @limited {{
            add_header Retry-After 1 always;
            {limited}
        }}
    }}
}}
"""
)

#: HAProxy's per-model limit (SX-EDAS-5): the model is read from the request's JSON body (``json_query``), a stick
#: table counts each model's *accepted* requests (``gpc0``, a sliding rate over ``{period}``) and refuses with 429
#: + Retry-After once a model had ``{limit}`` in the period — ``MODEL_RATE_RPS`` per second with at most
#: ``MODEL_BURST`` at once.  A body without a model is refused (400).
HAPROXY_CONF = """\
global
    maxconn 2000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
frontend models
    bind 127.0.0.1:{port}
    option http-buffer-request
    http-request set-var(txn.model) req.body,json_query('$.model')
    http-request return status 400 content-type text/plain string "no model in the body" \
        unless {{ var(txn.model) -m found }}
    http-request track-sc0 {key} table per_model
    {refuse} if {{ sc_gpc0_rate(0) ge {limit} }}
    http-request sc-inc-gpc0(0)
    default_backend app
backend per_model
    stick-table type string len 128 size 10k expire 60s store gpc0_rate({period}ms)
backend app
    http-reuse always
    server app 127.0.0.1:{upstream_port}
"""
MODEL_RATE_RPS, MODEL_BURST = 50, 10
MODELS = ("cp-model-a", "cp-model-b")

#: The embedded gateway's rate limits (SX-EDAS-4/5) as it declares them: requests per second and burst (requests
#: that may pass at once).  nginx's ``limit_req`` is a leaky bucket: ``burst`` there counts the requests beyond
#: the first, hence ``burst - 1`` in the configuration.
RATE_RPS, ROUTE_RATE_RPS, BURST = 50, 200, 5
#: the loopback addresses clients use for the client-IP limit (all of 127/8 is loopback on Linux)
CLIENT_SOURCES = tuple(f"127.0.0.{i}" for i in range(2, 12))


class EmbeddedGateway(OwnProcesses):
    """nginx in front of the harness's streaming upstream; ``base_url`` goes through nginx, ``direct_url`` not."""

    label = "embedded-nginx-gateway"

    def __init__(
        self,
        *,
        buffering: bool = False,
        reuse: bool = True,
        limit_factor: float = 1.0,
        shared_bucket: bool = False,
        nginx_refusals: bool = False,
        forward_refused: bool = False,
    ) -> None:
        """``limit_factor``, ``shared_bucket`` and ``nginx_refusals`` are the rate-limit positive controls: the
        limits configured at that multiple of the declared ones; every key of a kind counted in one bucket;
        refusals left at nginx's default (503, no ``Retry-After``)."""
        self.buffering, self.reuse = buffering, reuse
        self.limit_factor, self.shared_bucket, self.nginx_refusals = limit_factor, shared_bucket, nginx_refusals
        #: the positive control of issue 30: a 429 answered, but the request forwarded to the upstream all the same
        self.forward_refused = forward_refused
        super().__init__()
        self.credentials: dict[str, list[str]] = {}
        self.port = 0
        self.upstream_port = 0
        self.models_port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stream_url(self) -> str:
        """Where SX-EDAS-2's streams are read through the gateway (the upstream's paths below it)."""
        return self.base_url

    @property
    def direct_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}"

    #: its limited routes lead to the harness's own upstream: what reaches it is counted (SX-EDAS-4/5)
    limits_reach_upstream = True

    def start(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        for path, package in ((nginx, "nginx-light"), (haproxy, "haproxy")):
            if not os.path.exists(path):
                raise ClauseproofError(
                    f"{package.split('-')[0]} is not installed: the embedded gateway is Debian's nginx, with HAProxy "
                    "for the per-model limit",
                    fix=f"apt-get install {package} (./run installs it)",
                )
        self.folder = make_private_folder("gateway", service_user("www-data"))  # nginx and HAProxy run as www-data
        try:
            self.upstream_port = free_port()
            self._start_workload("gateway-upstream", UPSTREAM, self.upstream_port, "the streaming upstream")
            self.models_port = free_port()
            self._start_haproxy(haproxy)
            self.port = free_port()
            conf = self.folder / "nginx.conf"
            limits, locations = self._limits_conf()
            conf.write_text(
                NGINX_CONF.format(
                    folder=self.folder,
                    upstream_port=self.upstream_port,
                    port=self.port,
                    keepalive="keepalive 16;" if self.reuse else "",
                    buffering="on" if self.buffering else "off",
                    # what makes a real nginx hold events back: compressing the stream (gzip fills its buffers
                    # before it writes), on top of proxy buffering
                    compress="gzip on; gzip_min_length 0; gzip_types text/event-stream application/x-ndjson;"
                    if self.buffering
                    else "",
                    limits=limits,
                    limit_locations=locations,
                    models_port=self.models_port,
                    limited="proxy_pass http://app;" if self.forward_refused else 'return 429 "rate limited\\n";',
                )
            )
            ng_log = self.folder / "error.log"
            ng = self._spawn("gateway-nginx", [nginx, "-c", str(conf), "-e", str(ng_log)], self.folder / "nginx.out",
                             pdeathsig=True, user=service_user("www-data"))  # fmt: skip
            wait_port(self.port, ng, "nginx", ng_log)
        except BaseException:
            self.stop()
            raise

    def _start_haproxy(self, haproxy: str) -> None:
        assert self.folder is not None
        period_ms = 1000 * MODEL_BURST / MODEL_RATE_RPS
        conf = self.folder / "haproxy.cfg"
        conf.write_text(
            HAPROXY_CONF.format(
                port=self.models_port,
                upstream_port=self.upstream_port,
                key="str(all)" if self.shared_bucket else "var(txn.model)",
                refuse="http-request deny deny_status 503"
                if self.nginx_refusals
                else 'http-request return status 429 content-type text/plain string "rate limited" hdr Retry-After 1',
                limit=round(MODEL_BURST * self.limit_factor),
                period=round(period_ms),
            )
        )
        log = self.folder / "haproxy.log"
        # as www-data from the start (HAProxy's own `user` would clear the parent-death signal when it drops root)
        proc = self._spawn("gateway-haproxy", [haproxy, "-db", "-f", str(conf)], log, pdeathsig=True,
                           user=service_user("www-data"))  # fmt: skip
        wait_port(self.models_port, proc, "HAProxy", log)

    def _limits_conf(self) -> tuple[str, str]:
        """The ``limit_req`` zones (http level) and the limited locations (server level)."""
        self.credentials = {c: [masking.new_secret(12) for _ in range(n)] for c, n in (("alice", 2), ("bob", 1))}
        shared = "$cp_all" if self.shared_bucket else None
        keys = {
            "header": shared or "$http_x_api_key",
            "query": shared or "$arg_key",
            "ip": shared or "$binary_remote_addr",
            "consumer": shared or "$cp_consumer",
            "route": shared or "$cp_route",
        }
        consumers = "".join(
            f'        "Bearer {cred}" {name};\n' for name, creds in self.credentials.items() for cred in creds
        )
        zones = [
            "    limit_req_status 503;" if self.nginx_refusals else "    limit_req_status 429;",
            "    limit_req_log_level info;",
            "    map $host $cp_all { default all; }",
            f'    map $http_authorization $cp_consumer {{\n        default "";\n{consumers}    }}',
        ]
        for kind, key in keys.items():
            rate = (ROUTE_RATE_RPS if kind == "route" else RATE_RPS) * self.limit_factor
            zones.append(f"    limit_req_zone {key} zone=by_{kind}:1m rate={rate:g}r/s;")
        locations = []
        for kind, path, extra in (
            ("header", "/limit/header/", ""),
            ("query", "/limit/query/", ""),
            ("ip", "/limit/ip/", ""),
            ("consumer", "/limit/consumer/", 'if ($cp_consumer = "") { return 401 "unknown consumer\\n"; }'),
            ("route", "/limit/route-a/", "set $cp_route a;"),
            ("route", "/limit/route-b/", "set $cp_route b;"),
        ):
            locations.append(
                f"        location {path} {{\n"
                + (f"            {extra}\n" if extra else "")
                + f"            limit_req zone=by_{kind} burst={BURST - 1} nodelay;\n"
                + (
                    ""
                    if self.nginx_refusals
                    else f"            error_page 429 ={'429' if self.forward_refused else ''} @limited;\n"
                )
                + "            proxy_pass http://app;\n"
                "        }"
            )
        return "\n".join(zones), "\n".join(locations)

    def limit_rules(self) -> list[dict[str, Any]]:
        """The limits this gateway declares, in the form a profile's ``[[gateway.limits]]`` states them."""
        common = {"rate": RATE_RPS, "burst": BURST}
        return [
            {"kind": "header", "path": "/limit/header/echo", "header": "X-Api-Key", **common},
            {"kind": "query", "path": "/limit/query/echo", "param": "key", **common},
            {"kind": "ip", "path": "/limit/ip/echo", "sources": list(CLIENT_SOURCES), **common},
            {
                "kind": "consumer",
                "path": "/limit/consumer/echo",
                "header": "Authorization",
                "format": "Bearer {}",
                "consumers": {name: list(creds) for name, creds in self.credentials.items()},
                **common,
            },
            {
                "kind": "route",
                "routes": ["/limit/route-a/echo", "/limit/route-b/echo"],
                "rate": ROUTE_RATE_RPS,
                "burst": BURST,
            },
            {
                "kind": "model",
                "path": "/limit/model/v1/chat/completions",
                "models": list(MODELS),
                "rate": MODEL_RATE_RPS,
                "burst": MODEL_BURST,
            },
        ]

    def describe(self) -> dict[str, Any]:
        version = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False).stderr.strip()
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        out = subprocess.run([haproxy, "-v"], capture_output=True, text=True, check=False, timeout=30).stdout
        haproxy_version = out.split(" - ")[0].strip()
        return {
            "label": self.label,
            "gateway": version,
            "per_model_limiter": haproxy_version,
            "config": {
                "proxy_buffering": "on" if self.buffering else "off",
                "gzip_on_streams": self.buffering,
                "upstream_keepalive": self.reuse,
                "limit_req": f"{RATE_RPS} r/s (routes {ROUTE_RATE_RPS} r/s), burst {BURST}, leaky bucket"
                + (f"; CONFIGURED AT {self.limit_factor:g}x (positive control)" if self.limit_factor != 1 else "")
                + ("; ONE BUCKET PER KIND (positive control)" if self.shared_bucket else "")
                + ("; REFUSED WITH nginx's 503, NO Retry-After (positive control)" if self.nginx_refusals else "")
                + ("; REFUSED REQUESTS FORWARDED ALL THE SAME (positive control)" if self.forward_refused else ""),
                "per_model_limit": f"HAProxy stick table on the body's model: {MODEL_RATE_RPS} r/s, at most "
                f"{MODEL_BURST} at once (accepted requests counted over {1000 * MODEL_BURST // MODEL_RATE_RPS} ms)",
            },
            "upstream": "clauseproof.workloads.stream_upstream (Starlette on uvicorn), the harness's own",
        }
