"""BZ-DB-4a–4d: single-table insert and single-table import of settlement rows.

Each load is repeated ``--cp-repeats`` times into an empty table.  Before each repeat, outside
the timed window: TRUNCATE and (PostgreSQL) CHECKPOINT, so every repeat starts from the same
state.  After each repeat, also outside the window: the row count and the content digest of
the table are computed on the server and must equal those of the generated data.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from clauseproof.bulk_load.datasets import Dataset
from clauseproof.core.catalog import Catalog
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import msg
from clauseproof.core.settings import Settings
from clauseproof.targets import Target
from clauseproof.workloads import settlement


def _timed_loads(
    *,
    target: Target,
    benchmark: Any,
    evidence: CaseEvidence,
    ds: Dataset,
    ddl_dir: Path,
    table: str,
    source: str,
    repeats: int,
    wrong: list[str],
) -> list[float]:
    """The loads' seconds; a load whose content check finds a difference is named in ``wrong`` (judged FAIL)."""
    if getattr(benchmark, "disabled", False):
        pytest.fail(
            "timed cases need pytest-benchmark enabled: do not pass --benchmark-disable and do not "
            "run acceptance suites under pytest-xdist",
            pytrace=False,
        )
    conn = target.connect()
    try:
        ddl = target.create_table(conn, ddl_dir, settlement.NAME, table)
        data = ds.path.read_bytes() if (source == "memory" and target.dialect == "postgresql") else None
        checkpoint = target.dialect == "postgresql"
        checks: list[str] = []

        def setup() -> None:
            target.truncate(conn, table)
            if checkpoint:
                try:
                    with conn.cursor() as cur:
                        cur.execute("CHECKPOINT")
                except Exception as exc:  # a non-superuser on an external target
                    evidence.note(msg("note_no_checkpoint", error=str(exc)))
                    conn.rollback() if not conn.autocommit else None

        def load() -> None:
            target.bulk_load(conn, table, ds.columns, data=data, path=None if data is not None else ds.path)

        def verify() -> None:
            got = target.digest(conn, table, ds.columns)
            if got != ds.digest:  # a difference found is a FAIL of the clause, never an error of the case
                wrong.append(
                    f"the content check after load {len(checks) + 1} into {table} found the table holding {got}, "
                    f"the generated data {ds.digest}"
                )
            checks.append(str(got))

        benchmark.pedantic(load, setup=setup, teardown=verify, rounds=repeats, iterations=1)
        samples = [float(x) for x in benchmark.stats.stats.data]
        evidence.parameters(
            workload=settlement.NAME,
            table=table,
            rows=ds.rows,
            row_width_bytes=round(ds.row_width_bytes, 2),
            data_bytes=ds.size_bytes,
            seed=ds.seed,
            data_sha256=ds.sha256,
            data_cached=ds.from_cache,
            generation_seconds=ds.generation_seconds,
            ddl=ddl.strip(),
            client_parallelism=1,
            load_path=target.load_path(source),
            repeats=repeats,
            untimed_before_each_repeat="TRUNCATE" + (", CHECKPOINT" if checkpoint else ""),
            untimed_after_each_repeat="row count and content digest computed on the server, compared with "
            "those of the generated data",
            content_checks=checks,
        )
        evidence.window(
            msg("win_bulk_load", path=target.load_path(source), rows=f"{ds.rows:,}", bytes=f"{ds.size_bytes:,}")
        )
        return samples
    finally:
        conn.close()


def _load_case(
    target: Target,
    benchmark: Any,
    evidence: CaseEvidence,
    ds: Dataset,
    ddl_dir: Path,
    repeats: int,
    *,
    table: str,
    source: str,
    duration: str,
    rate: str,
    noun: str,
) -> None:
    """Time the loads, then judge the duration clause on the median load and the rate clause on total rows
    over total seconds; a load that lost or changed rows makes both FAIL, whatever the time."""
    wrong: list[str] = []
    samples = _timed_loads(
        target=target,
        benchmark=benchmark,
        evidence=evidence,
        ds=ds,
        ddl_dir=ddl_dir,
        table=table,
        source=source,
        repeats=repeats,
        wrong=wrong,
    )
    n = len(samples)
    differs = "; ".join(wrong[:3]) + (f" (and {len(wrong) - 3} more loads)" if len(wrong) > 3 else "")
    median = msg(f"median_of_{noun}", n=n)
    evidence.measure(
        duration, statistics.median(samples), "s", statistic=median, samples=samples, sample_unit="s", wrong=differs
    )
    evidence.measure(
        rate,
        ds.rows * n / sum(samples),
        "rows/s",
        statistic=msg(f"average_rate_{noun}", n=n, rows=f"{ds.rows:,}"),
        samples=[ds.rows / s for s in samples],
        sample_unit="rows/s",
        wrong=differs,
    )
    evidence.require_pass()


@pytest.mark.clause("BZ-DB-4a", "BZ-DB-4b")
def test_single_table_insert(
    target: Target,
    benchmark: Any,
    evidence: CaseEvidence,
    dataset: Callable[[ModuleType, int], Dataset],
    scaled: Callable[[int], int],
    clause_catalog: Catalog,
    cp_settings: Settings,
    ddl_dir: Path,
) -> None:
    """Insert 1,000,000 pre-generated rows into one empty table (BZ-DB-4a) and their rate (BZ-DB-4b)."""
    rows = scaled(int(clause_catalog["BZ-DB-4a"].params["rows"]))
    _load_case(
        target,
        benchmark,
        evidence,
        dataset(settlement, rows),
        ddl_dir,
        cp_settings.repeats,
        table="settlement_insert",
        source="memory",
        duration="BZ-DB-4a",
        rate="BZ-DB-4b",
        noun="loads",
    )


@pytest.mark.clause("BZ-DB-4c", "BZ-DB-4d")
def test_single_table_import(
    target: Target,
    benchmark: Any,
    evidence: CaseEvidence,
    dataset: Callable[[ModuleType, int], Dataset],
    scaled: Callable[[int], int],
    clause_catalog: Catalog,
    cp_settings: Settings,
    ddl_dir: Path,
) -> None:
    """Import 2,000,000 rows from a file on the client into one table (BZ-DB-4c) and their rate (BZ-DB-4d)."""
    rows = scaled(int(clause_catalog["BZ-DB-4c"].params["rows"]))
    _load_case(
        target,
        benchmark,
        evidence,
        dataset(settlement, rows),
        ddl_dir,
        cp_settings.repeats,
        table="settlement_import",
        source="file",
        duration="BZ-DB-4c",
        rate="BZ-DB-4d",
        noun="imports",
    )
