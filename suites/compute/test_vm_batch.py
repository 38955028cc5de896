"""SX-ECS-6 ▲ (batch create / delete of 30 VMs), SX-ECS-2 (batch lifecycle, change of OS), SX-ECS-8 ▲ (anti-affinity).

The clock starts before the first API call; each VM's acceptance, target state and (with a
``reach_port`` in the cloud profile) TCP reachability are recorded; the batch time is the
slowest VM, known to within the polling interval.  Every VM is deleted when the case ends,
even when it fails.  Against the simulated cloud (moto) every verdict is NOT EVIDENCE.
"""

from __future__ import annotations

import math

import pytest

from clauseproof.compute.anti_affinity import check_anti_affinity
from clauseproof.compute.base import Unsupported
from clauseproof.compute.batch import BatchResult, act_batch, create_batch, delete_batch, run_vms
from clauseproof.compute.rebuild import check_rebuild
from clauseproof.compute.roles import Placement, Rebuild
from clauseproof.core.catalog import Catalog, Clause
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import Text, msg, skip
from fixtures.cloud import Cloud


def _use(evidence: CaseEvidence, cloud: Cloud, clause: Clause, scale: float) -> int:
    """Record the cloud and return the VM count of this case (the clause's, or the profile's override)."""
    clause_vms = int(clause.params["vms"])
    count = cloud.count(clause_vms, scale)
    evidence.record.target = cloud.driver.name
    evidence.simulated = cloud.driver.simulated
    if count < clause_vms and evidence.scale >= 1:  # the profile's count: fewer VMs than the clause names
        evidence.not_evidence = msg("ne_fewer_vms", count=count, clause_vms=clause_vms)
    evidence.parameters(
        cloud=cloud.driver.describe(), poll_interval_s=cloud.settings.poll_interval_s, vms=count, clause_vms=clause_vms
    )
    return count


def _meaning(batch: BatchResult) -> Text:
    """What the batch time means, in the report's language (``batch.meaning`` says it in the evidence)."""
    if batch.operation == "delete":
        return msg("batch_meaning_delete")
    port = batch.target_state.rpartition("port ")[2] if "reachable" in batch.target_state else ""
    return msg("batch_meaning_create_reach", port=port) if port else msg("batch_meaning_create")


def _measure_batch(evidence: CaseEvidence, clause_id: str, batch: BatchResult) -> None:
    value = batch.seconds if batch.seconds is not None and not batch.failures else math.inf
    evidence.measure(
        clause_id,
        value,
        "s",
        statistic=msg(
            "batch_failed" if batch.failures else "batch",
            operation=msg("batch_op_create" if batch.operation == "create" else "batch_op_delete"),
            count=batch.count,
            meaning=_meaning(batch),
            poll=f"{batch.poll_interval_s:g}",
            polls=batch.polls,
            failed=len(batch.failures),
            which="; ".join(batch.failures[:5]),
        ),
        samples=[t.reached_s for t in batch.vms if t.reached_s is not None],
        sample_unit="s",
        sample_name="VM",
        why=msg("vms_failed", failed=len(batch.failures), count=batch.count, which="; ".join(batch.failures[:5]))
        if batch.failures
        else "",
    )


@pytest.mark.clause("SX-ECS-6a", "SX-ECS-6b")
def test_batch_create_and_delete(cloud: Cloud, evidence: CaseEvidence, clause_catalog: Catalog) -> None:
    count = _use(evidence, cloud, clause_catalog["SX-ECS-6a"], evidence.scale)
    if not cloud.driver.boots_guests and not evidence.not_evidence:
        evidence.not_evidence = msg("ne_fake_hypervisor")
    s = cloud.settings
    evidence.window(msg("win_vm_batch_reach", port=s.reach_port) if s.reach_port else msg("win_vm_batch"))
    left: list[str] = []
    with run_vms(cloud.driver, cloud.run_id, left, cloud.settings.timeout_s):
        evidence.progress(f"creating {count} VMs on {cloud.driver.name} ...")
        created = create_batch(
            cloud.driver, cloud.run_id, count, poll_s=s.poll_interval_s, timeout_s=s.timeout_s, reach_port=s.reach_port
        )
        evidence.parameters(vms=count, create=created.evidence())
        _measure_batch(evidence, "SX-ECS-6a", created)
        ids = [t.id for t in created.vms if t.id]
        deleted = delete_batch(cloud.driver, cloud.run_id, ids, poll_s=s.poll_interval_s, timeout_s=s.timeout_s)
        evidence.parameters(delete=deleted.evidence())
        if deleted.count != count:
            deleted.failures.append(f"only {deleted.count} of {count} VMs existed to delete")
        _measure_batch(evidence, "SX-ECS-6b", deleted)
        if deleted.leftovers:
            shown = "; ".join(
                f"{k}: {len(v)} ({', '.join(v[:3])}{', ...' if len(v) > 3 else ''})"
                for k, v in deleted.leftovers.items()
            )
            evidence.note(msg("note_still_shown_moto" if cloud.driver.simulated else "note_still_shown", shown=shown))
    if left:
        evidence.note(msg("note_not_deleted_cloud", left=str(left), run=cloud.run_id))
    evidence.require_pass()


