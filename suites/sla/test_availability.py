"""SX-SLA-1 (the system keeps running, ≥ 99.9 %) and SX-SLA-2 (core resources available, ≥ 99.9 %) from real
requests (``clauseproof.sla.availability``).

The evidence comes from ``clauseproof probe --for 30d`` run beside the system, its log given with
``--cp-probe-log``: judged here with its confidence interval, gaps reported, for the target the run names.
Without one, each target's SQL endpoint is probed for ``suite_probe_s`` at ``suite_interval_s`` (a new connection
running ``SELECT 1`` each time): far shorter than the clause's period, so the rows are NOT EVIDENCE and say how
long a probe would have to run."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from clauseproof.core.catalog import Catalog
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import msg
from clauseproof.run.plugin import RUN_KEY
from clauseproof.sla import availability as av
from clauseproof.targets.base import Target


def _record(evidence: CaseEvidence, log: av.Log, params: dict[str, float], source: str) -> None:
    judged = av.judge(log, 99.9, float(params["period_d"]) * 86400, float(params["confidence"]))
    evidence.parameters(
        probe=log.header | {"events": log.events, "dropped_partial_line": log.dropped_partial},
        judgement=f"{params['confidence']:g} Clopper-Pearson interval; PASS needs its lower bound ≥ 99.9 % over "
        f"{params['period_d']} days of probes (the acceptance plan's period: the tender names none)",
        failures={j.what: j.failures for j in judged if j.failures},
    )
    for clause, js in (("SX-SLA-1", judged[:1]), ("SX-SLA-2", judged[1:])):
        for j in js:
            evidence.not_evidence = j.reason if j.verdict == "NOT EVIDENCE" else ""
            if evidence.not_evidence and source == "suite":
                evidence.not_evidence = msg("then", first=evidence.not_evidence, then=msg("avail_how"))
            said = msg("source_said", source=source, what=j.statistic())
            evidence.measure(
                clause,
                j.share * 100 if j.probes else 0.0,
                "%",
                statistic=said,
                why=j.reason if j.verdict == "FAIL" else "",
            )
    evidence.not_evidence = ""


@pytest.mark.clause("SX-SLA-1", "SX-SLA-2")
def test_availability(
    request: pytest.FixtureRequest, target: Target, evidence: CaseEvidence, clause_catalog: Catalog, tmp_path: Path
) -> None:
    p = clause_catalog["SX-SLA-1"].params
    run = request.config.stash[RUN_KEY]
    path = run.settings.probe_log
    ep = target.address()
    if path is not None:
        log = av.read_log(path, av.ProbeKey.from_signing_key(run.signing_key))  # refused unless keyed by the tester
        evidence.parameters(log_file=str(path), log_sha256=hashlib.sha256(path.read_bytes()).hexdigest())
        mine = av.probes_target(log, ep.host, ep.port)
        if not mine:
            why = (f"the probe log probes {[e['url'] for e in log.header['endpoints']]}, none of them this target's "
                   f"{ep.host}:{ep.port}: it is another system's record")  # fmt: skip
            for clause in ("SX-SLA-1", "SX-SLA-2"):
                evidence.not_shown(clause, statistic=msg("probe_log_not_ours", log=path.name), why=why)
            return
        evidence.window(msg("win_probe_log", log=path.name, days=f"{log.header['for_s'] / 86400:g}"))
        _record(evidence, log, p, f"probe log {path.name}")
        evidence.require_pass()
        return
    scheme = "postgresql" if target.dialect == "postgresql" else "mysql"
    db = ep.database if target.dialect == "postgresql" else target.namespace
    url = f"{scheme}://{ep.user}@{ep.host}:{ep.port}/{db}"
    endpoint = av.Endpoint(f"{target.label} SQL {ep.host}:{ep.port}", "sql", url)
    evidence.window(msg("win_probes", seconds=p["suite_probe_s"], every=p["suite_interval_s"]))
    evidence.progress(f"SX-SLA-1/2 on {target.label}: probing for {p['suite_probe_s']} s ...")
    log = av.run_probe(
        tmp_path / "probe.jsonl", [endpoint], interval_s=float(p["suite_interval_s"]),
        for_s=float(p["suite_probe_s"]), password=ep.password, stop=threading.Event(), say=lambda s: None,
    )  # fmt: skip
    _record(evidence, log, p, "suite")
    evidence.require_pass()
