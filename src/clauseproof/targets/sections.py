"""Profile sections that belong to a capability, parsed by that capability.

A profile describes a vendor's system; most of it is the target's (``[target]``, ``[server]``,
``[commands]``, ``[replication]``), and those are read in :mod:`clauseproof.targets.single.external`.
A section that only one capability understands (``[column_encryption]``, read by the column
encryption checks) is declared by that capability as an entry point of the group
``clauseproof.sections`` in ``pyproject.toml``, naming a :class:`Section`.  The targets load the
group by name and never import a capability: the capability depends on the targets, not the
other way round.  A new capability adds its section with one entry point line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from clauseproof.core.errors import ClauseproofError

GROUP = "clauseproof.sections"


@dataclass(frozen=True)
class Section:
    """A profile section: its keys with their types, and the parser that validates it."""

    name: str
    keys: dict[str, type | tuple[type, ...]]
    #: ``parse(body, err)``: the section's value for the profile (None when absent); ``err(section, key, msg,
    #: fix)`` makes the error that names the profile's file and line.
    parse: Callable[[dict[str, Any], Any], Any]


@functools.cache
def registered() -> dict[str, Section]:
    """Every capability's profile section, by name (loaded once)."""
    out: dict[str, Section] = {}
    for ep in entry_points(group=GROUP):
        section = ep.load()
        if not isinstance(section, Section) or section.name != ep.name:
            raise ClauseproofError(
                f"the entry point {ep.name} = {ep.value} of {GROUP} is not a Section named {ep.name!r}",
                fix="correct the entry point in pyproject.toml and reinstall (./run does)",
            )
        out[ep.name] = section
    return out
