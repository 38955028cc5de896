"""The report testers sign: HTML and PDF from one template, in Chinese, English or both.

Order (a 验收测试报告): cover with the overall conclusion, the verdict matrix (one row per clause,
one column per target), the issue list, the tender documents tested against, the environment,
the method, the results per clause (quoted text, expected, measured, samples, plot, verdict),
the clauses not covered, the sign-off block, then the case records.  Plots are inline SVG
from matplotlib (vector in the PDF); every word comes from ``core/messages.toml``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import jinja2

from clauseproof.core.catalog import Clause
from clauseproof.core.evidence import verdict_matrix, write_atomic, write_atomic_bytes
from clauseproof.core.i18n import Messages

VERDICT_CLASS = {
    "PASS": "pass",
    "FAIL": "fail",
    "NOT EVIDENCE": "ne",
    "NOT SHOWN": "ns",
    "NOT COVERED": "nc",
    "SKIPPED": "skip",
    "ERROR": "err",
    "NOT RUN": "nr",
    "DOCUMENTED": "doc",
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


#: case parameters drawn as plots rather than printed
PLOTTED = ("load_series", "trial_series")


def _trials_plot(trials: list[dict[str, Any]], title: str) -> str:
    """One small panel per trial (a case's ``trial_series``: each a series with its ``title``): acknowledged and
    failed writes per second, the fault shaded, trials of one kind in a row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = [s for s in trials if isinstance(s, dict) and s.get("t")]
    if not trials:
        return ""
    kinds = list(dict.fromkeys(str(s.get("kind", "")) for s in trials))
    rows = [[s for s in trials if str(s.get("kind", "")) == k] for k in kinds]
    ncols = max(len(r) for r in rows)
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(1.6 * ncols + 0.6, 1.45 * len(rows) + 0.5), dpi=96, squeeze=False, sharey=True
    )
    for i, row in enumerate(rows):
        for j in range(ncols):
            ax = axes[i][j]
            if j >= len(row):
                ax.axis("off")
                continue
            s = row[j]
            ax.plot(s["t"], s["requests_per_s"], color="#4a78b5", linewidth=0.9)
            if any(s.get("failures_per_s") or []):
                ax.plot(s["t"], s["failures_per_s"], color="#c0392b", linewidth=0.9)
            for w in s.get("windows", []):
                ax.axvspan(w["start"], max(w["end"], w["start"] + 0.2), color="#c0392b", alpha=0.15)
            ax.set_title("\n".join(line[:34] for line in str(s.get("title", "")).splitlines()), fontsize=5.5)
            ax.tick_params(labelsize=5)
    axes[0][0].set_ylabel("writes/s", fontsize=6)
    fig.suptitle(title, fontsize=8)
    return _svg(fig)


