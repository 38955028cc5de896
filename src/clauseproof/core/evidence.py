"""The evidence of a run: cases, measurements, verdicts per clause, and the bundle on disk."""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clauseproof.core.catalog import Catalog, Clause
from clauseproof.core.errors import ClauseproofError
from clauseproof.core.i18n import Text, msg, render_text, skipped_text
from clauseproof.core.units import convert

PASS, FAIL, NOT_EVIDENCE, NOT_SHOWN, NOT_COVERED, SKIPPED, ERROR = (
    "PASS",
    "FAIL",
    "NOT EVIDENCE",
    "NOT SHOWN",
    "NOT COVERED",
    "SKIPPED",
    "ERROR",
)

#: A clause a vendor's document (a warranty, licence, certificate, third-party report) is attached to: shown with
#: the files' SHA-256, never counted as PASS.
DOCUMENTED = "DOCUMENTED"

#: The outcome of a case the run never reached because it was interrupted (Ctrl-C, SIGTERM, SIGHUP), or
#: because a configuration error stopped it.
NOT_RUN_INTERRUPTED = "not run: interrupted"
NOT_RUN_CONFIG = "not run: configuration error"

_OPS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
}


def judge(clause: Clause, value: float | bool) -> bool:
    """Whether ``value`` (in the clause's unit) meets the clause's rule."""
    return bool(_OPS[clause.comparator](value, clause.threshold))


def spread(samples: list[float]) -> dict[str, float]:
    """Min, max, median, mean, standard deviation and relative spread of samples."""
    if not samples:
        return {}
    med = statistics.median(samples)
    sd = statistics.stdev(samples) if len(samples) > 1 else 0.0
    return {
        "n": len(samples),
        "min": min(samples),
        "max": max(samples),
        "median": med,
        "mean": statistics.fmean(samples),
        "stdev": sd,
        "range_pct_of_median": (max(samples) - min(samples)) / med * 100 if med else math.nan,
    }


@dataclass
class Measurement:
    """One clause measured on one target by one case."""

    clause_id: str
    target: str
    nodeid: str
    value: float | bool
    unit: str
    statistic: str
    samples: list[float]
    sample_unit: str
    spread: dict[str, float]
    verdict: str
    reason: str
    sample_name: str = "repeat"
    #: the part's name and the reason in every report language (``Text.as_dict()``; a list of them for a reason of
    #: several pieces); None where the case said it in English only (``statistic``/``reason`` are then all there is)
    statistic_text: dict[str, Any] | None = None
    reason_text: Any = None


def _dict(value: Any) -> Any:
    """A Text (or a list of Texts and strings) as stored in the evidence; None for English only."""
    if isinstance(value, Text):
        return value.as_dict()
    if isinstance(value, list) and any(isinstance(v, Text) for v in value):
        return [v.as_dict() if isinstance(v, Text) else v for v in value]
    return None


@dataclass
class CaseRecord:
    """One test case (one node id) and everything it recorded."""

    nodeid: str
    clause_ids: list[str]
    target: str | None
    outcome: str = "not run"
    message: str = ""
    duration_s: float = 0.0
    parameters: dict[str, Any] = field(default_factory=dict)
    window: str = ""
    notes: list[str] = field(default_factory=list)
    #: the window and each note as catalog sentences (key and parameters; None where English only): the report
    #: gives them in its language
    window_text: dict[str, Any] | None = None
    notes_text: list[dict[str, Any] | None] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    #: seconds the clause itself made the case wait, by what (a failure detection, an outage, a rejoin): not the
    #: harness's overhead (:func:`run_cost`)
    imposed: dict[str, float] = field(default_factory=dict)


