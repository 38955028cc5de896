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
    """The module a workload process is started as (``python -m``)."""
    return f"clauseproof.workloads.{name}"