@pytest.mark.clause("SX-ECS-2")
def test_batch_lifecycle(cloud: Cloud, evidence: CaseEvidence, clause_catalog: Catalog) -> None:
    count = _use(evidence, cloud, clause_catalog["SX-ECS-2"], 1.0)
    s = cloud.settings
    evidence.window(msg("win_vm_lifecycle"))
    left: list[str] = []
    steps: list[BatchResult] = []
    with run_vms(cloud.driver, cloud.run_id, left, cloud.settings.timeout_s):
        created = create_batch(
            cloud.driver, cloud.run_id, count, poll_s=s.poll_interval_s, timeout_s=s.timeout_s, prefix="life"
        )
        steps.append(created)
        ids = [t.id for t in created.vms if t.id]
        if not created.failures:
            for action in ("stop", "start", "reboot"):
                step = act_batch(
                    cloud.driver, cloud.run_id, ids, action, poll_s=s.poll_interval_s, timeout_s=s.timeout_s
                )
                steps.append(step)
                if step.failures:
                    break
        steps.append(delete_batch(cloud.driver, cloud.run_id, ids, poll_s=s.poll_interval_s, timeout_s=s.timeout_s))
    evidence.parameters(vms=count, steps=[st.evidence() for st in steps])
    ok = len(steps) == 5 and not any(st.failures for st in steps) and not left
    summary = ", ".join(f"{st.operation} {st.seconds if st.seconds is not None else 'failed'} s" for st in steps)
    failures = [f for st in steps for f in st.failures]
    lifecycle = msg("part_lifecycle", count=count, summary=summary)
    if failures:
        lifecycle = msg("then", first=lifecycle, then=msg("failures", which="; ".join(failures[:5])))
    if not isinstance(cloud.driver, Rebuild):
        lifecycle = msg("then", first=lifecycle, then=msg("no_rebuild"))
    evidence.measure(
        "SX-ECS-2",
        ok,
        "bool",
        statistic=lifecycle,
    )
    if isinstance(cloud.driver, Rebuild):
        check_rebuild(cloud.driver, cloud.run_id, evidence, poll_s=s.poll_interval_s, timeout_s=s.timeout_s)
    evidence.require_pass()


@pytest.mark.clause("SX-ECS-8")
def test_strict_anti_affinity(cloud: Cloud, evidence: CaseEvidence, clause_catalog: Catalog) -> None:
    count = _use(evidence, cloud, clause_catalog["SX-ECS-8"], 1.0)
    s = cloud.settings
    if isinstance(cloud.driver, Placement):  # strict, one too many, soft, topology: clauseproof.compute.anti_affinity
        check_anti_affinity(cloud.driver, cloud.run_id, evidence, poll_s=s.poll_interval_s, timeout_s=s.timeout_s)
        evidence.require_pass()
        return
    try:
        group = cloud.driver.create_group(cloud.run_id, "anti-affinity")
    except Unsupported as exc:
        skip(msg("skip_no_server_groups", why=exc.text))
    left: list[str] = []
    try:
        with run_vms(cloud.driver, cloud.run_id, left, cloud.settings.timeout_s):
            created = create_batch(
                cloud.driver,
                cloud.run_id,
                count,
                poll_s=s.poll_interval_s,
                timeout_s=s.timeout_s,
                group=group,
                prefix="aa",
            )
            ids = {t.id for t in created.vms if t.id}
            hosts = {v.name: v.host for v in cloud.driver.list_vms(cloud.run_id) if v.id in ids}
    finally:
        cloud.driver.delete_group(group)
    evidence.parameters(vms=count, group=group, policy="strict anti-affinity", hosts=hosts, create=created.evidence())
    if created.failures:
        group_failed = msg("group_vms_failed", which=str(created.failures[:3]))
        evidence.measure("SX-ECS-8", False, "bool", statistic=group_failed)
        evidence.require_pass()
    if any(h is None for h in hosts.values()):
        skip(msg("skip_no_vm_host", cloud=cloud.driver.name))
    distinct = len(set(hosts.values()))
    evidence.measure(
        "SX-ECS-8",
        distinct == len(hosts) == count,
        "bool",
        statistic=msg("part_aa_distinct", count=count, distinct=distinct),
    )
    evidence.require_pass()
