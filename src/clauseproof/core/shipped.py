"""What the package ships beside its code (``importlib.resources``): the clause catalog and the tender documents,
the per-dialect DDL, the workloads the harness starts as processes, the Dockerfiles.  Nothing here needs the
checkout: an installed wheel finds them in its own folder."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: The installed package's folder (a real folder: the package is never run from a zip).
PACKAGE = Path(str(resources.files("clauseproof")))
CATALOG = PACKAGE / "catalog" / "clauses.toml"
DDL = PACKAGE / "ddl"
WORKLOADS = PACKAGE / "workloads"


def workload_module(name: str) -> str:
    """The module a workload process is started as (``python -m``); ``name`` is a module of
    ``clauseproof.workloads`` that exists (a file name such as ``"x.py"`` had started a process that died at once
    with "No module named", seen only as a later failure of its case)."""
    if not name.isidentifier() or not (WORKLOADS / f"{name}.py").is_file():
        raise ValueError(f"{name!r} is not a module of clauseproof.workloads (give its module name, without .py)")
    return f"clauseproof.workloads.{name}"
