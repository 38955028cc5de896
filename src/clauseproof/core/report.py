"""The report testers sign: HTML and PDF from one template, in Chinese, English or both.

Order (a 验收测试报告): cover with the overall conclusion, the verdict matrix (one row per clause,
one column per target), the issue list, the tender documents tested against, the environment,
the method, the results per clause (quoted text, expected, measured, samples, plot, verdict),
the clauses not covered, the sign-off block, then the case records.  Plots are PNG images
from matplotlib (the same bytes in the Word report); every word comes from ``core/messages.toml``.
"""

from __future__ import annotations

import base64
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from clauseproof.core.catalog import Clause
from clauseproof.core.evidence import verdict_matrix, write_atomic, write_atomic_bytes
from clauseproof.core.i18n import Messages, Text, msg

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


@dataclass
class Figure:
    """One plot, drawn once by matplotlib: its PNG (the Word report embeds it) and the ``<img>`` that shows the same
    bytes in the HTML and PDF."""

    html: str
    png: bytes


def _figure(fig: Any, dpi: int = 130) -> Figure:
    """A matplotlib figure as a PNG, shown in the page through an ``<img>`` and put as it is into the Word report;
    closed afterwards.

    Not inline SVG: a full run's 26 SVG plots cost WeasyPrint ~2.5 s to paint into the PDF on top of matplotlib's
    time to write them, and the Word report needed them redrawn as PNG anyway."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    title = fig._suptitle.get_text() if fig._suptitle is not None else ""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    data = buf.getvalue()
    src = base64.b64encode(data).decode()
    return Figure(f'<img class="plot" alt="{markupsafe.escape(title)}" src="data:image/png;base64,{src}">', data)


def _pyplot() -> Any:
    """pyplot without a display, with a font that has the Chinese glyphs (Debian's fonts-noto-cjk) first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["font.sans-serif"] = ["Noto Sans CJK SC", "Noto Sans CJK JP", "DejaVu Sans"]
    plt.rcParams["axes.unicode_minus"] = False
    return plt


def _plot(measurement: dict[str, Any], threshold: float | None, comparator: str, t: Messages) -> Figure | None:
    plt = _pyplot()
    samples = measurement["samples"]
    if not samples:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 2.2), dpi=96)
    xs = list(range(1, len(samples) + 1))
    ax.bar(xs, samples, color="#4a78b5", width=0.6, label=t("plot_samples"))
    if threshold is not None and measurement["sample_unit"] == measurement["unit"]:
        ax.axhline(
            threshold,
            color="#c0392b",
            linestyle="--",
            linewidth=1.2,
            label=t("plot_threshold", rule=f"{comparator} {threshold:g}"),
        )
    name = measurement.get("sample_name", "repeat")
    ax.set_xlabel(t("plot_vm") if name == "VM" else t("plot_repeat"))
    ax.set_ylabel(measurement["sample_unit"])
    if len(xs) <= 12:
        ax.set_xticks(xs)
    else:  # 30 VMs: every number would overlap its neighbours; whole numbers only, as many as fit
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(nbins=15, integer=True))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title(f"{measurement['clause_id']} · {measurement['target']}", fontsize=9)
    return _figure(fig)


def _series_plot(series: dict[str, Any], title: str) -> Figure | None:
    """Throughput and latency percentiles per second of a background load, windows shaded."""
    plt = _pyplot()
    t = series.get("t") or []
    if not t:
        return None
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
    return _figure(fig)


#: case parameters drawn as plots rather than printed
PLOTTED = ("load_series", "trial_series")


