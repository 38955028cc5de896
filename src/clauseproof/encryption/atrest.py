"""At-rest encryption checks: random canaries written through the server, then found (or not)
in the raw bytes of its files, reported per file class.

Canaries are short and random (incompressible: a compressed long value would hide plaintext
and prove nothing).  All canaries of a run share a random 4-byte prefix, so one ``bytes.find``
pass per chunk finds candidates, which are then checked against each full canary.
"""

from __future__ import annotations

import fnmatch
import os
import secrets
import string
import time
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 8 << 20
_ALPHABET = (string.ascii_letters + string.digits).encode()

#: File classes per engine: name -> glob patterns relative to the data directory.
CLASSES: dict[str, dict[str, list[str]]] = {
    "postgresql": {
        "data files": ["base/*/[0-9]*", "global/[0-9]*"],
        "temporary files": ["base/pgsql_tmp/*", "base/*/t[0-9]*_[0-9]*"],
        "WAL": ["pg_wal/[0-9A-F]*"],
        "transaction status": ["pg_xact/*", "pg_multixact/*/*"],
    },
    "mysql": {
        "data files": ["*/*.ibd", "ibdata*", "*/*.MAD", "*/*.MAI", "*/*.MYD"],
        "temporary files": ["ibtmp*", "#sql*", "*/#sql*"],
        "redo log": ["ib_logfile*"],
        "undo log": ["undo[0-9]*"],
        "binary and relay logs": ["binlog.[0-9]*", "*-bin.[0-9]*", "*relay-bin.[0-9]*"],
        "Aria logs": ["aria_log.[0-9]*"],
    },
}


def make_canaries(n: int = 16) -> list[bytes]:
    """``n`` random 28-byte canaries sharing a random 4-byte prefix."""
    prefix = bytes(secrets.choice(_ALPHABET) for _ in range(4))
    return [prefix + bytes(secrets.choice(_ALPHABET) for _ in range(24)) for _ in range(n)]


@dataclass
class ScanResult:
    """Where each canary was found, by file class, and how fast the scan ran."""

    found: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # class -> canary -> files
    files: dict[str, int] = field(default_factory=dict)  # class -> files scanned
    bytes_scanned: int = 0
    seconds: float = 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes_scanned / 1e6 / self.seconds if self.seconds else 0.0

    def classes_with_plaintext(self) -> list[str]:
        return [c for c, hits in self.found.items() if hits]


def classify(root: Path, classes: dict[str, list[str]]) -> dict[str, list[Path]]:
    """Files below ``root`` by class; a file matching no pattern goes to "other files"."""
    out: dict[str, list[Path]] = {name: [] for name in classes}
    out["other files"] = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            for cls, patterns in classes.items():
                if any(fnmatch.fnmatch(rel, p) for p in patterns):
                    out[cls].append(path)
                    break
            else:
                out["other files"].append(path)
    return out


def scan_files(files: list[Path], canaries: list[bytes]) -> tuple[dict[str, list[str]], int]:
    """Which canaries occur in which files; and how many bytes were read."""
    prefix = canaries[0][:4]
    assert all(c[:4] == prefix for c in canaries)
    width = max(len(c) for c in canaries)
    wanted = set(canaries)
    hits: dict[str, list[str]] = {}
    total = 0
    for path in files:
        try:
            f = open(path, "rb")
        except OSError:
            continue
        with f:
            tail = b""
            while block := f.read(CHUNK):
                total += len(block)
                buf = tail + block
                i = buf.find(prefix)
                while i != -1:
                    candidate = buf[i : i + width]
                    if candidate in wanted:
                        hits.setdefault(candidate.decode(), [])
                        if str(path) not in hits[candidate.decode()]:
                            hits[candidate.decode()].append(str(path))
                    i = buf.find(prefix, i + 1)
                tail = buf[-(width - 1) :]
    return hits, total


def scan_tree(root: Path, classes: dict[str, list[str]], canaries: list[bytes]) -> ScanResult:
    """Scan every file below ``root``, class by class."""
    result = ScanResult()
    started = time.perf_counter()
    for cls, files in classify(root, classes).items():
        hits, n = scan_files(files, canaries)
        result.found[cls] = hits
        result.files[cls] = len(files)
        result.bytes_scanned += n
    result.seconds = time.perf_counter() - started
    return result
