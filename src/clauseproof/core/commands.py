"""Vendor commands from a target profile: templates whose placeholders the harness fills, shell-quoted."""

from __future__ import annotations

import shlex

from clauseproof.core.errors import ClauseproofError


def quoted_placeholders(template: str) -> list[str]:
    """Placeholders written inside quotes in a shell template: shell-quoting their value there would put it
    outside the quotes again (``"{user}"`` with a user ``$(rm -rf ~)`` runs it), so such templates are refused."""
    found: list[str] = []
    quote = ""
    i = 0
    while i < len(template):
        ch = template[i]
        if ch == "\\" and quote != "'":
            i += 2
            continue
        if quote and ch == quote:
            quote = ""
        elif not quote and ch in "'\"":
            quote = ch
        elif ch == "{" and quote:
            end = template.find("}", i)
            if end > i and template[i + 1 : end].isidentifier():
                found.append(template[i : end + 1])
        i += 1
    return found


def fill_command(template: str, **values: str | int) -> str:
    """A vendor command with its placeholders filled, each value shell-quoted (so a template must not quote them
    itself: such a template is refused)."""
    quoted = quoted_placeholders(template)
    if quoted:
        raise ClauseproofError(
            f"the vendor command {template!r} puts {', '.join(quoted)} inside quotes",
            checked="every placeholder is shell-quoted by the harness already",
            fix="write the placeholders without quotes around them, e.g. --user {user}",
        )
    try:
        return template.format(**{k: shlex.quote(str(v)) for k, v in values.items()})
    except KeyError as exc:
        raise ClauseproofError(
            f"the vendor command {template!r} uses the unknown placeholder {exc}",
            fix="use only {" + "}, {".join(sorted(values)) + "}",
        ) from None
