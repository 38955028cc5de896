"""What the evidence records of the client machine and the harness itself."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "clauseproof",
    "pytest",
    "pytest-benchmark",
    "psycopg",
    "psycopg-binary",
    "PyMySQL",
    "numpy",
    "SQLAlchemy",
    "testcontainers",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "CPU part")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _os_name() -> str:
    try:
        rel = platform.freedesktop_os_release()
        return rel.get("PRETTY_NAME", rel.get("NAME", "Linux"))
    except OSError:
        return f"{platform.system()} {platform.release()}"


def client_environment() -> dict[str, Any]:
    """Hardware, OS, Python and package versions of the machine running the harness."""
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            continue
    return {
        "hostname": platform.node(),
        "cpu_model": _cpu_model(),
        "architecture": platform.machine(),
        "cores": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "packages": versions,
    }


def commit_info(root: Path) -> dict[str, Any]:
    """The harness checkout's commit and whether it had uncommitted changes."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=5, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}
