"""The report as a Word document (python-docx), from the same evidence and words as the HTML/PDF.

It holds what a committee edits and signs: cover, overall conclusion, verdict matrix, issue list,
tender documents, environment, results per clause (as a table), clauses not covered and the
sign-off block.  Chinese is set as the East Asian font of every style (``w:eastAsia``), so Word
does not fall back to a font without the glyphs; table headers repeat on every page.  The plots are
the HTML's, drawn once by matplotlib as PNG beside the SVG (python-docx embeds raster images).
"""

from __future__ import annotations

import io
from typing import Any

from clauseproof.core.i18n import Messages

CJK_FONT = "Noto Sans CJK SC"
LATIN_FONT = "Noto Sans"
_FILL = {
    "PASS": "D8F0D8",
    "FAIL": "F6D0CC",
    "NOT EVIDENCE": "FFF1C2",
    "NOT SHOWN": "FDE3C4",
    "NOT COVERED": "EEEEEE",
    "SKIPPED": "E4E9F5",
    "ERROR": "F3C6F0",
    "NOT RUN": "FAFAFA",
    "DOCUMENTED": "E0F0F5",
}


def _fonts(doc: Any) -> None:
    from docx.oxml.ns import qn
    from docx.shared import Pt

    for style in doc.styles:
        if style.type != 1 or style.font is None:  # paragraph styles only
            continue
        style.font.name = LATIN_FONT
        rpr = style.element.get_or_add_rPr()
        rfonts = rpr.find(qn("w:rFonts"))
        if rfonts is None:
            rfonts = rpr.makeelement(qn("w:rFonts"), {})
            rpr.append(rfonts)
        rfonts.set(qn("w:eastAsia"), CJK_FONT)
    doc.styles["Normal"].font.size = Pt(9)


def _shade(cell: Any, verdict: str) -> None:
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    fill = _FILL.get(verdict)
    if fill:
        shd = OxmlElement("w:shd")
        shd.set(qn("w:val"), "clear")
        shd.set(qn("w:fill"), fill)
        cell._tc.get_or_add_tcPr().append(shd)


def _grid(doc: Any, header: list[str], rows: list[list[str]], verdict_cols: dict[int, list[str]] | None = None) -> None:
    """A table with a repeated header; cells of ``verdict_cols`` (column → verdict per row) shaded by verdict."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    table = doc.add_table(rows=1, cols=len(header))
    table.style = "Table Grid"
    trpr = table.rows[0]._tr.get_or_add_trPr()
    repeat = OxmlElement("w:tblHeader")
    repeat.set(qn("w:val"), "true")
    trpr.append(repeat)
    for cell, text in zip(table.rows[0].cells, header, strict=True):
        cell.text = ""
        cell.paragraphs[0].add_run(text).bold = True
    for i, values in enumerate(rows):
        cells = table.add_row().cells
        for j, (cell, text) in enumerate(zip(cells, values, strict=True)):
            cell.text = text
            if verdict_cols and j in verdict_cols:
                _shade(cell, verdict_cols[j][i])


def _picture(doc: Any, png: bytes, width_cm: float = 16.0) -> None:
    from docx.shared import Cm

    doc.add_picture(io.BytesIO(png), width=Cm(width_cm))


def build(document: dict[str, Any], context: dict[str, Any], figs: dict[str, Any] | None = None) -> bytes:
    """The .docx bytes of a run; ``context`` and ``figs`` are what :func:`clauseproof.core.report.context` and
    :func:`~clauseproof.core.report.figures` computed (the same plots as the HTML, as PNG)."""
    from docx import Document
    from docx.shared import Pt

    t: Messages = context["t"]
    tv = t.verdict

    def tx(value: Any) -> str:
        return "\n".join(t.text(value))

    figs = figs or {"samples": {}, "cases": {}}
    refs = context["case_refs"]
    doc = Document()
    _fonts(doc)
    d = document
    doc.add_heading(t("title"), level=0)
    _grid(
        doc,
        ["", ""],
        [
            [t("report_number"), d["run_id"]],
            [t("harness"), f"clauseproof {d['harness'].get('version')} · {d['harness'].get('commit') or 'unknown'}"],
            [t("date"), f"{d['started']} → {d['finished']}"],
            [t("system_under_test"), "\n".join(tg.get("label", "") for tg in d["targets"])],
            [t("tester"), context["tester"] or "________________"],
            [f"{t('scale')} · {t('repeats')}", f"{d['parameters']['scale']} · {d['parameters']['repeats']}"],
        ],
    )
    for banner in context["banners"]:
        doc.add_paragraph(banner).runs[0].bold = True
    doc.add_heading(t("overall"), level=1)
    for line in context["overall"]:
        doc.add_paragraph(line).runs[0].bold = True
    doc.add_paragraph(" · ".join(f"{tv(v)}: {n}" for v, n in context["totals"]))

    matrix = context["matrix"]
    clauses = context["clauses"]
    doc.add_heading(t("conclusions"), level=1)
    doc.add_paragraph(t("conclusions_intro")).runs[0].font.size = Pt(8)
    for g in context["conclusions"]:
        doc.add_heading(f"{t('tender')} {g['seed']}", level=2)
        lines = []
        for r in g["rows"]:
            c = clauses[r["id"]]
            text = c["text"] if len(c["text"]) <= 34 else c["text"][:33] + "…"
            why = f"\n{(t.text(r['why']) or [''])[0][:140]}" if r["why"] else ""
            mark = "" if c["mark"] == "plain" else c["mark"]
            lines.append([r["id"], mark, text + why, r["overall"], tx(r["figure"]) if r["figure"] else "—"])
        _grid(
            doc,
            [t("clause"), t("mark"), t("summary"), t("conclusion"), t("deciding")],
            [[*x[:3], tv(x[3]), x[4]] for x in lines],
            {3: [x[3] for x in lines]},
        )
        if g["uncovered"]:
            doc.add_paragraph(f"{t('not_covered_ids', n=len(g['uncovered']))}: {', '.join(g['uncovered'])}")

    doc.add_heading(f"1 {t('matrix')}", level=1)
    doc.add_paragraph(t("rollup_intro")).runs[0].font.size = Pt(8)
    codes = context["codes"]
    targets = [tg["label"] for tg in codes]
    rows: list[list[str]] = []
    shades: dict[int, list[str]] = {i + 3: [] for i in range(len(targets))}  # the target columns
    for row in matrix["rows"]:
        if row["overall"] == "NOT COVERED":
            continue
        c = clauses[row["id"]]
        text = c["text"] if len(c["text"]) <= 46 else c["text"][:45] + "…"
        values = [row["id"], "" if c["mark"] == "plain" else c["mark"], f"{text}\n{c['summary']}"]
        for i, tg in enumerate(targets):
            v = row["cells"][tg]["verdict"]
            values.append(tv(v))
            shades[i + 3].append(v)
        rows.append(values)
    _grid(doc, [t("clause"), t("mark"), t("summary"), *(tg["code"] for tg in codes)], rows, shades)
    if context["uncovered"]:
        ids = ", ".join(r["id"] for r in context["uncovered"])
        doc.add_paragraph(f"{t('not_covered_ids', n=len(context['uncovered']))}: {ids}")
    doc.add_heading(t("legend"), level=2)
    _grid(
        doc,
        [t("code"), t("target"), t("kind"), t("version"), t("role")],
        [
            [
                tg["code"],
                tg["label"],
                tg["kind"],
                str(tg["version"] or ""),
                t("stand_in" if tg["stand_in"] else "under_test"),
            ]
            for tg in codes
        ],
    )

    doc.add_heading(f"2 {t('issues')}", level=1)
    if context["issues"]:
        issues = context["issues"]
        _grid(
            doc,
            [t("clause"), t("target"), t("part"), t("conclusion"), t("reason")],
            [
                [
                    r["id"],
                    r["target"],
                    tx(r.get("statistic_text") or r.get("statistic")),
                    tv(r["verdict"]),
                    tx(r.get("reason_text") or r["reason"]),
                ]
                for r in issues
            ],
            {3: [r["verdict"] for r in issues]},
        )
    else:
        doc.add_paragraph(t("no_issues"))

    doc.add_heading(f"3 {t('basis')}", level=1)
    doc.add_paragraph(t("basis_intro"))
    basis = [[b["file"], f"{b['bytes']:,}", b["sha256"], str(b["clauses"])] for b in d.get("basis", [])]
    basis.append([t("clause_catalog"), "", d["parameters"]["catalog_sha256"], str(len(d["catalog"]))])
    _grid(doc, [t("file"), "bytes", "SHA-256", t("clause")], basis)

    doc.add_heading(f"4 {t('environment')}", level=1)
    client = context["client"]
    env_rows = [
        [
            t("client"),
            f"{client.get('os', '')} · Python {client.get('python', '')}",
            f"{client.get('cpu_model', '')} · {client.get('cores', '?')} cores",
        ]
    ]
    for tg in d["targets"]:
        server = tg.get("server") or {}
        kind = tg.get("kind", "")
        if kind == "containers" and isinstance(tg.get("image"), dict):
            kind += f" · image {tg['image'].get('name')} ({str(tg['image'].get('id', ''))[7:19]})"
        env_rows.append([tg.get("label", ""), str(server.get("version") or tg.get("error") or ""), kind])
    _grid(doc, ["", t("version"), t("host")], env_rows)

    doc.add_heading(f"5 {t('method')}", level=1)
    for line in t.lines("method_intro") + t.lines("method_limits"):
        doc.add_paragraph(line)
    verdicts = context["verdicts"]
    _grid(
        doc,
        [t("verdict_words"), ""],
        [[tv(v), t(v, "verdict_meaning")] for v in verdicts],
        {0: verdicts},
    )

    doc.add_heading(f"6 {t('details')}", level=1)
    for row in matrix["rows"]:
        if row["overall"] == "NOT COVERED":
            continue
        c = clauses[row["id"]]
        doc.add_heading(f"{row['id']} {'' if c['mark'] == 'plain' else c['mark']} — {tv(row['overall'])}", level=2)
        doc.add_paragraph(c["text"])
        detail = []
        for r in context["rows_by_clause"][row["id"]]:
            ref = refs.get(r.get("nodeid", ""), "")
            detail.append(
                [
                    r.get("target", ""),
                    tx(r.get("statistic_text") or r.get("statistic")),
                    tx(r.get("measured_text") or r.get("measured", "")),
                    r["verdict"],
                    tx(r.get("reason_text") or r.get("reason", "")) + (f" ({ref})" if ref else ""),
                ]
            )
        _grid(
            doc,
            [t("target"), t("part"), t("measured"), t("conclusion"), t("reason")],
            [[*x[:3], tv(x[3]), x[4]] for x in detail],
            {3: [x[3] for x in detail]},
        )
        seen = set()
        for r in context["rows_by_clause"][row["id"]]:
            fig = figs["samples"].get((r.get("nodeid"), row["id"]))
            if fig is not None and r.get("nodeid") not in seen:
                seen.add(r.get("nodeid"))
                _picture(doc, fig.png)

    doc.add_heading(f"7 {t('not_covered_list')}", level=1)
    _grid(
        doc,
        [t("clause"), t("mark"), t("quoted"), t("how_verified")],
        [[r["id"], r["mark"].replace("plain", ""), r["text"], r["verification"]] for r in context["uncovered"]],
    )

    doc.add_heading(f"8 {t('signoff')}", level=1)
    _grid(
        doc,
        ["", t("name"), t("signature"), t("date")],
        [
            [t("party_tester"), context["tester"], "", ""],
            [t("party_vendor"), "", "", ""],
            [t("party_supervisor"), "", "", ""],
        ],
    )
    doc.add_heading(t("appendix_cases"), level=1)
    _grid(
        doc,
        [t("case_ref"), t("node_id"), t("clause"), t("target"), t("outcome")],
        [
            [refs[c["nodeid"]], c["nodeid"], ", ".join(c["clause_ids"]), c.get("target") or "–", c["outcome"]]
            for c in d["cases"]
        ],
    )
    for c in d["cases"]:
        for fig in figs["cases"].get(c["nodeid"], []):
            doc.add_paragraph(f"{refs[c['nodeid']]} · {c['nodeid']}")
            _picture(doc, fig.png)
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()
