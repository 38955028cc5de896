"""The judges of the OpenStack cases, each with the cheapest cheat judged FAIL (no cloud needed: the embedded cloud's
end-to-end runs are in test_embedded_openstack.py, marked slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clauseproof.access.rbac import Cell, check_matrix, judge, load_matrix
from clauseproof.compute.anti_affinity import judge_one_too_many, judge_soft, judge_strict
from clauseproof.compute.base import FAILED, GONE, RUNNING, CloudError, ComputeDriver, Vm
from clauseproof.compute.batch import create_batch
from clauseproof.compute.flavours import listed, match
from clauseproof.compute.openstack_access import OPERATIONS
from clauseproof.compute.orchestration import Event, StackView, judge_order, judge_stack
from clauseproof.compute.rebuild import judge_rebuild
from clauseproof.compute.roles import AccessControl, Booted, Flavour, Outcome
from clauseproof.core.catalog import load_catalog
from clauseproof.core.errors import ClauseproofError
from clauseproof.core.evidence import FAIL, NOT_SHOWN, PASS, CaseEvidence, CaseRecord
from tests.fix_targets import CATALOG


def _evidence(clause: str) -> CaseEvidence:
    return CaseEvidence(CaseRecord(f"suites/x/t.py::t[{clause}]", [clause], "selftest"), load_catalog(CATALOG), 1.0)


# -- SX-ECS-8 -----------------------------------------------------------------------------------------------
def test_strict_anti_affinity_needs_distinct_hosts() -> None:
    assert judge_strict(["h1", "h2", "h3", "h4"], 4) == (True, "")
    ok, why = judge_strict(["h1", "h1", "h3", "h4"], 4)
    assert not ok and "h1 ×2" in why


def test_one_too_many_running_is_the_ignored_policy_cheat() -> None:
    # the scheduler's filter removed: server N+1 runs beside another → FAIL naming it
    ok, why = judge_one_too_many(RUNNING, "h2", "", 4)
    assert not ok and "runs (on h2)" in why and "not enforced" in why
    assert judge_one_too_many(FAILED, None, "No valid host was found", 4)[0]
    assert not judge_one_too_many("pending", None, "", 4)[0]  # neither ran nor refused: not a pass


def test_soft_anti_affinity_at_most_two_per_host_on_every_host() -> None:
    hosts = ["h1", "h2", "h3", "h4"]
    assert judge_soft(["h1", "h1", "h2", "h2", "h3", "h3", "h4", "h4"], hosts)[0]
    ok, why = judge_soft(["h1", "h1", "h1", "h2", "h3", "h3", "h4", "h4"], hosts)
    assert not ok and "h1 ×3" in why
    ok, why = judge_soft(["h1", "h1", "h2", "h2", "h3", "h3", "h3", "h3"], hosts)  # a packed cloud, h4 empty
    assert not ok and "h4" in why


# -- SX-ECS-2: change of OS ----------------------------------------------------------------------------------
BEFORE = Booted(id="s1", name="cp-r-os001", state=RUNNING, image="img-a", vcpus=1, ram_mb=64, flavour="cp.tiny",
                addresses=["10.0.0.5"], created="2026-12-07T05:00:00Z")  # fmt: skip


def test_rebuild_in_place_passes() -> None:
    after = Booted(**{**vars(BEFORE), "image": "img-b"})
    rows = judge_rebuild(BEFORE, after, "img-b", ["s1"])
    assert all(ok for _, ok, _ in rows), rows


def test_delete_and_recreate_is_judged_fail() -> None:
    # the cheat: the old server deleted, a new one with its name (and the new image) created
    rows = [(str(p), ok, str(why)) for p, ok, why in judge_rebuild(BEFORE, None, "img-b", ["s2"])]
    assert rows == [("the server keeps its id", False,
                     "server s1 is gone; a server with its name now has id s2 (deleted and created anew)")]  # fmt: skip


def test_rebuild_that_keeps_the_old_image_or_loses_the_address_fails() -> None:
    after = Booted(**{**vars(BEFORE), "addresses": ["10.0.0.9"]})
    rows = {str(part): ok for part, ok, _ in judge_rebuild(BEFORE, after, "img-b", ["s1"])}
    assert rows["it reports the new image"] is False and rows["it keeps its addresses"] is False


def test_no_address_is_not_shown() -> None:
    before = Booted(**{**vars(BEFORE), "addresses": []})
    rows = {
        str(part): ok
        for part, ok, _ in judge_rebuild(before, Booted(**{**vars(before), "image": "img-b"}), "img-b", [])
    }
    assert rows["it keeps its addresses"] is None


# -- SX-ECS-S3 -----------------------------------------------------------------------------------------------
def test_the_clause_lists_25_flavours() -> None:
    specs = listed(load_catalog(CATALOG)["SX-ECS-S3"].text)
    assert len(specs) == 25 and specs[0] == (1, 1) and specs[-1] == (32, 128)


def test_a_flavour_matches_by_vcpus_and_mebibytes() -> None:
    have = [Flavour("m.small", "1", 2, 4096), Flavour("x", "2", 2, 4000)]
    assert match((2, 4), have) == (have[0], "")
    assert match((4, 8), have) == (None, "")
    f, note = match((2, 4), [have[1]])  # 4 GB of 1000 MB: accepted, and said
    assert f == have[1] and "1000 MB" in note
    assert match((2, 4), [Flavour("y", "3", 2, 3900)]) == (None, "")


# -- SX-ECS-6a: a quota below the batch --------------------------------------------------------------------
class _QuotaCloud(ComputeDriver):
    """A cloud that takes 20 of a batch of 30 (the other 10 refused over the quota)."""

    name = "quota"

    def __init__(self) -> None:
        self.vms: dict[str, Vm] = {}

    def create(self, run_id: str, names: list[str], group: str | None = None) -> list[tuple[str, str, float]]:
        import time

        took = [(n, f"id-{n}", time.perf_counter()) for n in names[:20]]
        for n, i, _ in took:
            self.vms[i] = Vm(i, n, RUNNING)
        raise CloudError("quota exceeded", accepted=took,
                         refused={n: "Quota exceeded for instances: Requested 1, but already used 20 of 20"
                                  for n in names[20:]})  # fmt: skip

    def list_vms(self, run_id: str) -> list[Vm]:
        return list(self.vms.values())

    def act(self, ids: list[str], action: str) -> dict[str, str]:
        return {}

    def delete(self, ids: list[str]) -> dict[str, str]:
        for i in ids:
            self.vms[i] = Vm(i, self.vms[i].name, GONE)
        return {}


def test_a_quota_below_the_batch_names_every_server_not_created() -> None:
    batch = create_batch(_QuotaCloud(), "r", 30, poll_s=0.01, timeout_s=2)
    assert batch.seconds is None and len(batch.failures) == 10  # never a PASS over the 20 that ran
    assert all("Quota exceeded" in f for f in batch.failures)
    assert batch.failures[0].startswith("cp-r-vm021 ")


# -- SX-EDAS-1 -----------------------------------------------------------------------------------------------
class _Lists(AccessControl):
    """Isolation done by filtering lists only: a direct read of another project's server succeeds."""

    def __init__(self, leak: bool) -> None:
        self.leak = leak

    def access_operations(self) -> tuple[str, ...]:
        return OPERATIONS

    def access_subjects(self, run_id: str, subjects: list[str]) -> dict[str, str]:
        return {s: "role" for s in subjects}

    def access_try(self, run_id: str, subject: str, operation: str) -> Outcome:
        role = subject.partition("-")[0]
        if operation == "see a server of the other project":
            return Outcome(self.leak, "GET: HTTP 200" if self.leak else "GET: HTTP 404")
        if operation in ("list every project's servers", "change its project's quota"):
            return Outcome(role == "admin", "")
        if operation in ("create a server", "delete a server of its project"):
            return Outcome(role != "reader", "")
        if operation == "delete a server of the other project":
            return Outcome(False, "")
        return Outcome(True, "")

    def access_cleanup(self, run_id: str) -> list[str]:
        return []