class CaseEvidence:
    """What a case uses to record its parameters and measurements (the ``evidence`` fixture)."""

    def __init__(
        self,
        record: CaseRecord,
        catalog: Catalog,
        scale: float,
        simulated: bool = False,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.record = record
        self.catalog = catalog
        self.scale = scale
        self.simulated = simulated
        #: Why this case's verdicts are not evidence although the target is real (fewer VMs than the clause
        #: names, say; a :class:`Text` or English); empty when they are.
        self.not_evidence: str | Text = ""
        self._progress = progress

    def progress(self, message: str) -> None:
        """A progress line on the terminal for a long step."""
        if self._progress is not None:
            self._progress(message)

    def parameters(self, **params: Any) -> None:
        """Record workload parameters (rows, row width, schema, parallelism, ...)."""
        self.record.parameters.update(params)

    def window(self, description: str | Text) -> None:
        """Say exactly what the timed window holds."""
        self.record.window, self.record.window_text = str(description), _dict(description)

    def note(self, text: str | Text) -> None:
        self.record.notes.append(str(text))
        self.record.notes_text.append(_dict(text))

    def imposed(self, seconds: float, what: str) -> None:
        """Seconds the clause itself made this case wait (a failure detection, an outage, a rejoin), counted apart
        from the harness's overhead in the run's cost."""
        self.record.imposed[what] = round(self.record.imposed.get(what, 0.0) + seconds, 3)

    def measure(
        self,
        clause_id: str,
        value: float | bool,
        unit: str,
        *,
        statistic: str | Text,
        samples: list[float] | None = None,
        sample_unit: str | None = None,
        why: str | Text = "",
        wrong: str | Text = "",
        sample_name: str = "repeat",
    ) -> Measurement:
        """Record a measured value for a clause and judge it against the clause's threshold.

        ``why`` explains a failure beyond the numbers (which VMs failed, say); it is added to the
        reason of a FAIL.  ``wrong`` says the work's result was wrong (a restore unequal to its
        source, say): the verdict is then FAIL whatever the value, at any scale, naming it.  ``sample_name``:
        what one sample is (a repeat of the work, or one ``VM`` of a batch), for the plot's axis.  Each of
        ``statistic``, ``why`` and ``wrong`` is a :class:`~clauseproof.core.i18n.Text` (``msg(...)``: in the
        report's language) or, not yet moved to the message catalog, an English string."""
        if clause_id not in self.record.clause_ids:
            raise ClauseproofError(
                f"{self.record.nodeid} measured {clause_id}, which its clause marker does not name",
                fix=f"add {clause_id!r} to @pytest.mark.clause(...)",
            )
        clause = self.catalog[clause_id]
        try:
            v: float | bool = value if isinstance(value, bool) else convert(value, unit, clause.unit, clause.metric)
            if clause.metric == "capability" and not isinstance(value, bool):
                raise ValueError("a capability is measured as True or False")
        except (KeyError, ValueError):
            raise ClauseproofError(
                f"{self.record.nodeid} measured {clause_id} in {unit!r}, but the clause's metric "
                f"{clause.metric!r} is stated in {clause.unit!r}",
                fix="measure in a unit of that metric",
            ) from None
        ok = judge(clause, v)
        would_be = msg("would_be_pass") if ok else msg("would_be_fail_why", why=why) if why else msg("would_be_fail")
        pieces: list[str | Text]
        if wrong:
            verdict, pieces = FAIL, [msg("result_wrong", what=wrong)]
        elif self.simulated:
            verdict, pieces = NOT_EVIDENCE, [msg("simulated"), would_be]
        elif self.not_evidence:
            verdict, pieces = NOT_EVIDENCE, [self.not_evidence, would_be]
        elif self.scale < 1:
            verdict, pieces = NOT_EVIDENCE, [msg("reduced_scale", scale=f"{self.scale:g}", would_be=would_be)]
        elif ok:
            verdict, pieces = PASS, []
        elif clause.metric == "capability":  # the statistic says what was checked; the reason says why not
            verdict, pieces = FAIL, [why or msg("disproven")]
        else:
            missed = dict(value=_fmt(v), unit=clause.unit, rule=clause.rule())
            verdict, pieces = FAIL, [msg("missed_why", **missed, why=why) if why else msg("missed", **missed)]
        m = Measurement(
            clause_id=clause_id,
            target=self.record.target or "",
            nodeid=self.record.nodeid,
            value=v,
            unit=clause.unit,
            statistic=str(statistic),
            samples=list(samples or []),
            sample_unit=sample_unit or unit,
            sample_name=sample_name,
            spread=spread(list(samples or [])),
            verdict=verdict,
            reason=render_text(pieces, "en"),
            statistic_text=_dict(statistic),
            reason_text=_dict(pieces),
        )
        self.record.measurements.append(m)
        return m

    def not_shown(self, clause_id: str, *, statistic: str | Text, why: str | Text) -> Measurement:
        """Record a part of a clause that this run could not show either way (never an absent row):
        it keeps the clause from PASS without claiming a FAIL.  ``why`` says what was missing."""
        m = self.measure(clause_id, False, "bool", statistic=statistic)
        m.verdict, m.reason, m.reason_text = NOT_SHOWN, str(why), _dict([why])
        return m

    def part(
        self,
        clause_id: str,
        ok: bool | None,
        *,
        statistic: str | Text,
        why: str | Text = "",
        not_shown: str | Text = "",
    ) -> None:
        """One part of a capability clause: shown (True), disproven (False, ``why``) or not shown (None,
        ``not_shown`` says why)."""
        if ok is None:
            self.not_shown(clause_id, statistic=statistic, why=not_shown or msg("not_shown_in_run"))
        else:
            self.measure(clause_id, ok, "bool", statistic=statistic, why=why)

    def require_pass(self) -> None:
        """Fail the case (plainly, without a traceback) if any clause it measured failed."""
        failed = [m for m in self.record.measurements if m.verdict == FAIL]
        if failed:
            import pytest

            pytest.fail("; ".join(f"{m.clause_id} FAIL on {m.target}: {m.reason}" for m in failed), pytrace=False)


def _measured_text(m: Measurement) -> dict[str, Any] | None:
    """A yes/no part's measured value in the report's language (a number with its unit needs none)."""
    if m.unit != "bool" or m.verdict == NOT_SHOWN:
        return None
    return msg("yes" if m.value else "no").as_dict()


def _fmt(v: float | bool) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if math.isinf(v):
        return "never reached"
    return f"{v:,.3f}" if abs(v) < 1000 else f"{v:,.0f}"


def clause_rows(
    catalog: Catalog, cases: list[CaseRecord], documents: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """One row per (clause, target) measured, or per clause with its coverage state; a clause with documents
    attached (``{clause, target, files: [{name, sha256, bytes}]}``) gets a DOCUMENTED row per target instead of
    NOT COVERED (and beside its measured rows)."""
    rows: list[dict[str, Any]] = []
    for clause in catalog:
        rows.extend(_document_rows(clause, [d for d in documents or [] if d["clause"] == clause.id]))
        if any(r["id"] == clause.id for r in rows) and not any(clause.id in c.clause_ids for c in cases):
            continue
        covering = [c for c in cases if clause.id in c.clause_ids and not c.outcome.startswith("not run")]
        stopped = [c for c in cases if clause.id in c.clause_ids and c.outcome.startswith("not run: ")]
        deselected = [c for c in cases if clause.id in c.clause_ids and c.outcome == "not run"]
        base = {**_clause_base(clause), "nodeids": sorted({c.nodeid for c in covering})}
        if not covering:
            if stopped:  # the run stopped before these cases: interrupted, or a configuration error
                why = msg("stopped_before", how=stopped[0].outcome, cases=", ".join(c.nodeid for c in stopped))
            elif deselected:
                why = msg("deselected", cases=", ".join(c.nodeid for c in deselected))
            else:
                why = msg("no_case_document" if clause.verification == "document" else "no_case")
            rows.append(
                {
                    **base,
                    "target": "",
                    "verdict": NOT_COVERED,
                    "measured": "",
                    "reason": str(why),
                    "reason_text": why.as_dict(),
                }
            )
            continue
        for case in covering:
            ms = [m for m in case.measurements if m.clause_id == clause.id]
            if ms:
                for m in ms:
                    rows.append(
                        {
                            **base,
                            "target": m.target,
                            "verdict": m.verdict,
                            "measured": "—"
                            if m.verdict == NOT_SHOWN
                            else (_fmt(m.value) if m.unit == "bool" else f"{_fmt(m.value)} {m.unit}"),
                            "measured_text": _measured_text(m),
                            "statistic": m.statistic,
                            "statistic_text": m.statistic_text,
                            "reason": m.reason,
                            "reason_text": m.reason_text,
                            "nodeid": case.nodeid,
                        }
                    )
                continue
            reason_text = None
            if case.outcome == "skipped":
                verdict, reason, reason_text = SKIPPED, case.message, skipped_text(case.message)
            else:
                verdict, reason = ERROR, case.message or f"case {case.outcome} before measuring"
            rows.append(
                {
                    **base,
                    "target": case.target or "",
                    "verdict": verdict,
                    "measured": "",
                    "reason": reason,
                    "reason_text": reason_text,
                    "nodeid": case.nodeid,
                }
            )
    return rows


#: The order in which a part's verdict keeps a clause from PASS on a target: the first present wins.
_BLOCKING = (FAIL, ERROR, NOT_SHOWN, SKIPPED, NOT_EVIDENCE)
NOT_RUN_HERE = "NOT RUN"


def rollup(rows: list[dict[str, Any]], rule: str) -> str:
    """The verdict of one clause on one target from its parts' rows.

    ``all``: every part must PASS; any FAIL makes it FAIL, else an ERROR, NOT SHOWN, SKIPPED or NOT EVIDENCE part
    keeps it from PASS (in that order).  ``any``: one PASS part suffices (one backup method, say), unless a part's
    result was wrong (a restore unequal to its source): a wrong result is FAIL under every rule."""
    measured = [r for r in rows if r["verdict"] != DOCUMENTED]
    if rows and not measured:
        return DOCUMENTED
    rows = measured  # documents beside measurements add nothing to the verdict
    verdicts = [r["verdict"] for r in rows]
    if not verdicts:
        return NOT_RUN_HERE
    if any(r["verdict"] == FAIL and str(r.get("reason", "")).startswith("result wrong") for r in rows):
        return FAIL
    if rule == "any" and PASS in verdicts:
        return PASS
    for v in _BLOCKING:
        if v in verdicts:
            return v
    return PASS if all(v == PASS for v in verdicts) else NOT_COVERED


def verdict_matrix(clauses: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per catalog clause (as dicts), one column per target that any row names, each cell the clause's
    rolled-up verdict there (``NOT RUN`` where its cases address other targets); a clause no case covers is NOT
    COVERED."""
    targets: list[str] = []
    for r in rows:
        if r.get("target") and r["target"] not in targets:
            targets.append(r["target"])
    out = []
    for clause in clauses:
        rule = clause.get("rollup", "all")
        mine = [r for r in rows if r["id"] == clause["id"]]
        covered = [r for r in mine if r["verdict"] != NOT_COVERED]
        cells = {}
        for t in targets:
            parts = [r for r in covered if r.get("target") == t]
            cells[t] = {"verdict": rollup(parts, rule) if covered else NOT_COVERED, "parts": len(parts)}
        untargeted = [r for r in covered if not r.get("target")]  # a case that broke before its target was known
        overall = rollup(covered, "all") if covered else NOT_COVERED
        if covered and not untargeted:
            judged = [c["verdict"] for c in cells.values() if c["verdict"] not in (NOT_RUN_HERE, DOCUMENTED)]
            overall = next((v for v in _BLOCKING if v in judged), PASS) if judged else DOCUMENTED
        out.append({"id": clause["id"], "mark": clause["mark"], "rollup": rule, "cells": cells, "overall": overall})
    return {"targets": targets, "rows": out}


def _clause_base(clause: Clause) -> dict[str, Any]:
    """What every row of a clause repeats: its id, mark, quoted text, summary, rule and how it is verified."""
    return {
        "id": clause.id,
        "mark": clause.mark,
        "text": clause.text,
        "summary": clause.summary,
        "rule": clause.rule(),
        "verification": clause.verification,
    }


def _document_rows(clause: Clause, attached: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            **_clause_base(clause),
            "nodeids": [],
            "target": d["target"],
            "verdict": DOCUMENTED,
            "measured": ", ".join(f["name"] for f in d["files"]),
            "statistic": "documents attached in the profile's [documents]",
            "reason": "; ".join(f"{f['name']}: sha256 {f['sha256']}" for f in d["files"])
            + " (a document is not a measurement: read it; never counted as PASS)",
        }
        for d in attached
    ]


def write_atomic(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (UTF-8 text): see :func:`write_atomic_bytes`."""
    write_atomic_bytes(path, text.encode("utf-8"))


def write_atomic_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temporary name in the same folder, flushed, then renamed (a full
    disk or a kill mid-write leaves the previous file, never half of one)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        # readable by the run's owner only
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bundle(results: Path, run_id: str, document: dict[str, Any]) -> Path:
    """Write ``results/<run_id>/evidence.json`` (whole or not at all); ``latest`` is moved separately, once the
    bundle is complete (:func:`point_latest`)."""
    folder = results / run_id
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)  # the run's owner only
    write_atomic(folder / "evidence.json", json.dumps(document, indent=2, ensure_ascii=False, default=str))
    return folder


def point_latest(results: Path, run_id: str) -> None:
    """Point ``results/latest`` at a complete bundle."""
    latest = results / "latest"
    tmp = results / f".latest-{os.getpid()}"
    try:
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(run_id)
        os.replace(tmp, latest)
    except OSError:
        write_atomic(results / "LATEST", run_id + "\n")


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def timed_seconds(case: CaseRecord) -> float:
    """The timed windows a case measured: the samples in seconds of its measurements, each set once (two clauses
    judged on the same samples count them once); repeats add up, the VMs of one batch count as the slowest."""
    seen, total = set(), 0.0
    for m in case.measurements:
        if not m.samples or (m.sample_unit, tuple(m.samples)) in seen:
            continue
        seen.add((m.sample_unit, tuple(m.samples)))
        try:
            xs = [convert(x, m.sample_unit, "s", "duration") for x in m.samples]
        except (KeyError, ValueError):
            continue  # not a time (rows/s, MB/s)
        total += max(xs) if m.sample_name == "VM" else sum(xs)
    return total


def client_cost(cpu_s: float, operations: int) -> dict[str, Any]:
    """How much of the machine a load the harness ran took (a case's ``load_client``): its CPU seconds, and the
    milliseconds of them per 1,000 operations (None without an operation)."""
    return {
        "operations": operations,
        "cpu_s": round(cpu_s, 3),
        "cpu_ms_per_1000": round(cpu_s * 1e6 / operations, 1) if operations else None,
    }


def run_cost(cases: list[CaseRecord], suite_of: Callable[[str], str]) -> dict[str, dict[str, Any]]:
    """Per suite: its wall time, the timed windows and the waits its clauses impose, and the rest (the harness's
    overhead: starting targets, generating and loading data, set-up, checks), with the cases that spent most of it."""
    out: dict[str, dict[str, Any]] = {}
    for c in cases:
        if c.outcome.startswith("not run"):  # deselected or never reached: no cost
            continue
        s = out.setdefault(suite_of(c.nodeid), {"wall_s": 0.0, "timed_s": 0.0, "imposed_s": 0.0, "cases": []})
        timed, imposed = timed_seconds(c), sum(c.imposed.values())
        s["wall_s"] += c.duration_s
        s["timed_s"] += timed
        s["imposed_s"] += imposed
        s["cases"].append((round(max(c.duration_s - timed - imposed, 0.0), 1), c.nodeid))
    for s in out.values():
        s["overhead_s"] = max(s["wall_s"] - s["timed_s"] - s["imposed_s"], 0.0)
        s["overhead_pct"] = round(100 * s["overhead_s"] / s["wall_s"], 1) if s["wall_s"] else 0.0
        s["largest"] = [{"case": n, "overhead_s": o} for o, n in sorted(s.pop("cases"), reverse=True)[:3]]
        for k in ("wall_s", "timed_s", "imposed_s", "overhead_s"):
            s[k] = round(s[k], 1)
    return out
