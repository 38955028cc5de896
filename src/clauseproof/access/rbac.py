"""SX-EDAS-1: role-based access control, least privilege and tenant isolation, as a matrix.

Each cell of the matrix (``matrix.toml``, or a cloud profile's ``access_matrix``) names a subject (a user the harness
creates for the run, with one role in one project), an operation and what must happen: ``allowed`` or ``refused``.
The system under test plays :class:`~clauseproof.compute.roles.AccessControl`: it makes the subjects and tries each
operation as that subject through its own API.  The answer is judged by what happened, not by the status alone: an
operation on another project's server is *allowed* when the API answers with it (a read) or when the server is gone
afterwards (a delete), whatever the status code; a list is allowed when the other project's server is in it.

Least privilege needs a positive control: a matrix in which every cell is ``refused`` proves nothing, so at least one
``allowed`` cell must be in it and pass.  A cell the system could not try (an error that is neither an answer nor a
refusal) is NOT SHOWN, naming the error; a cell that went the wrong way is FAIL, naming the subject, the operation and
what the API did.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from clauseproof.compute.roles import AccessControl, Outcome
from clauseproof.core.errors import ClauseproofError
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import msg

CLAUSE = "SX-EDAS-1"
MATRIX = Path(__file__).with_name("matrix.toml")
EXPECT = ("allowed", "refused")


@dataclass(frozen=True)
class Cell:
    subject: str
    operation: str
    expect: str


def load_matrix(path: Path = MATRIX, known: tuple[str, ...] = ()) -> list[Cell]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ClauseproofError(
            f"cannot read the access matrix {path}: {exc}", fix="give a TOML file of [[cell]]s"
        ) from None
    cells = []
    for i, raw in enumerate(data.get("cell", []), 1):
        if not isinstance(raw, dict) or set(raw) != {"subject", "operation", "expect"}:
            raise ClauseproofError(f"{path}: cell {i} needs exactly subject, operation and expect")
        if raw["expect"] not in EXPECT:
            raise ClauseproofError(f"{path}: cell {i}: expect must be one of {EXPECT}, not {raw['expect']!r}")
        if known and raw["operation"] not in known:
            raise ClauseproofError(f"{path}: cell {i}: unknown operation {raw['operation']!r}",
                                   fix=f"the operations are: {', '.join(known)}")  # fmt: skip
        cells.append(Cell(raw["subject"], raw["operation"], raw["expect"]))
    if not cells:
        raise ClauseproofError(f"{path}: the matrix has no [[cell]]")
    return cells


def judge(cell: Cell, outcome: Outcome) -> tuple[bool | None, str]:
    """(verdict, why): None when the cell could not be tried."""
    if outcome.allowed is None:
        return None, outcome.detail
    if outcome.allowed == (cell.expect == "allowed"):
        return True, ""
    did = "was allowed" if outcome.allowed else "was refused"
    return False, f"{cell.subject} {did} to {cell.operation} (must be {cell.expect}): {outcome.detail}"


def check_matrix(system: AccessControl, run_id: str, evidence: CaseEvidence, matrix: Path | None = None) -> None:
    cells = load_matrix(matrix or MATRIX, system.access_operations())
    subjects = sorted({c.subject for c in cells})
    evidence.parameters(matrix=[vars(c) for c in cells], subjects=subjects)
    if not any(c.expect == "allowed" for c in cells):
        evidence.part(CLAUSE, False, statistic=msg("rbac_positive_control"), why=msg("rbac_all_refused"))
    try:
        made = system.access_subjects(run_id, subjects)
        evidence.parameters(subject_roles=made)
        results = []
        for cell in cells:
            outcome = system.access_try(run_id, cell.subject, cell.operation)
            ok, why = judge(cell, outcome)
            results.append({"cell": vars(cell), "allowed": outcome.allowed, "detail": outcome.detail})
            label = f"{cell.subject} ({made.get(cell.subject, '?')}): {cell.operation} → {cell.expect}"
            evidence.part(CLAUSE, ok, statistic=msg("rbac_cell", label=label, detail=outcome.detail), why=why,
                          not_shown=why if ok is None else "")  # fmt: skip
        evidence.parameters(results=results)
    finally:
        left = system.access_cleanup(run_id)
        if left:
            evidence.note(msg("note_not_deleted_matrix", left=left))
