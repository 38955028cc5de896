"""The import direction of docs/architecture.md, enforced: every ``import`` of the package (function-level ones too)
points down the layers, never from the targets into a capability's checks, never from the core into a target."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "clauseproof"

#: Layer of each top-level part of the package; a module may import its own layer and the ones below.
LAYERS = {
    "core": 0,
    "targets": 1,
    "backup": 2,
    "bulk_load": 2,
    "compute": 2,
    "failover": 2,
    "encryption": 2,
    "load": 2,
    "online_ddl": 2,
    "replication": 2,
    "sync": 2,
    "gateway": 2,
    "sla": 2,
    "run": 3,
    "cli": 3,
    "__init__": 0,
}
NAMES = {0: "core", 1: "targets", 2: "capabilities", 3: "run"}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("clauseproof")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("clauseproof"):
            if node.module == "clauseproof":  # from clauseproof import core, __version__
                out += [(node.lineno, f"clauseproof.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, node.module))
    return out


def violations(package: Path = PACKAGE) -> list[str]:
    bad = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent)
        own = _part(".".join(rel.with_suffix("").parts))
        assert own in LAYERS, f"{rel}: a new top-level part of the package: give it a layer in {__file__}"
        for line, module in _imports(path):
            other = _part(module)
            if other == "__version__":
                continue
            assert other in LAYERS, f"{rel}:{line}: imports {module}, which has no layer"
            if LAYERS[other] > LAYERS[own]:
                bad.append(
                    f"{rel}:{line}: {NAMES[LAYERS[own]]} ({own}) imports {module} from a layer above "
                    f"({NAMES[LAYERS[other]]})"
                )
    return bad


def test_imports_point_down_the_layers() -> None:
    assert violations() == []


def test_the_check_sees_upward_imports(tmp_path: Path) -> None:
    """The check is no fake: a target importing a capability, and a function-level import from the core into
    the targets, are both found."""
    pkg = tmp_path / "clauseproof"
    (pkg / "targets").mkdir(parents=True)
    (pkg / "core").mkdir()
    (pkg / "targets" / "external.py").write_text("from clauseproof.encryption.colcrypt import parse\n")
    (pkg / "core" / "report.py").write_text("def f():\n    import clauseproof.targets.base\n")
    found = violations(pkg)
    assert len(found) == 2
    assert "targets (targets) imports clauseproof.encryption.colcrypt" in found[1]
    assert "core (core) imports clauseproof.targets.base" in found[0]