def test_the_matrix_passes_an_isolating_system() -> None:
    ev = _evidence("SX-EDAS-1")
    check_matrix(_Lists(leak=False), "r", ev)
    assert {m.verdict for m in ev.record.measurements} == {PASS}


def test_list_filtering_only_is_judged_fail() -> None:
    ev = _evidence("SX-EDAS-1")
    check_matrix(_Lists(leak=True), "r", ev)
    failed = [m for m in ev.record.measurements if m.verdict == FAIL]
    assert len(failed) == 2 and all("see a server of the other project" in m.statistic for m in failed)
    assert "was allowed" in failed[0].reason


def test_a_matrix_without_an_allowed_cell_is_no_proof(tmp_path: Path) -> None:
    m = tmp_path / "m.toml"
    m.write_text('[[cell]]\nsubject = "reader-a"\noperation = "create a server"\nexpect = "refused"\n')
    ev = _evidence("SX-EDAS-1")
    check_matrix(_Lists(leak=False), "r", ev, m)
    assert ev.record.measurements[0].verdict == FAIL and "positive control" in ev.record.measurements[0].statistic


def test_an_unanswered_cell_is_not_shown_and_a_bad_matrix_is_named(tmp_path: Path) -> None:
    assert judge(Cell("member-a", "create a server", "allowed"), Outcome(None, "HTTP 500")) == (None, "HTTP 500")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[cell]]\nsubject = "member-a"\noperation = "reboot the moon"\nexpect = "allowed"\n')
    with pytest.raises(ClauseproofError, match="unknown operation 'reboot the moon'"):
        load_matrix(bad, OPERATIONS)
    assert NOT_SHOWN  # the verdict name exists (used by the not-shown rows)


