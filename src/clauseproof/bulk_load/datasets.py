"""Deterministic data sets, generated once per (workload, rows, seed) and cached on disk.

A workload module provides ``NAME``, ``COLUMNS``, ``KEY``, ``GENERATOR_VERSION`` and
``generate_chunk(seed, start, count) -> bytes``.  Chunks are generated and digested in worker
processes (one per core) and written in order to ``data.tsv``; ``meta.json`` holds the row
count, size, SHA-256 and content digest and is written last, so a crashed generation is never
taken for a finished one.  Generation never runs inside a timed window.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

from clauseproof.core.digest import Digest, combine, digest_lines

CHUNK_ROWS = 262_144


@dataclass(frozen=True)
class Dataset:
    """A generated data file and what is known about it."""

    workload: str
    rows: int
    seed: int
    generator_version: int
    columns: tuple[str, ...]
    key: str
    path: Path
    size_bytes: int
    sha256: str
    digest_count: int
    digest_total: int
    generation_seconds: float
    from_cache: bool

    @property
    def digest(self) -> Digest:
        return Digest(self.digest_count, self.digest_total)

    @property
    def row_width_bytes(self) -> float:
        """Average bytes per row in the file (text form, including separators)."""
        return self.size_bytes / self.rows if self.rows else 0.0

    def evidence(self) -> dict[str, object]:
        d = asdict(self)
        d["path"] = str(self.path)
        d["row_width_bytes"] = round(self.row_width_bytes, 2)
        return d


def _chunk(module_name: str, seed: int, start: int, count: int) -> tuple[bytes, Digest]:
    module = importlib.import_module(module_name)
    data: bytes = module.generate_chunk(seed, start, count)
    return data, digest_lines(data)


def ensure_dataset(
    workload: ModuleType,
    rows: int,
    seed: int,
    cache_dir: Path,
    *,
    progress: Callable[[str], None] | None = None,
    workers: int | None = None,
) -> Dataset:
    """Return the cached data set, generating it first if needed."""
    name = f"{workload.NAME}-v{workload.GENERATOR_VERSION}-rows{rows}-seed{seed}"
    folder = cache_dir / "data" / name
    folder.mkdir(parents=True, exist_ok=True)
    meta_path = folder / "meta.json"
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached = _read_meta(meta_path, folder / "data.tsv")
        if cached is not None:
            return cached
        started = time.perf_counter()
        tmp = folder / f"data.tsv.tmp{os.getpid()}"
        sha = hashlib.sha256()
        parts: list[Digest] = []
        size = 0
        starts = list(range(0, rows, CHUNK_ROWS))
        n_workers = max(1, min(workers or os.cpu_count() or 1, len(starts)))
        with open(tmp, "wb") as out, ProcessPoolExecutor(max_workers=n_workers) as pool:
            futures = [pool.submit(_chunk, workload.__name__, seed, s, min(CHUNK_ROWS, rows - s)) for s in starts]
            for i, fut in enumerate(futures):
                data, dig = fut.result()
                out.write(data)
                sha.update(data)
                parts.append(dig)
                size += len(data)
                if progress and (i % 4 == 3 or i == len(futures) - 1):
                    progress(f"generating {workload.NAME}: {min((i + 1) * CHUNK_ROWS, rows):,} of {rows:,} rows")
        os.replace(tmp, folder / "data.tsv")
        total = combine(parts)
        ds = Dataset(
            workload=workload.NAME,
            rows=rows,
            seed=seed,
            generator_version=workload.GENERATOR_VERSION,
            columns=tuple(workload.COLUMNS),
            key=workload.KEY,
            path=folder / "data.tsv",
            size_bytes=size,
            sha256=sha.hexdigest(),
            digest_count=total.count,
            digest_total=total.total,
            generation_seconds=round(time.perf_counter() - started, 3),
            from_cache=False,
        )
        meta = ds.evidence()
        meta_path.write_text(json.dumps(meta, indent=2))
        return ds


def _read_meta(meta_path: Path, data_path: Path) -> Dataset | None:
    try:
        meta = json.loads(meta_path.read_text())
        if data_path.stat().st_size != meta["size_bytes"]:
            return None
        return Dataset(
            workload=meta["workload"],
            rows=meta["rows"],
            seed=meta["seed"],
            generator_version=meta["generator_version"],
            columns=tuple(meta["columns"]),
            key=meta["key"],
            path=data_path,
            size_bytes=meta["size_bytes"],
            sha256=meta["sha256"],
            digest_count=meta["digest_count"],
            digest_total=meta["digest_total"],
            generation_seconds=meta["generation_seconds"],
            from_cache=True,
        )
    except (OSError, ValueError, KeyError):
        return None
