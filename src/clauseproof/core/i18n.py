"""The report's words in Chinese, English or both, from one data file (``core/messages.toml``)."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

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
