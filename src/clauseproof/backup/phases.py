"""Backup and restore building blocks: work folders and the files a tool writes, beside the timed commands
(:func:`timed`, :func:`vendor_command`, from :mod:`clauseproof.core.commands`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from clauseproof.core.commands import Phase, timed, vendor_command
from clauseproof.targets.host.folders import FOLDER_PREFIX, open_for, server_folder_base

__all__ = ["Phase", "WorkFolder", "open_for", "size_of", "timed", "vendor_command", "written"]


def size_of(path: Path) -> int:
    """Bytes of a file or of every file below a folder."""
    return written(path)[0]


def written(path: Path) -> tuple[int, int]:
    """Bytes and files of a file or of every file below a folder (0, 0 when there is nothing)."""
    if path.is_file():
        return path.stat().st_size, 1
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    return sum(p.stat().st_size for p in files), len(files)


class WorkFolder:
    """A temporary folder for backups and archives, reaped like an embedded server if the run dies."""

    def __init__(self, label: str, owner: str | None = None) -> None:
        # 0700, owned by the server's user where the harness runs as root: backups and dumps of the data are
        # for the run only (another local user could otherwise read base.tar or a dump)
        self.path = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}work-{label}-", dir=server_folder_base(owner)))
        (self.path / "owner.json").write_text(json.dumps({"pid": os.getpid(), "engine": "work"}))
        if owner and os.geteuid() == 0:
            shutil.chown(self.path, user=owner)
        self.path.chmod(0o700)
        self.owner = owner

    def sub(self, name: str, *, owned: bool = False) -> Path:
        p = self.path / name
        p.mkdir(parents=True, exist_ok=True)
        if owned and self.owner:
            shutil.chown(p, user=self.owner)
        return p

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