def _trials_plot(trials: list[dict[str, Any]], title: str) -> Figure | None:
    """One small panel per trial (a case's ``trial_series``: each a series with its ``title``): acknowledged and
    failed writes per second, the fault shaded, trials of one kind in a row."""
    plt = _pyplot()
    trials = [s for s in trials if isinstance(s, dict) and s.get("t")]
    if not trials:
        return None
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
    return _figure(fig, dpi=120)  # twenty-odd panels 1.6 inches wide: 120 dpi is as readable as the others' 130


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
    clauses = {c["id"]: {**c, "rule": Clause(**c).rule()} for c in document["catalog"]}
    return {
        "doc": document,
        "lang": lang,
        "t": t,
        "tv": t.verdict,
        "tester": document.get("report", {}).get("tester", ""),
        "signing": document.get("report", {}).get("signing", {}),
        "banners": _banners(t, document),
        "clauses": clauses,
        "matrix": matrix,
        "codes": _codes(matrix["targets"], document.get("targets", [])),
        "case_refs": {c["nodeid"]: f"C{i}" for i, c in enumerate(document["cases"], 1)},
        "conclusions": _conclusions(document, matrix, clauses, by_clause),
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


#: the kinds of target the harness starts itself: stand-ins for the system under test, said so in the legend
STAND_INS = ("embedded", "containers")


def _codes(labels: list[str], targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The matrix's columns as short codes T1…Tn, with what each stands for (the legend under the matrix)."""
    info = {tg.get("label"): tg for tg in targets}
    out = []
    for i, label in enumerate(labels, 1):
        tg = info.get(label, {})
        out.append(
            {
                "code": f"T{i}",
                "label": label,
                "kind": tg.get("kind", ""),
                "version": (tg.get("server") or {}).get("version", ""),
                "stand_in": tg.get("kind") in STAND_INS or label.startswith("embedded"),
            }
        )
    return out


def _conclusions(
    document: dict[str, Any],
    matrix: dict[str, Any],
    clauses: dict[str, dict[str, Any]],
    by_clause: dict[str, list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """Page one: per tender document, one line per clause this run judged — its overall verdict and the figure that
    decided it (the first part with that verdict: its value against the threshold, or for a capability the parts
    shown of those judged), with the reason where it is not PASS; the clauses not covered as one list."""
    groups: dict[str, dict[str, Any]] = {}
    for row in matrix["rows"]:
        c = clauses[row["id"]]
        g = groups.setdefault(c["seed"], {"seed": c["seed"], "rows": [], "uncovered": []})
        if row["overall"] == "NOT COVERED":
            g["uncovered"].append(row["id"])
            continue
        mine = [r for r in by_clause.get(row["id"], []) if r["verdict"] not in ("DOCUMENTED", "NOT COVERED")]
        deciding = next((r for r in mine if r["verdict"] == row["overall"]), mine[0] if mine else None)
        measured = [r for r in mine if r["verdict"] not in ("SKIPPED", "ERROR")]
        figure: Text | None = None
        if row["overall"] in ("SKIPPED", "ERROR") or not measured:
            figure = None  # nothing was measured: the reason says why
        elif c["metric"] == "capability" or deciding is None or not deciding.get("measured"):
            figure = msg("parts_shown", shown=sum(r["verdict"] == "PASS" for r in measured), judged=len(measured))
        else:
            figure = msg("figure_against", value=deciding["measured"], rule=c["rule"])
        why = None
        if deciding is not None and row["overall"] != "PASS":
            why = deciding.get("reason_text") or deciding.get("reason")
        g["rows"].append(
            {
                "id": row["id"],
                "mark": c["mark"],
                "overall": row["overall"],
                "figure": figure.as_dict() if figure else None,
                "why": why,
            }
        )
    return list(groups.values())


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


_DRAW = {"samples": _plot, "series": _series_plot, "trials": _trials_plot}


def _draw(job: tuple[str, tuple[Any, ...]]) -> Figure | None:
    kind, args = job
    return _DRAW[kind](*args)  # type: ignore[operator]


#: below this many plots they are drawn here; above it, on every core (matplotlib is single-threaded)
PARALLEL_FROM = 8


def _jobs(document: dict[str, Any], ctx: dict[str, Any]) -> list[tuple[tuple[str, Any], Any]]:
    """The report's plots to draw: (where, key) and the job for :func:`_draw`."""
    t: Messages = ctx["t"]
    clauses = ctx["clauses"]
    out: list[tuple[tuple[str, Any], Any]] = []
    seen: set[tuple[str, str]] = set()
    for case in document["cases"]:
        for m in case["measurements"]:
            c = clauses[m["clause_id"]]
            thr = None if isinstance(c["threshold"], bool) else c["threshold"]
            key = (case["nodeid"], m["clause_id"])
            if m["samples"] and key not in seen:
                seen.add(key)
                out.append((("samples", key), ("samples", (m, thr, c["comparator"], t))))
    for case in document["cases"]:
        params = case.get("parameters", {})
        if isinstance(params.get("load_series"), dict):
            title = t("plot_load", target=case["target"])
            out.append((("cases", case["nodeid"]), ("series", (params["load_series"], title))))
        if isinstance(params.get("trial_series"), list):
            title = t("plot_trials", target=case["target"])
            out.append((("cases", case["nodeid"]), ("trials", (params["trial_series"], title))))
    return out


def _collect(keys: list[tuple[str, Any]], drawn: list[Figure | None]) -> dict[str, Any]:
    out: dict[str, Any] = {"samples": {}, "cases": {}}
    for (where, key), fig in zip(keys, drawn, strict=True):
        if fig is None:
            continue
        if where == "samples":
            out["samples"][key] = fig
        else:
            out["cases"].setdefault(key, []).append(fig)
    return out


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _pool(workers: int = 4) -> Any:
    from concurrent.futures import ProcessPoolExecutor

    _pyplot()  # imported once here, inherited by the workers
    return ProcessPoolExecutor(max_workers=max(1, min(_cores(), workers)))


#: the slowest plots first, so that parallel workers end together (a failover case's trial panel takes seconds)
_COST = {"trials": 0, "series": 1, "samples": 2}


def _draw_all(jobs: list[Any]) -> list[Figure | None]:
    """The plots of ``jobs``, in parallel processes when there are many (a full run's 28 took 5.4 s in one)."""
    if len(jobs) >= PARALLEL_FROM and _cores() > 1:
        order = sorted(range(len(jobs)), key=lambda i: _COST.get(jobs[i][0], 3))
        with _pool() as pool:
            drawn = dict(zip(order, pool.map(_draw, [jobs[i] for i in order]), strict=True))
        return [drawn[i] for i in range(len(jobs))]
    return [_draw(job) for job in jobs]


def figures(document: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
    """Every plot of the report, drawn once as PNG: ``samples[(nodeid,
    clause)]`` (a measurement's samples against its threshold) and ``cases[nodeid]`` (a background load's series, a
    failover case's trials)."""
    todo = _jobs(document, ctx)
    return _collect([key for key, _ in todo], _draw_all([job for _, job in todo]))


def _case_notes(case: dict[str, Any]) -> list[Any]:
    """A case's notes, each as a catalog sentence where it was said as one (a bundle of an older version has the
    English only)."""
    said = case.get("notes_text") or []
    return [said[i] if i < len(said) and said[i] else n for i, n in enumerate(case.get("notes") or [])]


def _lines(lines: list[str]) -> markupsafe.Markup:
    """A sentence in the report's languages: the first as it is, the second (English, with zh+en) smaller."""
    if not lines:
        return markupsafe.Markup("")
    out = markupsafe.escape(lines[0])
    for more in lines[1:]:
        out += markupsafe.Markup('<br><span class="en">') + markupsafe.escape(more) + markupsafe.Markup("</span>")
    return markupsafe.Markup(out)


def render(
    document: dict[str, Any],
    lang: str | None = None,
    ctx: dict[str, Any] | None = None,
    figs: dict[str, Any] | None = None,
) -> str:
    """The HTML report (the PDF is printed from it), with the plots as images."""
    ctx = ctx or context(document, lang)
    figs = figs or figures(document, ctx)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("clauseproof.core", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    env.filters["num"] = num
    env.filters["tx"] = lambda value: _lines(ctx["t"].text(value))
    env.filters["tx1"] = lambda value: (ctx["t"].text(value) or [""])[0]  # the report's first language only
    return env.get_template("report.html.j2").render(
        **ctx,
        plots={k: f.html for k, f in figs["samples"].items()},
        series_plots={k: "".join(f.html for f in fs) for k, fs in figs["cases"].items()},
        case_parameters=lambda c: {k: v for k, v in c.items() if k not in PLOTTED},  # the series are plotted
        case_notes=_case_notes,
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
    """``report.html``, and from the same context ``report.pdf`` (WeasyPrint) and ``report.docx`` (python-docx).

    The plots are drawn once, as PNG (in parallel when there are many), for the page and the Word report alike; the
    PDF is the long step (WeasyPrint lays out ~80 pages on one core), so the Word report is written meanwhile by a
    forked process on another core (written here instead if that process fails)."""
    ctx = context(document)
    figs = figures(document, ctx)
    html = render(document, ctx=ctx, figs=figs)
    written = [folder / "report.html"]
    write_atomic(written[0], html)
    word = None
    if docx and pdf and _cores() > 1:
        import multiprocessing

        word = multiprocessing.get_context("fork").Process(
            target=_write_docx, args=(folder / "report.docx", document, ctx, figs), daemon=True
        )
        word.start()
    if pdf:
        from weasyprint import HTML

        written.append(folder / "report.pdf")
        write_atomic_bytes(written[-1], HTML(string=html, base_url=str(folder)).write_pdf())
    if docx:
        if word is not None:
            word.join(timeout=60)  # ~1 s of work: a child stuck on a lock inherited through fork is given up
        if word is None or word.exitcode != 0:
            if word is not None and word.is_alive():
                word.kill()
            _write_docx(folder / "report.docx", document, ctx, figs)
        written.append(folder / "report.docx")
    return written


def _write_docx(path: Path, document: dict[str, Any], ctx: dict[str, Any], figs: dict[str, Any]) -> None:
    from clauseproof.core.wordreport import build

    write_atomic_bytes(path, build(document, ctx, figs))