# -- SX-ECS-5 -----------------------------------------------------------------------------------------------
def _view(**over: object) -> StackView:
    events = [Event("data_volume", "CREATE_IN_PROGRESS"), Event("data_volume", "CREATE_COMPLETE"),
              Event("app_server", "CREATE_IN_PROGRESS"), Event("app_server", "CREATE_COMPLETE"),
              Event("attachment", "CREATE_IN_PROGRESS"), Event("attachment", "CREATE_COMPLETE")]  # fmt: skip
    base: dict[str, object] = {
        "status": "CREATE_COMPLETE", "reason": "", "events": events,
        "resources": {"data_volume": "v1", "app_server": "s1", "attachment": "a1"},
        "outputs": {"server_name": "cp-r-stack-vm", "volume_size": 1},
        "server": {"id": "s1", "name": "cp-r-stack-vm", "state": "running"},
        "volume": {"id": "v1", "type": "cp-ssd", "size": 1, "attached_to": ["s1"]},
    }  # fmt: skip
    return StackView(**{**base, **over})  # type: ignore[arg-type]


def test_a_stack_whose_services_agree_passes() -> None:
    assert all(ok for _, ok, _ in judge_stack(_view(), "r", "cp-ssd"))


def test_complete_with_a_resource_missing_is_judged_fail() -> None:
    # the cheat: CREATE_COMPLETE, but the volume never attached (or absent from its own service)
    rows = {str(p): (ok, str(why)) for p, ok, why in judge_stack(_view(volume={"id": "v1", "type": "cp-ssd", "size": 1,
                                                                       "attached_to": []}), "r", "cp-ssd")}  # fmt: skip
    part = "the volume exists in the block-storage API, attached to the server"
    assert rows["the stack is created"][0] and rows[part] == (False, "attached to —, not the stack's server s1")
    oks = {str(p): ok for p, ok, _ in judge_stack(_view(server=None), "r", "cp-ssd")}
    assert oks["the server exists in the compute API"] is False
    assert oks["get_attr outputs equal what the services show"] is False


def test_events_out_of_dependency_order_fail() -> None:
    events = [Event("app_server", "CREATE_IN_PROGRESS"), Event("data_volume", "CREATE_IN_PROGRESS"),
              Event("data_volume", "CREATE_COMPLETE"), Event("app_server", "CREATE_COMPLETE"),
              Event("attachment", "CREATE_IN_PROGRESS"), Event("attachment", "CREATE_COMPLETE")]  # fmt: skip
    ok, why = judge_order(events)
    assert not ok and str(why) == "app_server started before data_volume completed"