def num(value: Any) -> str:
    """A number for people: thousands separators for large values, 4 significant digits otherwise."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def context(document: dict[str, Any], lang: str | None = None) -> dict[str, Any]:
    """What every form of the report prints (HTML, PDF, DOCX), in ``lang`` (default: the run's ``--cp-lang``)."""
    lang = lang or document.get("report", {}).get("lang") or "zh+en"
    t = Messages(lang)
    rows = document["clause_rows"]
    matrix = document.get("matrix") or verdict_matrix(document["catalog"], rows)  # bundles older than the matrix
    measurements = {
        (m["nodeid"], m["clause_id"], m["target"], m["statistic"]): m
        for case in document["cases"]
        for m in case["measurements"]
    }
    by_clause: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_clause.setdefault(r["id"], []).append(r)
    overall = [o["overall"] for o in matrix["rows"]]
    return {
        "doc": document,
        "lang": lang,
        "t": t,
        "tv": t.verdict,
        "tester": document.get("report", {}).get("tester", ""),
        "signing": document.get("report", {}).get("signing", {}),
        "banners": _banners(t, document),
        "clauses": {c["id"]: {**c, "rule": Clause(**c).rule()} for c in document["catalog"]},
        "matrix": matrix,
        "rows_by_clause": by_clause,
        "measurement": lambda r: measurements.get((r.get("nodeid"), r["id"], r.get("target"), r.get("statistic"))),
        "issues": [r for r in rows if r["verdict"] in ("FAIL", "ERROR")],
        "uncovered": [r for r in rows if r["verdict"] == "NOT COVERED"],
        "overall": _overall(t, overall),
        "totals": [(v, overall.count(v)) for v in VERDICT_CLASS if overall.count(v)],
        "verdicts": list(VERDICT_CLASS),
        "vclass": VERDICT_CLASS,
        "client": document.get("environment", {}).get("client", {}),
    }


def _banners(t: Messages, doc: dict[str, Any]) -> list[str]:
    """What makes the whole report not evidence, or incomplete, said first."""
    out = []
    if doc["parameters"]["scale"] < 1:
        out.append(t("scale_banner", scale=doc["parameters"]["scale"]))
    if doc.get("simulated_targets"):
        out.append(t("simulated_banner", names=", ".join(doc["simulated_targets"])))
    if doc.get("interrupted"):
        i = doc["interrupted"]
        out.append(t("interrupted_banner", at=i["at"], by=i["by"], during=i["during"], n=i["cases_not_run"]))
    if not doc["parameters"].get("catalog_shipped", True):
        out.append(t("custom_catalog_banner", sha=doc["parameters"]["catalog_sha256"][:16] + "…"))
    return out


def render(document: dict[str, Any], lang: str | None = None, ctx: dict[str, Any] | None = None) -> str:
    """The HTML report (the PDF is printed from it), with the plots as inline SVG."""
    ctx = ctx or context(document, lang)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("clauseproof.core", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    env.filters["num"] = num
    clauses = ctx["clauses"]
    plots: dict[tuple[str, str], str] = {}
    for case in document["cases"]:
        for m in case["measurements"]:
            c = clauses[m["clause_id"]]
            thr = None if isinstance(c["threshold"], bool) else c["threshold"]
            if (case["nodeid"], m["clause_id"]) not in plots:
                plots[(case["nodeid"], m["clause_id"])] = _plot(m, thr, c["comparator"])
    series_plots = {}
    for case in document["cases"]:
        params = case.get("parameters", {})
        svg = ""
        if isinstance(params.get("load_series"), dict):
            svg += _series_plot(params["load_series"], f"background load on {case['target']}")
        if isinstance(params.get("trial_series"), list):
            svg += _trials_plot(params["trial_series"], f"every trial on {case['target']}: writes/s, fault shaded")
        if svg:
            series_plots[case["nodeid"]] = svg
    return env.get_template("report.html.j2").render(
        **ctx,
        plots=plots,
        series_plots=series_plots,
        case_parameters=lambda c: {k: v for k, v in c.items() if k not in PLOTTED},  # the series are plotted
        env_json=json.dumps(document["environment"], indent=1, ensure_ascii=False),
    )


def _overall(t: Messages, verdicts: list[str]) -> list[str]:
    """The overall conclusion in words, from the clauses' rolled-up verdicts."""
    failed = sum(v in ("FAIL", "ERROR") for v in verdicts)
    passed = verdicts.count("PASS")
    uncovered = verdicts.count("NOT COVERED")
    other = len(verdicts) - failed - passed - uncovered
    if failed:
        return t.lines("overall_fail", failed=failed, passed=passed, other=other, uncovered=uncovered)
    if other:
        return t.lines("overall_open", other=other, uncovered=uncovered)
    return t.lines("overall_pass", judged=passed, uncovered=uncovered)


def write_report(folder: Path, document: dict[str, Any], *, pdf: bool = True, docx: bool = True) -> list[Path]:
    """``report.html``, and from the same context ``report.pdf`` (WeasyPrint) and ``report.docx`` (python-docx)."""
    ctx = context(document)
    html = render(document, ctx=ctx)
    written = [folder / "report.html"]
    write_atomic(written[0], html)
    if pdf:
        from weasyprint import HTML

        written.append(folder / "report.pdf")
        write_atomic_bytes(written[-1], HTML(string=html, base_url=str(folder)).write_pdf())
    if docx:
        from clauseproof.core.wordreport import build

        written.append(folder / "report.docx")
        write_atomic_bytes(written[-1], build(document, ctx))
    return written
