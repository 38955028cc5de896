"""The data generator: deterministic, canonical, chunk-independent; the digest and the cache."""

from __future__ import annotations

import re
from pathlib import Path

from clauseproof.bulk_load.datasets import ensure_dataset
from clauseproof.core.digest import Digest, combine, digest_lines
from clauseproof.workloads import settlement

ROW = re.compile(
    rb"^[1-9]\d*\t[1-9]\d{11}\tH61\d{9}\t[A-Z]\d{2}\.\d{3}\t(310|390|510)\t(0|[1-9]\d*)\.\d{2}\t"
    rb"(0|[1-9]\d*)\.\d{2}\t(0|[1-9]\d*)\.\d{2}\t202[45]-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"
)


def test_rows_are_canonical_and_consistent() -> None:
    text = settlement.generate_chunk(7, 0, 5000)
    lines = text.split(b"\n")[:-1]
    assert len(lines) == 5000
    for i, line in enumerate(lines, 1):
        assert ROW.match(line), line
        cols = line.split(b"\t")
        assert int(cols[0]) == i
        total, fund, own = (round(float(c) * 100) for c in cols[5:8])
        assert fund + own == total and fund <= total
        _, m, d = (int(x) for x in cols[8][:10].split(b"-"))
        assert 1 <= m <= 12 and 1 <= d <= 31


def test_leading_zero_amounts_are_canonical() -> None:
    text = settlement.generate_chunk(7, 0, 200_000)
    assert re.search(rb"\t0\.\d\d\t", text), "amounts below 1.00 should print as 0.xx"
    assert not re.search(rb"\t0\d", text), "no field may have a leading zero"


def test_deterministic_and_chunk_independent() -> None:
    whole = settlement.generate_chunk(11, 0, 3000)
    assert whole == settlement.generate_chunk(11, 0, 3000)
    assert whole == settlement.generate_chunk(11, 0, 1234) + settlement.generate_chunk(11, 1234, 1766)
    assert whole != settlement.generate_chunk(12, 0, 3000)


def test_digest_catches_changed_missing_and_duplicated_rows() -> None:
    text = settlement.generate_chunk(3, 0, 1000)
    lines = text.split(b"\n")[:-1]
    base = digest_lines(text)
    assert base.count == 1000
    changed = lines.copy()
    changed[500] = changed[500].replace(b"\t310\t", b"\t390\t") if b"\t310\t" in changed[500] else changed[500] + b"0"
    missing = lines[:-1]
    duplicated = [*lines, lines[10]]
    swapped = lines.copy()
    swapped[1], swapped[2] = swapped[2], swapped[1]  # same set of rows: the digest is order-free
    for variant in (changed, missing, duplicated):
        assert digest_lines(b"\n".join(variant) + b"\n") != base
    assert digest_lines(b"\n".join(swapped) + b"\n") == base
    assert (
        combine([digest_lines(b"\n".join(lines[:300]) + b"\n"), digest_lines(b"\n".join(lines[300:]) + b"\n")]) == base
    )
    assert digest_lines(b"") == Digest(0, 0)


def test_dataset_cache_reuse(tmp_path: Path) -> None:
    first = ensure_dataset(settlement, 300_000, 5, tmp_path)
    assert not first.from_cache
    assert first.path.stat().st_size == first.size_bytes
    assert first.digest == digest_lines(first.path.read_bytes())
    again = ensure_dataset(settlement, 300_000, 5, tmp_path)
    assert again.from_cache and again.sha256 == first.sha256 and again.digest == first.digest
    # a truncated file is not taken for a finished one
    with open(first.path, "r+b") as f:
        f.truncate(100)
    regenerated = ensure_dataset(settlement, 300_000, 5, tmp_path)
    assert not regenerated.from_cache and regenerated.sha256 == first.sha256
