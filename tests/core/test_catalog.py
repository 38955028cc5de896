"""The clause catalog: complete, verbatim, and strict about its own data."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tomllib
from pathlib import Path

import pytest

from clauseproof.core.catalog import load_catalog, numbers_in
from clauseproof.core.errors import ClauseproofError
from tests.fix_targets import CATALOG

SEEDS = CATALOG.parent / "seeds"


def test_catalog_loads_and_quotes_seeds_verbatim() -> None:
    cat = load_catalog(CATALOG, seeds_dir=SEEDS)
    assert len(cat) >= 55
    for c in cat:
        assert c.text in (SEEDS / c.seed).read_text(encoding="utf-8"), c.id


def test_catalog_has_every_clause_named_in_clauses_md() -> None:
    cat = load_catalog(CATALOG)
    ids = {c.id for c in cat}
    named = {
        "BZ-DB-1",
        "BZ-DB-2",
        "BZ-DB-3",
        "BZ-DB-4a",
        "BZ-DB-4b",
        "BZ-DB-4c",
        "BZ-DB-4d",
        "BZ-DB-4e",
        "BZ-DB-4f",
        "BZ-SYNC-3",
        "BZ-SYNC-4",
        "BZ-SYNC-5",
        "BZ-SYNC-6",
        "BZ-SYNC-7",
        "SX-ECS-1",
        "SX-ECS-2",
        "SX-ECS-3",
        "SX-ECS-4",
        "SX-ECS-5",
        "SX-ECS-6a",
        "SX-ECS-6b",
        "SX-ECS-7",
        "SX-ECS-8",
        "SX-RDS-1",
        "SX-RDS-2a",
        "SX-RDS-2b",
        "SX-RDS-2c",
        "SX-RDS-3",
        "SX-RDS-4",
        "SX-RDS-5",
        "SX-RDS-6",
        "SX-EDAS-2",
        "SX-EDAS-3",
        "SX-EDAS-4",
        "SX-EDAS-5",
        "SX-SLA-1",
        "SX-SLA-2",
        "SX-SLA-3",
    }
    assert named <= ids, named - ids
    a = cat["BZ-DB-4a"]
    assert (a.metric, a.comparator, a.threshold, a.unit, a.params["rows"]) == ("duration", "<", 1.3, "s", 1_000_000)
    assert cat["SX-ECS-6a"].mark == "▲" and cat["SX-ECS-S1"].mark == "★"


def test_every_scored_and_mandatory_mark_in_the_seeds_is_catalogued() -> None:
    cat = load_catalog(CATALOG)
    sx = (SEEDS / "000_173234af87b156fa.txt").read_text(encoding="utf-8")
    # each ▲ in the technical and compatibility sections has an entry whose text starts there
    marked_texts = [c.text for c in cat if c.mark == "▲"]
    for m in re.finditer("▲", sx):
        line = sx[m.start() : sx.index("\n", m.start())]
        assert any(line[1:25] in t or t in line for t in marked_texts), line[:60]
    assert sum(1 for c in cat if c.mark == "★") == sx.count("★") + 1  # vCPU and memory are two clauses


def _write(tmp_path: Path, entry: str) -> Path:
    p = tmp_path / "clauses.toml"
    p.write_text(entry, encoding="utf-8")
    return p


GOOD = """
[[clause]]
id = "BZ-DB-4a"
seed = "003_5cfe79cb6c4a7f8b.txt"
section = "x"
text = "单表插入100万数据小于1.3秒"
summary = "s"
mark = "plain"
verification = "measured"
metric = "duration"
comparator = "<"
threshold = 1.3
unit = "s"
"""


def test_unit_that_does_not_match_metric_is_an_error_with_line(tmp_path: Path) -> None:
    p = _write(tmp_path, GOOD.replace('unit = "s"', 'unit = "rows/s"'))
    with pytest.raises(ClauseproofError) as exc:
        load_catalog(p)
    msg = str(exc.value)
    assert f"{p}:13" in msg and "unit 'rows/s' does not match metric 'duration'" in msg and "allowed: s, ms" in msg


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('mark = "plain"', 'mark = "*"'), "mark '*' is not one of"),
        (('comparator = "<"', 'comparator = "=<"'), "comparator '=<'"),
        (("threshold = 1.3", 'threshold = "fast"'), "threshold 'fast' is not a number"),
        (('metric = "duration"', 'metric = "speed"'), "metric 'speed' is not one of"),
        (('id = "BZ-DB-4a"', 'id = "bz4a"'), "does not follow the scheme"),
        (('text = "单表插入100万数据小于1.3秒"', 'text = "单表插入100万数据小于1秒"'), "not quoted exactly"),
        # a threshold eased away from the number its own quoted text states
        (("threshold = 1.3", "threshold = 13"), "threshold 13 is not a number its quoted text states (1e+06, 1.3)"),
    ],
)
def test_catalog_errors_name_the_problem(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    p = _write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ClauseproofError) as exc:
        load_catalog(p, seeds_dir=SEEDS)
    assert expected in str(exc.value)


def test_catalog_file_is_valid_toml_with_one_table_per_clause() -> None:
    data = tomllib.loads(CATALOG.read_text(encoding="utf-8"))
    ids = [c["id"] for c in data["clause"]]
    assert len(ids) == len(set(ids))


def test_numbers_stated_in_chinese_clauses() -> None:
    assert numbers_in("平均存储性能可达到80万条/秒以上") == [800000.0]
    assert numbers_in("批量创建30台虚拟机时间≤80秒") == [30.0, 80.0]


def _copy_catalog(folder: Path, seeds: bool) -> Path:
    folder.mkdir()
    (folder / "clauses.toml").write_text(
        CATALOG.read_text(encoding="utf-8").replace("Single-table insert", "Single table insert", 1), encoding="utf-8"
    )
    if seeds:
        shutil.copytree(SEEDS, folder / "seeds")
    return folder / "clauses.toml"


def test_a_catalog_without_its_seeds_is_refused(project: pytest.Pytester, tmp_path: Path) -> None:
    catalog = _copy_catalog(tmp_path / "custom", seeds=False)
    result = project.runpytest("suites/encryption", f"--cp-catalog={catalog}", "-k", "sm4_known_answers")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*has no seeds folder beside it*"])


def test_a_custom_catalog_is_recorded_by_hash_and_marked(project: pytest.Pytester, tmp_path: Path) -> None:
    catalog = _copy_catalog(tmp_path / "custom", seeds=True)
    project.runpytest("suites/encryption", f"--cp-catalog={catalog}", "-k", "test_sm4_known_answers")
    doc = json.loads((project.path / "results" / "latest" / "evidence.json").read_text())
    params = doc["parameters"]
    assert params["catalog_shipped"] is False
    assert params["catalog_sha256"] == hashlib.sha256(catalog.read_bytes()).hexdigest()
    assert all(r["reason"].startswith("judged against a custom catalog (sha256 ") for r in doc["clause_rows"])
