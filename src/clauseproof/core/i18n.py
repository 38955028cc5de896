"""The report's words in Chinese, English or both, from one data file (``core/messages.toml``).

The frame's words are looked up by key (:class:`Messages`); what a case says — a part's name, its reason, why it
was not shown — is a :class:`Text`: a key of the ``[part]`` group with its parameters, kept in the evidence as
``{"key": ..., "params": ...}`` beside its English rendering, and put into the report's language when the report
is built (numbers, units and node names stay as they are).  ``tests/core/test_messages.py`` finds every ``msg(...)``
in the code and checks its key and parameters against both languages.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

from clauseproof.core.errors import ClauseproofError

LANGS = ("zh", "en", "zh+en")
MESSAGES = Path(__file__).with_name("messages.toml")


@cache
def catalog() -> dict[str, dict[str, dict[str, str]]]:
    """The message catalog: group → key → {zh, en}."""
    return tomllib.loads(MESSAGES.read_text(encoding="utf-8"))


def check_lang(lang: str) -> str:
    if lang not in LANGS:
        raise ClauseproofError(
            f"--cp-lang {lang!r} is not a report language",
            checked=f"the languages of {MESSAGES.name}",
            fix=f"use one of {', '.join(LANGS)} (zh+en prints both)",
        )
    return lang


class Messages:
    """``t("title")`` → "验收测试报告 / Acceptance test report" in zh+en; ``t.lines(...)`` one per language."""

    def __init__(self, lang: str = "zh+en") -> None:
        self.lang = check_lang(lang)
        self.langs = ["zh", "en"] if lang == "zh+en" else [lang]

    def lines(self, key: str, group: str = "text", **values: Any) -> list[str]:
        entry = catalog()[group][key]
        return [entry[lang].format(**values) for lang in self.langs]

    def __call__(self, key: str, group: str = "text", **values: Any) -> str:
        return " / ".join(self.lines(key, group, **values))

    def verdict(self, verdict: str) -> str:
        """A verdict word: 不通过 / FAIL."""
        return self(verdict, "verdict")

    def text(self, value: Any) -> list[str]:
        """A case's sentence (:class:`Text`, its dict, or a plain string) in each language of the report; a plain
        string (English only) once."""
        if not (_is_text(value) or isinstance(value, list)):
            return [render_text(value, "en")] if value else []
        out = [render_text(value, lang) for lang in self.langs]
        return out if len(out) < 2 or out[0] != out[1] else out[:1]


@dataclass(frozen=True)
class Text:
    """A sentence a case says, in every language: a ``[part]`` key and its parameters (numbers, names, or other
    Texts).  ``str()`` is its English (the identity of a part across runs, and what a terminal shows)."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return render_text(self, "en")

    def __contains__(self, part: str) -> bool:
        """Whether its English holds ``part`` (as a string would answer)."""
        return part in str(self)

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "params": {k: _plain(v) for k, v in self.params.items()}}


def msg(key: str, **params: Any) -> Text:
    """``msg("rto", fault="kill", worst=12.3)``: the sentence ``[part.rto]`` of ``messages.toml``."""
    if key not in catalog()["part"]:
        raise KeyError(f"no message {key!r} in [part] of {MESSAGES.name}")
    return Text(key, params)


def joined(items: Sequence[Text | str]) -> Text | str:
    """Several findings as one sentence: "a; b; c" ("a；b；c"), "" for none."""
    present = [i for i in items if i]
    if not present:
        return ""
    out = present[0]
    for more in present[1:]:
        out = msg("then", first=out, then=more)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Text):
        return value.as_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _is_text(value: Any) -> bool:
    return isinstance(value, Text) or (isinstance(value, dict) and set(value) == {"key", "params"})


def _param(value: Any, lang: str) -> Any:
    """A parameter in one language: a Text rendered, a list of items as a list ("a, b" / "a、b")."""
    if isinstance(value, list):
        return ("、" if lang == "zh" else ", ").join(str(_param(v, lang)) for v in value)
    return render_text(value, lang) if _is_text(value) else value


def render_text(value: Any, lang: str) -> str:
    """A Text (or its stored dict) in one language (``zh`` or ``en``); a plain string is returned as it is (an
    English-only sentence from a case not yet moved to the catalog); a list of pieces is joined with "; " ("；")."""
    if isinstance(value, Text):
        value = value.as_dict()
    if isinstance(value, list):
        return ("；" if lang == "zh" else "; ").join(render_text(v, lang) for v in value if v)
    if not _is_text(value):
        return "" if value is None else str(value)
    entry = catalog()["part"].get(value["key"])
    params = {k: _param(v, lang) for k, v in (value["params"] or {}).items()}
    if entry is not None:
        try:
            return str(entry[lang]).format(**params)
        except (KeyError, IndexError, ValueError, AttributeError):
            pass
    # a bundle from another version of the catalog (a key or a placeholder not here): its key and values, never a crash
    return f"{value['key']}: {params}"


#: the sentences cases were skipped with, by their English (a skip's reason reaches the evidence as pytest's text)
_SKIPPED: dict[str, dict[str, Any]] = {}


def skip(text: Text) -> NoReturn:
    """``pytest.skip`` with a sentence of the catalog: the report gives the reason in its language."""
    import pytest

    _SKIPPED[str(text)] = text.as_dict()
    pytest.skip(str(text))
    raise AssertionError("pytest.skip returned")  # pragma: no cover


def skipped_text(message: str) -> dict[str, Any] | None:
    """The catalog sentence a case was skipped with (:func:`skip`), from pytest's text of it; None for another."""
    return _SKIPPED.get(message.strip())
