"""The readable report: one offline HTML file beside evidence.json.

Order: the clause table (every catalog clause, covered or not), then each case with a plot of
its samples against the threshold, then the environment.  Plots are inline SVG from matplotlib.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import jinja2

from clauseproof.core.evidence import write_atomic

VERDICT_CLASS = {
    "PASS": "pass",
    "FAIL": "fail",
    "NOT EVIDENCE": "ne",
    "NOT SHOWN": "ns",
    "NOT COVERED": "nc",
    "SKIPPED": "skip",
    "ERROR": "err",
}


def _svg(fig: Any) -> str:
    """A matplotlib figure as inline SVG (closed afterwards)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg") :]


def _plot(measurement: dict[str, Any], threshold: float | None, comparator: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = measurement["samples"]
    if not samples:
        return ""
    fig, ax = plt.subplots(figsize=(6.4, 2.2), dpi=96)
    xs = list(range(1, len(samples) + 1))
    ax.bar(xs, samples, color="#4a78b5", width=0.6, label="samples")
    if threshold is not None and measurement["sample_unit"] == measurement["unit"]:
        ax.axhline(
            threshold, color="#c0392b", linestyle="--", linewidth=1.2, label=f"threshold {comparator} {threshold:g}"
        )
    ax.set_xlabel("repeat")
    ax.set_ylabel(measurement["sample_unit"])
    ax.set_xticks(xs)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title(f"{measurement['clause_id']} on {measurement['target']}", fontsize=9)
    return _svg(fig)


def _series_plot(series: dict[str, Any], title: str) -> str:
    """Throughput and latency percentiles per second of a background load, windows shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = series.get("t") or []
    if not t:
        return ""
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7.2, 3.6), dpi=96, sharex=True)
    ax1.plot(t, series["requests_per_s"], color="#4a78b5", linewidth=1.2, label="requests/s")
    if any(series.get("failures_per_s") or []):
        ax1.plot(t, series["failures_per_s"], color="#c0392b", linewidth=1.2, label="failures/s")
    ax1.set_ylabel("per second")
    for key, color in (("p50_ms", "#7f8c8d"), ("p95_ms", "#e67e22"), ("p99_ms", "#c0392b"), ("max_ms", "#8e44ad")):
        ys = [float("nan") if y is None else y for y in series.get(key, [])]
        ax2.plot(t, ys, color=color, linewidth=1.0, label=key.replace("_ms", ""))
    ax2.set_yscale("log")
    ax2.set_ylabel("latency ms")
    ax2.set_xlabel("seconds")
    for i, w in enumerate(series.get("windows", [])):
        for ax in (ax1, ax2):
            ax.axvspan(w["start"], w["end"], color=f"C{i % 10}", alpha=0.12)
        ax1.text(w["start"], ax1.get_ylim()[1], w["label"][:18], fontsize=6, va="top", rotation=90)
    for ax in (ax1, ax2):
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax1.set_title(title, fontsize=9)
    return _svg(fig)


def num(value: Any) -> str:
    """A number for people: thousands separators for large values, 4 significant digits otherwise."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def render(document: dict[str, Any]) -> str:
    """The HTML report of an evidence document."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("clauseproof.core", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    env.filters["num"] = num
    clauses = {c["id"]: c for c in document["catalog"]}
    plots: dict[tuple[str, str], str] = {}
    for case in document["cases"]:
        for m in case["measurements"]:
            c = clauses[m["clause_id"]]
            thr = None if isinstance(c["threshold"], bool) else c["threshold"]
            plots[(case["nodeid"], m["clause_id"])] = _plot(m, thr, c["comparator"])
    series_plots = {
        case["nodeid"]: _series_plot(case["parameters"]["load_series"], f"background load on {case['target']}")
        for case in document["cases"]
        if isinstance(case.get("parameters", {}).get("load_series"), dict)
    }
    counts: dict[str, int] = {}
    for row in document["clause_rows"]:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    return env.get_template("report.html.j2").render(
        doc=document,
        plots=plots,
        series_plots=series_plots,
        counts=counts,
        vclass=VERDICT_CLASS,
        env_json=json.dumps(document["environment"], indent=2, ensure_ascii=False),
    )


def write_report(folder: Path, document: dict[str, Any]) -> Path:
    path = folder / "report.html"
    write_atomic(path, render(document))
    return path
