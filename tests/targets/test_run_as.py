"""Issue 31: nothing the harness starts runs as root that need not be. Each kind of service the harness starts is
started here and every process of it is looked at in /proc: the harness's own Python servers and load generators
run as ``clauseproof`` (./run makes that user), pgpool-II as ``postgres``, nginx and HAProxy as ``www-data`` /
``haproxy``, the database servers as their own users — and a service that listens answers only with its secret."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from clauseproof.load.background import BackgroundLoad
from clauseproof.targets.base import Target
from clauseproof.targets.gateways.litellm import ModelGateway
from clauseproof.targets.gateways.nginx import EmbeddedGateway
from clauseproof.targets.host.processes import OWN_CODE_USER, _others_can_reach, own_code_user, service_headers
from clauseproof.workloads import oltp

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="who a child runs as matters where the harness is root")


def users_of_session(leader: int) -> dict[int, str]:
    """Every live process of ``leader``'s session, by pid, with the name of its real user."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            status = (entry / "status").read_text()
        except OSError:
            continue
        if int(fields[3]) == leader:  # the session id
            uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
            found[int(entry.name)] = pwd.getpwuid(uid).pw_name
    return found


def test_the_harness_s_own_code_can_run_as_its_own_user() -> None:
    """./run made the user and built the virtualenv from a Python every user can run: no reason to stay root."""
    assert own_code_user().name == OWN_CODE_USER, own_code_user().fact


def test_a_path_closed_to_other_users_is_named(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    (closed / "x").write_text("")
    assert "closed to other users" in _others_can_reach(closed / "x")
    assert _others_can_reach(Path("/usr/bin/env")) == ""


def test_the_gateway_s_processes_run_as_their_users_and_its_counters_need_the_secret() -> None:
    import httpx

    gw = EmbeddedGateway()
    gw.start()
    try:
        users = {p.args[0] if isinstance(p.args, list) else p.args: set(users_of_session(p.pid).values())
                 for p in gw.procs}  # fmt: skip
        # another local user reading or resetting what a verdict counts: refused
        assert httpx.get(f"{gw.direct_url}/stats", timeout=5).status_code == 403
        assert httpx.post(f"{gw.direct_url}/stats", timeout=5).status_code == 403
        wrong = {"X-Clauseproof-Secret": "x" * len(service_headers()["X-Clauseproof-Secret"])}
        assert httpx.get(f"{gw.direct_url}/stats", timeout=5, headers=wrong).status_code == 403
        assert httpx.get(f"{gw.direct_url}/stats", timeout=5, headers=service_headers()).status_code == 200
    finally:
        gw.stop()
    assert users and all("root" not in u for u in users.values()), users
    assert any(u == {OWN_CODE_USER} for u in users.values()), users  # the streaming upstream


def test_litellm_and_the_fake_vendors_run_as_the_harness_s_own_user() -> None:
    import httpx

    mg = ModelGateway()
    mg.start()
    try:
        users = [set(users_of_session(p.pid).values()) for p in mg.procs]
        assert httpx.post(f"{mg.vendors_url}/stats", timeout=5).status_code == 403
        assert httpx.get(f"{mg.vendors_url}/stats", timeout=5, headers=service_headers()).status_code == 200
    finally:
        mg.stop()
    assert users and all(u == {OWN_CODE_USER} for u in users), users


def test_the_load_generator_runs_as_the_harness_s_own_user(pg_server: Target) -> None:
    schema = pg_server.namespace
    with pg_server.connect() as conn:
        oltp.populate(conn, pg_server.dialect, schema, settlements=10)
    load = BackgroundLoad(pg_server, schema, users=2, weights="lookup=1", limit_s=20)
    load.start()
    try:
        users = [set(users_of_session(p.pid).values()) for p in load.procs]
    finally:
        load.stop()
    assert users and all(u == {OWN_CODE_USER} for u in users), users
