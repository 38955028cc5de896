"""The embedded OpenStack end to end (slow: each cloud takes about a minute to start on 2 cores; ``./run slow``): an
honest cloud passes every control-plane part, and a cloud with the cheapest cheats built in is judged FAIL on each —
a quota below the batch, the anti-affinity filter removed, flavours listed that no host can place, and isolation by
list filtering only (a member made admin of every context: a direct read of another project's server succeeds)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from clauseproof.access.rbac import check_matrix
from clauseproof.compute.anti_affinity import check_anti_affinity
from clauseproof.compute.batch import create_batch, delete_batch
from clauseproof.compute.clone import check_clone
from clauseproof.compute.flavours import check_flavours
from clauseproof.compute.openstack_driver import OpenStackDriver
from clauseproof.compute.orchestration import check_stack
from clauseproof.compute.rebuild import check_rebuild
from clauseproof.core.catalog import load_catalog
from clauseproof.core.evidence import FAIL, NOT_SHOWN, PASS, CaseEvidence, CaseRecord
from clauseproof.core.settings import default_cache
from clauseproof.targets.cloud.openstack import EmbeddedOpenStack, _missing
from tests.fix_targets import CATALOG

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(_missing()), reason="Debian's OpenStack packages are not installed (./run slow installs them)"
    ),
]
POLL, TIMEOUT = 0.5, 180.0


def _evidence(clause: str) -> CaseEvidence:
    return CaseEvidence(CaseRecord(f"suites/x/t.py::t[{clause}]", [clause], "selftest"), load_catalog(CATALOG), 1.0)


def _driver(cloud: EmbeddedOpenStack) -> OpenStackDriver:
    return OpenStackDriver(cloud.connect, image="cp-image-a", flavour="cp.tiny", second_image="cp-image-b",
                           boots_guests=False)  # fmt: skip


def _verdicts(ev: CaseEvidence) -> dict[str, str]:
    return {m.statistic: m.verdict for m in ev.record.measurements}


def test_an_honest_embedded_cloud_passes_what_its_control_plane_does() -> None:
    run = f"st{secrets.token_hex(3)}"
    with EmbeddedOpenStack(Path(default_cache())).running() as cloud:
        print(f"embedded OpenStack up in {cloud.startup_s} s: {cloud.phases}")
        d = _driver(cloud)
        try:
            batch = create_batch(d, run, 30, poll_s=POLL, timeout_s=TIMEOUT)
            assert not batch.failures and batch.seconds is not None
            print(f"30 servers: {batch.seconds} s")
            gone = delete_batch(d, run, [t.id for t in batch.vms], poll_s=POLL, timeout_s=TIMEOUT)
            assert not gone.failures
            catalog = load_catalog(CATALOG)
            for clause, check in (
                ("SX-ECS-8", lambda ev: check_anti_affinity(d, run, ev, poll_s=POLL, timeout_s=TIMEOUT)),
                ("SX-ECS-2", lambda ev: check_rebuild(d, run, ev, poll_s=POLL, timeout_s=TIMEOUT)),
                ("SX-ECS-S3", lambda ev: check_flavours(d, run, catalog["SX-ECS-S3"].text, ev, poll_s=POLL,
                                                         timeout_s=TIMEOUT)),
                ("SX-EDAS-1", lambda ev: check_matrix(d, run, ev)),
                ("SX-ECS-5", lambda ev: check_stack(d, run, ev, timeout_s=TIMEOUT)),
                ("SX-ECS-7", lambda ev: check_clone(d, run, ev, timeout_s=TIMEOUT)),
            ):  # fmt: skip
                ev = _evidence(clause)
                check(ev)
                verdicts = _verdicts(ev)
                assert set(verdicts.values()) <= {PASS, NOT_SHOWN}, (clause, verdicts)
                assert PASS in verdicts.values()
            # what a killed run leaves beyond servers — a group, a volume, a server — is found by its name and
            # deleted by the run's clean-up (clauseproof cloud-cleanup), nothing else of the cloud touched
            left_run = f"st{secrets.token_hex(3)}"
            d.create_group(left_run, "anti-affinity")
            d.conn.block_storage.create_volume(name=f"cp-{left_run}-lost-vol", size=1)
            d.create_servers(left_run, [f"cp-{left_run}-lost-vm"])
            other = d.conn.block_storage.create_volume(name="not-the-harness", size=1)
            assert d.cleanup_run(left_run, timeout_s=TIMEOUT) == []
            names = {v.name for v in d.conn.block_storage.volumes()}
            assert f"cp-{left_run}-lost-vol" not in names and "not-the-harness" in names
            assert not [g for g in d.conn.compute.server_groups() if g.name.startswith(f"cp-{left_run}-")]
            d.conn.block_storage.delete_volume(other)
        finally:
            d.close()


def test_a_cheating_embedded_cloud_is_judged_fail_on_each_cheat() -> None:
    run = f"st{secrets.token_hex(3)}"
    cheats = EmbeddedOpenStack(
        Path(default_cache()),
        anti_affinity=False,
        quota_instances=20,
        unbootable=("cp.32c128g", "cp.1c6g"),
        nova_policy={"context_is_admin": "role:admin or role:member"},
    )
    with cheats.running() as cloud:
        d = _driver(cloud)
        try:
            # a quota below the batch: every server of the 30 named, never a PASS over fewer
            batch = create_batch(d, run, 30, poll_s=POLL, timeout_s=TIMEOUT)
            assert batch.seconds is None and len(batch.failures) == 30
            assert "uota" in batch.failures[0], batch.failures[0]
            admin = d.conn
            raised = admin.compute.put(f"/os-quota-sets/{admin.current_project_id}",
                                       json={"quota_set": {"instances": 1000}}, microversion="2.79")  # fmt: skip
            assert raised.status_code == 200, raised.text
            # the anti-affinity filter removed: the group's policy stored and ignored
            ev = _evidence("SX-ECS-8")
            check_anti_affinity(d, run, ev, poll_s=POLL, timeout_s=TIMEOUT)
            failed = [s for s, v in _verdicts(ev).items() if v == FAIL]
            assert any("server 5 in the group with 4 hosts" in s for s in failed), failed
            # flavours listed that no host can place
            ev = _evidence("SX-ECS-S3")
            check_flavours(d, run, load_catalog(CATALOG)["SX-ECS-S3"].text, ev, poll_s=POLL, timeout_s=TIMEOUT)
            failed = [s for s, v in _verdicts(ev).items() if v == FAIL]
            assert len(failed) == 2 and any("cp.32c128g" in s for s in failed) and any("cp.1c6g" in s for s in failed)
            # isolation by list filtering only
            ev = _evidence("SX-EDAS-1")
            check_matrix(d, run, ev)
            failed = [s for s, v in _verdicts(ev).items() if v == FAIL]
            assert any("member-a" in s and "see a server of the other project" in s for s in failed), failed
        finally:
            d.close()
