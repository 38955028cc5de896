"""An archive someone else made is unpacked without trusting it (core/archive.py): only regular files and folders,
under the destination, with our modes; a link, a device, a FIFO, an absolute name or a ``..`` is named, never
written — on Debian 12's Python 3.11.2 too, which has no ``tarfile`` extraction filters."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

from clauseproof.core import archive


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o6777) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


def test_hostile_members_are_named_and_not_written(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    archive_path = _tar(tmp_path / "a.tar", [
        (_info("run/evidence.json"), b"{}"),
        (_info("run/sub", tarfile.DIRTYPE), b""),
        (_info("run/sub/x.txt"), b"x"),
        (_info("/etc/evil"), b"no"),
        (_info("run/../../outside"), b"no"),
        (_info("run/link", tarfile.SYMTYPE, "/etc/passwd"), b""),
        (_info("run/hard", tarfile.LNKTYPE, "run/evidence.json"), b""),
        (_info("run/dev", tarfile.CHRTYPE), b""),
        (_info("run/fifo", tarfile.FIFOTYPE), b""),
    ])  # fmt: skip
    dest = tmp_path / "dest"
    dest.mkdir()
    with tarfile.open(archive_path) as tar:
        refused = archive.extract(tar, dest)
    assert (dest / "run/evidence.json").read_bytes() == b"{}" and (dest / "run/sub/x.txt").read_bytes() == b"x"
    assert stat.S_IMODE((dest / "run/evidence.json").stat().st_mode) == 0o600  # no setuid, nothing for others
    assert len(refused) == 6, refused
    assert not outside.exists() and not (dest / "run/link").exists() and not (dest / "run/dev").exists()
    text = "\n".join(refused)
    assert "a link" in text and "special file" in text and "outside the archive" in text


def test_verify_names_a_link_inside_an_archive(tmp_path: Path) -> None:
    from clauseproof.cli import main

    archive_path = _tar(tmp_path / "b.tar", [(_info("run/manifest.json"), b"{}"),
                                             (_info("run/link", tarfile.SYMTYPE, "/etc/shadow"), b"")])  # fmt: skip
    assert main(["verify", str(archive_path), "--fingerprint", "SHA256:" + "0" * 64]) == 1
