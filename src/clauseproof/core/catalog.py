"""The clause catalog: data read from ``src/clauseproof/catalog/clauses.toml``, validated once."""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clauseproof.core.errors import ClauseproofError
from clauseproof.core.units import COMPARATORS, METRIC_UNITS, units_for

MARKS = ("★", "▲", "plain")
VERIFICATIONS = ("measured", "api", "document")
#: How a clause's parts on one target roll up to its verdict there: "all" (default) every part must pass;
#: "any" one part (one backup method, say) passing suffices, the others are informational.
ROLLUPS = ("all", "any")
ID_PATTERN = re.compile(r"^(BZ|SX)-[A-Z]+-[A-Z0-9]+[a-z]?$")
_REQUIRED = (
    "id",
    "seed",
    "section",
    "text",
    "summary",
    "mark",
    "verification",
    "metric",
    "comparator",
    "threshold",
    "unit",
)


@dataclass(frozen=True)
class Clause:
    """One clause of a procurement document, with its verdict rule."""

    id: str
    seed: str
    section: str
    text: str
    summary: str
    mark: str
    verification: str
    metric: str
    comparator: str
    threshold: float | bool
    unit: str
    params: dict[str, Any] = field(default_factory=dict)
    rollup: str = "all"

    def rule(self) -> str:
        """The verdict rule in words, e.g. ``< 1.3 s``."""
        if self.metric == "capability":
            return "supported"
        return f"{self.comparator} {self.threshold:,g} {self.unit}"


@dataclass(frozen=True)
class Catalog:
    """All clauses, by id, in file order."""

    path: Path
    clauses: dict[str, Clause]
    #: SHA-256 of the bytes read (not of the file at some later time)
    sha256: str = ""

    def __getitem__(self, clause_id: str) -> Clause:
        return self.clauses[clause_id]

    def __contains__(self, clause_id: object) -> bool:
        return clause_id in self.clauses

    def __iter__(self) -> Iterator[Clause]:
        return iter(self.clauses.values())

    def __len__(self) -> int:
        return len(self.clauses)


def _line_of(text: str, clause_id: str, key: str) -> int:
    """Best-effort line number of ``key`` inside the table of ``clause_id``."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if re.match(rf'\s*id\s*=\s*"{re.escape(clause_id)}"', ln)), None)
    if start is None:
        return 0
    for i in range(start, len(lines)):
        if i > start and lines[i].strip() == "[[clause]]":
            break
        if re.match(rf"\s*{re.escape(key)}\s*=", lines[i]):
            return i + 1
    return start + 1


_NUMBER = re.compile(r"(\d+(?:\.\d+)?)\s*(万|亿)?")


def numbers_in(text: str) -> list[float]:
    """The numbers a clause's text states, with 万 (10^4) and 亿 (10^8) applied: "80万条/秒" gives 800000."""
    scale = {"万": 1e4, "亿": 1e8}
    return [float(m.group(1)) * scale.get(m.group(2) or "", 1.0) for m in _NUMBER.finditer(text)]


