"""The embedded OpenStack's stand-in for a network service: Nova asks Neutron about every server it shows, boots and
deletes (its ports, its security groups), and Debian's Zed has no network service the harness can run without
agents.  This stub answers every such query with an empty list, a project's quotas with "no limit" and every
deletion with "done"; it creates nothing.  So the embedded cloud's servers have no network and no address, and every
part that needs an address says NOT SHOWN.  A request without a token (``X-Auth-Token``) is refused."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clauseproof.workloads.serve import serve

#: what Nova asks for, as Neutron names the list in its answer
PLURALS = {
    "security-groups": "security_groups",
    "security-group-rules": "security_group_rules",
    "floatingips": "floatingips",
    "qos-policies": "policies",
    "address-scopes": "address_scopes",
}


async def versions(request: Request) -> Response:
    return JSONResponse({"versions": [{"id": "v2.0", "status": "CURRENT", "links": [
        {"rel": "self", "href": f"{request.base_url}v2.0/"}]}]})  # fmt: skip


async def any_v2(request: Request) -> Response:
    if not request.headers.get("x-auth-token"):
        return JSONResponse({"error": "a token is needed"}, status_code=401)
    parts = [p for p in request.url.path.split("/") if p][1:]  # after v2.0
    if request.method == "DELETE":
        return Response(status_code=204)
    if request.method != "GET":
        return JSONResponse({"NeutronError": {"message": "the embedded cloud has no network service"}},
                            status_code=400)  # fmt: skip
    if not parts:
        return JSONResponse({"resources": []})
    if parts[0] == "quotas" and len(parts) == 2:  # a boot without a network asked (Nova before 2.37): no limit
        return JSONResponse({"quota": {"port": -1, "network": -1, "subnet": -1, "floatingip": -1,
                                       "security_group": -1, "security_group_rule": -1, "router": -1}})  # fmt: skip
    if len(parts) >= 2:  # one resource by id: none exists
        return JSONResponse({"NeutronError": {"message": "not found"}}, status_code=404)
    name = parts[0].removesuffix(".json")
    return JSONResponse({PLURALS.get(name, name.replace("-", "_")): []})


app = Starlette(
    routes=[
        Route("/", versions),
        Route("/v2.0", any_v2, methods=["GET", "POST", "PUT", "DELETE"]),
        Route("/v2.0/{rest:path}", any_v2, methods=["GET", "POST", "PUT", "DELETE"]),
    ]
)


def main() -> None:
    serve(app, __doc__)


if __name__ == "__main__":
    main()
