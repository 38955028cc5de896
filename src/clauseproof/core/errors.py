"""One error type whose message says what failed, what was checked and how to fix it."""

from __future__ import annotations

from typing import Any


class ClauseproofError(Exception):
    """A user-facing error, rendered as one paragraph without a traceback."""

    def __init__(self, what: str, *, checked: str = "", fix: str = "") -> None:
        self.what = what
        self.checked = checked
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        parts = [self.what.rstrip(".") + "."]
        if self.checked:
            parts.append("Checked: " + self.checked.rstrip(".") + ".")
        if self.fix:
            parts.append("Fix: " + self.fix.rstrip(".") + ".")
        return " ".join(parts)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (drivers add context lines), or its type where it has none."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class TargetUnavailable(ClauseproofError):
    """A target kind that cannot run here (no Docker engine, say): its cases are skipped."""


class NotApplicable(ClauseproofError):
    """A case that does not apply to this target (it lacks the role or the profile declares nothing for it):
    raised by a capability, reported by the plugin as a skip with this reason (capabilities do not import pytest);
    ``text``: the reason as a catalog sentence (``clauseproof.core.i18n.msg``), for the report's language."""

    def __init__(self, what: str, *, checked: str = "", fix: str = "", text: Any = None) -> None:
        self.text = text
        super().__init__(what, checked=checked, fix=fix)