def catalog_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_catalog(path: Path, *, seeds_dir: Path | None = None) -> Catalog:
    """Read and validate the catalog; every problem is reported with its file and line."""
    try:
        raw_text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ClauseproofError(
            f"cannot read the clause catalog {path}: {exc.strerror}",
            checked="the --cp-catalog option, the clauseproof_catalog ini key and CLAUSEPROOF_CATALOG",
            fix="point one of them at src/clauseproof/catalog/clauses.toml of a clauseproof checkout",
        ) from None
    try:
        data = tomllib.loads(raw_text)
    except tomllib.TOMLDecodeError as exc:
        raise ClauseproofError(
            f"the clause catalog {path} is not valid TOML: {exc}", fix="correct the line named"
        ) from None
    entries = data.get("clause")
    if not isinstance(entries, list) or not entries:
        raise ClauseproofError(
            f"the clause catalog {path} has no [[clause]] tables", fix="add one [[clause]] table per clause"
        )
    problems: list[str] = []
    clauses: dict[str, Clause] = {}
    for n, entry in enumerate(entries, 1):
        cid = str(entry.get("id", f"#{n}"))

        def bad(key: str, msg: str, cid: str = cid) -> None:
            problems.append(f"{path}:{_line_of(raw_text, cid, key)}: clause {cid}: {msg}")

        before = len(problems)
        missing = [k for k in _REQUIRED if k not in entry]
        if missing:
            bad("id", f"missing key(s) {', '.join(missing)}")
            continue
        unknown = sorted(set(entry) - set(_REQUIRED) - {"params", "rollup"})
        if unknown:
            bad(unknown[0], f"unknown key(s) {', '.join(unknown)}")
        if not ID_PATTERN.match(cid):
            bad("id", f"id {cid!r} does not follow the scheme BZ-AREA-N / SX-AREA-N")
        if cid in clauses:
            bad("id", "duplicate id")
        if entry["mark"] not in MARKS:
            bad("mark", f"mark {entry['mark']!r} is not one of {', '.join(MARKS)}")
        if entry["verification"] not in VERIFICATIONS:
            bad("verification", f"verification {entry['verification']!r} is not one of {', '.join(VERIFICATIONS)}")
        metric, unit, comp, thr = entry["metric"], entry["unit"], entry["comparator"], entry["threshold"]
        if metric not in METRIC_UNITS:
            bad("metric", f"metric {metric!r} is not one of {', '.join(METRIC_UNITS)}")
        elif unit not in METRIC_UNITS[metric]:
            bad("unit", f"unit {unit!r} does not match metric {metric!r} (allowed: {', '.join(units_for(metric))})")
        if comp not in COMPARATORS:
            bad("comparator", f"comparator {comp!r} is not one of {' '.join(COMPARATORS)}")
        if metric == "capability":
            if thr is not True or comp != "==":
                bad("threshold", 'a capability clause needs comparator "==" and threshold = true')
        elif isinstance(thr, bool) or not isinstance(thr, (int, float)):
            bad("threshold", f"threshold {thr!r} is not a number")
        if entry.get("rollup", "all") not in ROLLUPS:
            bad("rollup", f"rollup {entry['rollup']!r} is not one of {', '.join(ROLLUPS)}")
        params = entry.get("params", {})
        if not isinstance(params, dict):
            bad("params", "params must be an inline table")
            params = {}
        if seeds_dir is not None:
            seed_path = seeds_dir / entry["seed"]
            if not seed_path.is_file():
                bad("seed", f"seed file {seed_path} does not exist")
            elif entry["text"] not in seed_path.read_text(encoding="utf-8"):
                bad("text", f"text is not quoted exactly from {entry['seed']}")
        if metric != "capability" and isinstance(thr, int | float) and not isinstance(thr, bool):
            stated = numbers_in(str(entry["text"]))
            if not any(math.isclose(float(thr), n) for n in stated):
                bad(
                    "threshold",
                    f"threshold {thr:g} is not a number its quoted text states ({', '.join(f'{n:g}' for n in stated)})",
                )
        if len(problems) > before:
            continue
        clauses[cid] = Clause(
            id=cid,
            seed=entry["seed"],
            section=entry["section"],
            text=entry["text"],
            summary=entry["summary"],
            mark=entry["mark"],
            verification=entry["verification"],
            metric=metric,
            comparator=comp,
            threshold=thr if isinstance(thr, bool) else float(thr),
            unit=unit,
            params=dict(params),
            rollup=entry.get("rollup", "all"),
        )
    if problems:
        raise ClauseproofError(
            "the clause catalog has errors:\n  " + "\n  ".join(problems),
            checked=f"every [[clause]] in {path}",
            fix="correct the keys named; metrics and their units are listed in src/clauseproof/core/units.py",
        )
    return Catalog(path=path, clauses=clauses, sha256=hashlib.sha256(raw_text.encode("utf-8")).hexdigest())
