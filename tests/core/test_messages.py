"""Every sentence a case can put in the report comes from the message catalog, in Chinese and English.

Found in the code itself (the AST of ``src/`` and ``suites/``), so a new sentence cannot slip past:

- every ``msg("key", ...)`` names a key of ``[part]`` in ``core/messages.toml`` and gives exactly its placeholders;
- a part's name or reason written as an English string literal (``statistic="..."``, ``why=f"..."``,
  ``not_shown=...`` of ``part``/``measure``/``not_shown``, the sentence of a sync ``Part(...)``, and a case's
  ``evidence.window(...)`` and ``evidence.note(...)`` in the appendix) is English only, and fails here (issue
  #37 moved every one of them to the catalog).  ``ENGLISH_ONLY`` may name a file and how many it may keep, for
  a change that moves a large module over in steps; its counts may only go down.

What this cannot see: a sentence built elsewhere and handed over in a variable (a judge's list of problems, a
checker's summary, the gateway's part tuples) — those are catalog sentences by review, and are named in
docs/report.md.
"""

from __future__ import annotations

import ast
import string
from pathlib import Path

from clauseproof.core.i18n import catalog

ROOT = Path(__file__).resolve().parents[2]
SENTENCE_ARGS = ("statistic", "why", "not_shown", "wrong")
RECORDING_CALLS = ("part", "measure", "not_shown")
#: constructors of parts recorded later, and where their sentence sits among the positional arguments
PART_CALLS = {"Part": 3}
#: what a case's evidence says in its appendix: the timed window and notes (``evidence.window(...)``)
APPENDIX_CALLS = ("window", "note")

#: English-only sentences a file may still hold (see the module's docstring): only ever lowered; none today
ENGLISH_ONLY: dict[str, int] = {}


def _sources() -> list[Path]:
    return sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "suites").rglob("*.py")])


def _is_english(node: ast.AST) -> bool:
    """A string literal, an f-string, or a sum or choice of them (a variable or a call cannot be told here)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and bool(node.value)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _is_english(node.left) or _is_english(node.right)
    if isinstance(node, ast.IfExp):
        return _is_english(node.body) or _is_english(node.orelse)
    return False


def _calls(path: Path) -> list[ast.Call]:
    return [n for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.Call)]


def _name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _receiver(call: ast.Call) -> str:
    f = call.func
    return f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""


def test_every_msg_names_a_message_with_its_placeholders() -> None:
    parts = catalog()["part"]
    fields = string.Formatter()
    bad, used = [], 0
    for path in _sources():
        for call in _calls(path):
            if _name(call) != "msg" or not call.args:
                continue
            first = call.args[0]  # a key, or a choice of two keys ("a" if x else "b")
            choices = [first.body, first.orelse] if isinstance(first, ast.IfExp) else [first]
            if not all(isinstance(c, ast.Constant) for c in choices):
                continue  # a key made at run time (f"outage_{kind}"): its keys are listed beside it
            for choice in choices:
                used += 1
                key, where = str(choice.value), f"{path.relative_to(ROOT)}:{call.lineno}"  # type: ignore[attr-defined]
                if key not in parts:
                    bad.append(f'{where}: msg("{key}") — no [part] {key} in messages.toml')
                    continue
                if any(k.arg is None for k in call.keywords):  # **params: checked when rendered
                    continue
                wanted = {f.split(".")[0].split("[")[0] for _, f, _, _ in fields.parse(parts[key]["en"]) if f}
                given = {str(k.arg) for k in call.keywords}
                # a choice gives what either message needs: each needs a subset of it; a single key exactly its own
                if not wanted <= given if len(choices) > 1 else wanted != given:
                    bad.append(f"{where}: msg({key!r}) gives {sorted(given)}, the message wants {sorted(wanted)}")
    assert used > 40, f"only {used} msg(...) calls found: has the search broken?"
    assert not bad, "\n".join(bad)


def test_no_new_english_only_sentence_in_a_part_or_reason() -> None:
    found: dict[str, list[int]] = {}
    for path in _sources():
        rel = str(path.relative_to(ROOT))
        for call in _calls(path):
            name = _name(call)
            appendix = name in APPENDIX_CALLS and _receiver(call) in ("evidence", "gated")
            if name not in RECORDING_CALLS and name not in PART_CALLS and not appendix:
                continue
            sentences = [k.value for k in call.keywords if k.arg in SENTENCE_ARGS]
            if name in PART_CALLS and len(call.args) > PART_CALLS[name]:
                sentences.append(call.args[PART_CALLS[name]])
            if appendix and call.args:
                sentences.append(call.args[0])
            for value in sentences:
                if _is_english(value):
                    found.setdefault(rel, []).append(value.lineno)
    grown = {f: lines for f, lines in found.items() if len(lines) > ENGLISH_ONLY.get(f, 0)}
    assert not grown, "English-only sentences in a part or reason (use msg(...) and add the message, zh and en):\n" + (
        "\n".join(f"  {f}: lines {lines} (allowed {ENGLISH_ONLY.get(f, 0)})" for f, lines in grown.items())
    )
    shrunk = {f: (n, len(found.get(f, []))) for f, n in ENGLISH_ONLY.items() if len(found.get(f, [])) < n}
    assert not shrunk, "fewer English-only sentences than ENGLISH_ONLY allows — lower its numbers: " + ", ".join(
        f"{f}: {now} (was {n})" for f, (n, now) in shrunk.items()
    )


def test_a_skip_with_a_catalog_sentence_is_reported_in_the_report_language() -> None:
    import pytest

    from clauseproof.core.i18n import Messages, msg, skip, skipped_text

    said = msg("skip_no_flavours", cloud="simulated EC2 (moto)")
    with pytest.raises(pytest.skip.Exception) as caught:
        skip(said)
    english = str(caught.value.msg)
    assert english == "simulated EC2 (moto) lists no flavours: SX-ECS-S3 is checked on a cloud that does (OpenStack)"
    assert Messages("zh").text(skipped_text(english)) == [
        "simulated EC2 (moto) 不列出规格：SX-ECS-S3 在列出规格的云（OpenStack）上检查"
    ]
    assert skipped_text("a skip said in English only") is None


def test_a_sentence_from_another_catalog_is_shown_plainly_never_a_crash() -> None:
    """A received bundle made by another version: a key this catalog lacks, or a placeholder it does not give."""
    from clauseproof.core.i18n import render_text

    assert render_text({"key": "no-such-message", "params": {"n": 3}}, "zh") == "no-such-message: {'n': 3}"
    assert render_text({"key": "worst_rto", "params": {}}, "en") == "worst_rto: {}"
    assert render_text({"key": "yes", "params": {}}, "zh") == "是"
