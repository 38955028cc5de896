"""Two runs side by side, for CI: value changes per clause, target and part, and the benchmark JSON CI tools read.

A change is a regression only when it goes the worse way (by the clause's comparator: a duration
that grows, a rate that falls), exceeds the gate (``--fail-on-regression 10%``) *and* lies outside
the noise: the two runs' sample ranges (min..max) do not overlap.  A single sample (a 1 GiB backup,
say) has no known noise: it is judged on the gate alone, and the output says so.  The absolute verdicts stay the
clause's own; this only says what moved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clauseproof.core.evidence import write_atomic

#: comparators for which a smaller value is better
SMALLER_IS_BETTER = ("<", "<=")


@dataclass
class Change:
    key: str
    unit: str
    before: float
    after: float
    smaller_is_better: bool
    overlap: bool  # the two runs' sample ranges overlap: the change is inside the noise
    verdicts: tuple[str, str]
    samples: tuple[int, int] = (0, 0)  # how many samples each run had (1: its noise is unknown)

    @property
    def noise(self) -> str:
        if min(self.samples) < 2:
            return "noise unknown (a single sample)"
        return "inside the noise" if self.overlap else "outside the noise"

    @property
    def pct(self) -> float:
        return (self.after - self.before) / self.before * 100 if self.before else float("inf")

    @property
    def worse_pct(self) -> float:
        """How much worse, in percent (negative: better)."""
        return self.pct if self.smaller_is_better else -self.pct

    def regression(self, gate_pct: float) -> bool:
        return self.worse_pct > gate_pct and not self.overlap


def numeric_measurements(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every numeric measurement of a run by a stable key: clause, target, part, case."""
    comparators = {c["id"]: c["comparator"] for c in doc["catalog"]}
    out = {}
    for case in doc["cases"]:
        test = case["nodeid"].split("::")[-1]
        for m in case["measurements"]:
            if isinstance(m["value"], bool) or m["verdict"] == "NOT SHOWN":
                continue
            key = f"{m['clause_id']} · {m['target']} · {m['statistic']} · {test}"
            out[key] = {**m, "comparator": comparators.get(m["clause_id"], "<")}
    return out


def _range(m: dict[str, Any]) -> tuple[float, float]:
    s = m.get("spread") or {}
    if s and m.get("sample_unit") == m.get("unit"):
        return float(s["min"]), float(s["max"])
    return float(m["value"]), float(m["value"])


def compare(run: dict[str, Any], baseline: dict[str, Any]) -> tuple[list[Change], list[str], list[str]]:
    """Changes of values both runs measured; keys only in the run (new) and only in the baseline (gone)."""
    now, then = numeric_measurements(run), numeric_measurements(baseline)
    changes = []
    for key in sorted(set(now) & set(then)):
        a, b = then[key], now[key]
        (a_lo, a_hi), (b_lo, b_hi) = _range(a), _range(b)
        changes.append(
            Change(
                key=key,
                unit=b["unit"],
                before=float(a["value"]),
                after=float(b["value"]),
                smaller_is_better=b["comparator"] in SMALLER_IS_BETTER,
                overlap=a_lo <= b_hi and b_lo <= a_hi,
                verdicts=(a["verdict"], b["verdict"]),
                samples=(len(a.get("samples") or []), len(b.get("samples") or [])),
            )
        )
    return changes, sorted(set(now) - set(then)), sorted(set(then) - set(now))


def benchmark_json(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The run's numeric measurements in the custom benchmark format CI tools read (``name``, ``unit``, ``value``,
    ``range``, ``extra``), split as those tools need it: smaller-is-better and bigger-is-better."""
    clauses = {c["id"]: c for c in doc["catalog"]}
    out: dict[str, list[dict[str, Any]]] = {"smaller": [], "bigger": []}
    for key, m in numeric_measurements(doc).items():
        c = clauses.get(m["clause_id"], {})
        s = m.get("spread") or {}
        rule = f"{c.get('comparator', '')} {c.get('threshold', '')} {c.get('unit', '')}"
        entry = {
            "name": key,
            "unit": m["unit"],
            "value": m["value"],
            "extra": f"clause {m['clause_id']}: {rule}; verdict {m['verdict']}; {m['statistic']}",
        }
        if s and m.get("sample_unit") == m.get("unit"):
            entry["range"] = f"± {s['stdev']:.4g}"
        out["smaller" if m["comparator"] in SMALLER_IS_BETTER else "bigger"].append(entry)
    return out


def write_benchmark_json(folder: Path, doc: dict[str, Any]) -> list[Path]:
    paths = []
    for kind, entries in benchmark_json(doc).items():
        path = folder / f"benchmark-{kind}-is-better.json"
        write_atomic(path, json.dumps(entries, indent=1, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths
