"""MkDocs hook: the page of clauses, generated from the catalog and the suites (never written twice).

For each clause of ``src/clauseproof/catalog/clauses.toml``: its id, mark, the quoted tender text, the threshold, how it
can be verified, and the cases that carry ``@pytest.mark.clause("<id>")`` in ``suites/``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MARK = re.compile(r"pytest\.mark\.clause\(([^)]*)\)")
IDS = re.compile(r"""["']([A-Z]{2}-[A-Z0-9]+-[A-Za-z0-9]+)["']""")


def cases_by_clause() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "suites").rglob("test_*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for marks in MARK.findall(path.read_text(encoding="utf-8")):
            for cid in IDS.findall(marks):
                if rel not in found.setdefault(cid, []):
                    found[cid].append(rel)
    return found


def cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def page() -> str:
    catalog = tomllib.loads((ROOT / "src/clauseproof/catalog/clauses.toml").read_text(encoding="utf-8"))
    cases = cases_by_clause()
    rows = [
        "# The clauses",
        "",
        "Generated from `src/clauseproof/catalog/clauses.toml` (the tender's words, quoted exactly) and the",
        '`@pytest.mark.clause("…")` marks in `suites/`. ★ mandatory, ▲ scored (a third-party report is',
        "needed). A clause no suite names is NOT COVERED in every report; one only a document can prove is",
        "reported from the profile's `[documents]` (see [the profile](targets.md)).",
        "",
        "| clause | mark | tender text | threshold | verified by |",
        "|---|---|---|---|---|",
    ]
    for c in catalog["clause"]:
        mark = "" if c.get("mark") == "plain" else c.get("mark", "")
        threshold = f"{c['comparator']} {c['threshold']} {c['unit']}" if c.get("metric") != "capability" else "—"
        where = "<br>".join(f"`{p}`" for p in cases.get(c["id"], [])) or f"*{c.get('verification', '')}* — not covered"
        text = f"{cell(c['text'])}<br>*{cell(c.get('summary', ''))}*"
        rows.append(f"| {c['id']} | {mark} | {text} | {cell(threshold)} | {where} |")
    return "\n".join(rows) + "\n"


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    files.append(File.generated(config, "clauses.md", content=page()))
    return files
