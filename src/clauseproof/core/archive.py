"""Unpacking a tar archive someone else made (a bundle sent for verification, a container's files) without trusting
it: only regular files and folders are written, under the destination, with modes of our choosing; every other
member — a link, a device, a FIFO, an absolute name, a ``..`` — is not written and is named instead.

Python's own extraction filters (``filter="data"``) arrived in 3.11.4 and Debian 12's Python is 3.11.2, so this does
the same by hand: names checked, bytes copied from ``extractfile``, nothing of the archive's owner or permissions
kept (files 0600, folders 0700).
"""

from __future__ import annotations

import os
import shutil
import tarfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath


def _relative(name: str) -> PurePosixPath | None:
    path = PurePosixPath(name)
    parts = [p for p in path.parts if p not in ("", ".")]
    if path.is_absolute() or ".." in parts or not parts:
        return None
    return PurePosixPath(*parts)


def extract(tar: tarfile.TarFile, dest: Path, members: Iterable[tarfile.TarInfo] | None = None) -> list[str]:
    """Write the regular files and folders of ``tar`` (or of ``members``, for a stream) under ``dest``; return a
    sentence for each member not written and why."""
    refused: list[str] = []
    root = dest.resolve()
    for m in members if members is not None else tar:
        rel = _relative(m.name)
        if rel is None:
            refused.append(f"{m.name!r}: a name outside the archive's folder")
            continue
        if not (m.isfile() or m.isdir()):
            kind = "link" if (m.issym() or m.islnk()) else "special file"
            refused.append(f"{m.name}: a {kind}, not unpacked")
            continue
        target = root.joinpath(*rel.parts)
        parent = target.parent
        if any(p.is_symlink() for p in [parent, *parent.parents] if p.is_relative_to(root)):
            refused.append(f"{m.name}: under a link")
            continue
        if m.isdir():
            target.mkdir(mode=0o700, parents=True, exist_ok=True)
            continue
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        source = tar.extractfile(m)
        if source is None:
            refused.append(f"{m.name}: unreadable")
            continue
        with source, open(target, "wb", opener=lambda p, f: os.open(p, f, 0o600)) as out:
            shutil.copyfileobj(source, out, 1 << 20)
    return refused
