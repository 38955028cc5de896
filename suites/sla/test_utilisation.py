"""SX-SLA-3: each node's CPU, memory and disk utilisation while the acceptance plan's reference load runs, judged
against ≤ 50 % (``clauseproof.sla.utilisation``).

The load: the OLTP workload (Locust, open loop) at ``users x rate_per_user`` requests/s.  Samples every second:
an idle period first (so that the samples are shown to follow the load), then the load after its warm-up.  The
window judged holds only the loaded period; populating the tables and starting the load are outside it.  An
embedded server is read from ``/proc`` as its own share of the machine it shares with the harness (the machine's
figures are recorded beside); a target the harness cannot read a node of is a NOT SHOWN row saying what is
needed.
"""

from __future__ import annotations

import time

import pytest

from clauseproof.core.catalog import Catalog
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import msg
from clauseproof.load.background import BackgroundLoad
from clauseproof.sla.utilisation import ProcessTreeSampler, Sampler, Sampling, not_following, summarise
from clauseproof.targets.base import Target
from clauseproof.workloads import oltp


@pytest.mark.clause("SX-SLA-3")
def test_node_utilisation_under_the_reference_load(
    target: Target, evidence: CaseEvidence, clause_catalog: Catalog
) -> None:
    p = clause_catalog["SX-SLA-3"].params
    samplers: list[Sampler] = [ProcessTreeSampler(name, pid, data) for name, pid, data in target.local_nodes()]
    section = target.profile.section("utilisation") if target.profile else None
    if section is not None:
        samplers = section.samplers()
    if not samplers:
        evidence.not_shown(
            "SX-SLA-3",
            statistic=msg("utilisation_unreadable"),
            why=msg("utilisation_unreadable_why", target=target.label),
        )
        return
    users, rate = int(p["users"]), float(p["rate_per_user"])
    offered = users * rate
    evidence.parameters(
        load=f"OLTP workload, open loop, {users} users x {rate:g} requests/s = {offered:g}/s (the acceptance "
        "plan's reference load: the tender names none)",
        nodes=[s.describe() for s in samplers],
        judged=f"CPU: highest {p['window_s']} s average of the loaded period; memory and disk: highest 1 s sample",
    )
    evidence.window(msg("win_utilisation", idle=p["idle_s"], load=p["load_s"], warmup=p["warmup_s"]))
    conn = target.connect()
    try:
        oltp.populate(conn, target.dialect, target.namespace, settlements=10_000)
        for refused in oltp.settle(conn, target.dialect, target.namespace):  # else its upkeep may pass for load
            evidence.note(msg("note_upkeep_refused", refused=refused))
    finally:
        conn.close()
    load = BackgroundLoad(target, target.namespace, users=users, rate_per_user=rate, processes=1, limit_s=120)
    with Sampling(samplers) as sampling:
        time.sleep(0.5)
        idle0 = time.time()
        time.sleep(float(p["idle_s"]))
        idle1 = time.time()
        evidence.progress(f"SX-SLA-3 on {target.label}: {offered:g} requests/s for {p['load_s']} s ...")
        load.start()
        try:
            time.sleep(float(p["warmup_s"]))
            with load.window("reference load") as w:
                time.sleep(float(p["load_s"]))
        finally:
            result = load.stop()
    evidence.imposed(idle1 - idle0 + float(p["warmup_s"]) + (w.end - w.start), "idle window, warm-up, reference load")
    ws = result.window_stats(w)
    served = ws["requests_approx"] / max(ws["seconds"], 1e-9)
    why_not = ""
    if ws["errors"] or served < float(p["served_ratio"]) * offered:
        why_not = (
            f"the load was not served: {served:.1f} of {offered:g} requests/s, {ws['errors']} errors — utilisation "
            "of a node that did not do the work proves nothing"
        )
    if sampling.errors:
        why_not = why_not or f"reading a node failed: {sampling.errors[0]}"
    evidence.parameters(load_served=ws, sampling_errors=sampling.errors, load_client=result.client())
    for s in samplers:
        rs = sampling.readings[s.name]
        idle = summarise(rs, idle0, idle1, float(p["window_s"]))
        busy = summarise(rs, w.start, w.end, float(p["window_s"]))
        evidence.parameters(**{f"utilisation {s.name}": {"idle": idle, "loaded": busy}})
        follows = why_not or not_following(idle, busy)
        machine = busy.get("machine", {})
        for what, key, unit_note in (
            (msg("util_cpu"), "cpu_peak_window_pct", msg("util_peak_window", window=p["window_s"])),
            (msg("util_memory"), "memory_peak_pct", msg("util_peak_sample")),
            (msg("util_disk"), "disk_peak_pct", msg("util_peak_sample")),
        ):
            mkey = "cpu_mean_pct" if key.startswith("cpu") else key
            said = dict(node=s.name, what=what, how=unit_note, rate=f"{served:.0f}", pct=busy.get(key))
            stat = (msg("util_stat_machine", **said, machine=machine.get(mkey)) if machine
                    else msg("util_stat", **said))  # fmt: skip
            if follows:
                evidence.not_shown("SX-SLA-3", statistic=stat, why=follows)
            else:
                evidence.measure("SX-SLA-3", float(busy[key]), "%", statistic=stat)
    evidence.require_pass()
