"""The checks of SX-RDS-6 (online schema and data change): the changes of each engine, and what must hold
after them (original columns unchanged, no invalid index, every change made, an impossible lock-free
algorithm refused).  The case in ``suites/online_ddl`` runs them around its timed windows."""

from __future__ import annotations

from typing import Any

from clauseproof.core.digest import digest_sql
from clauseproof.core.i18n import Text, msg
from clauseproof.targets.base import Target

#: The settlement table's columns as loaded: the change must leave them as they were.
ORIGINAL = ("settlement_id", "patient_id", "hospital_code", "total_amount", "settled_at")


def original_digest(conn: Any, target: Target, schema: str, upto: int) -> tuple[int, int]:
    table = f"(SELECT {', '.join(ORIGINAL)} FROM {schema}.oltp_settlement WHERE settlement_id <= {upto}) AS d"
    with conn.cursor() as cur:
        cur.execute(digest_sql(target.dialect, table, ORIGINAL))
        n, total = cur.fetchone()
    return int(n), int(total)


def steps(dialect: str, s: str) -> list[tuple[str, list[str]]]:
    if dialect == "postgresql":
        return [
            ("add column", [f"ALTER TABLE {s}.oltp_settlement ADD COLUMN note varchar(40)"]),
            (
                "add index",
                [f"CREATE INDEX CONCURRENTLY ix_settlement_patient ON {s}.oltp_settlement (patient_id, settled_at)"],
            ),
        ]
    return [
        ("add column", [f"ALTER TABLE {s}.oltp_settlement ADD COLUMN note varchar(40), ALGORITHM=INSTANT, LOCK=NONE"]),
        (
            "add index",
            [
                f"ALTER TABLE {s}.oltp_settlement ADD INDEX ix_settlement_patient (patient_id, settled_at), "
                "ALGORITHM=INPLACE, LOCK=NONE"
            ],
        ),
    ]


def invalid_indexes(conn: Any, target: Target, schema: str) -> list[str]:
    with conn.cursor() as cur:
        if target.dialect == "postgresql":
            cur.execute(
                "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid AND indrelid = %s::regclass",
                (f"{schema}.oltp_settlement",),
            )
            return [r[0] for r in cur.fetchall()]
        cur.execute(
            "SELECT count(*) FROM information_schema.statistics WHERE table_schema = %s AND table_name = "
            "'oltp_settlement' AND index_name = 'ix_settlement_patient'",
            (schema,),
        )
        return [] if cur.fetchone()[0] else ["ix_settlement_patient (missing)"]


def changes_missing(conn: Any, target: Target, schema: str, upto: int) -> list[str]:
    """Each change proven to have happened: the new column and the new index exist (the index valid), and every
    pre-loaded row carries the batched update's value.  A change a target acknowledged but did not make is named."""
    missing: list[str] = []
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = 'oltp_settlement' AND column_name = 'note'",
            (schema,),
        )
        if not cur.fetchone()[0]:
            missing.append("the added column note is not in the table")
        if target.dialect == "postgresql":
            cur.execute(
                "SELECT indisvalid AND indisready FROM pg_index WHERE indexrelid = to_regclass(%s)",
                (f"{schema}.ix_settlement_patient",),
            )
            row = cur.fetchone()
            if row is None or not row[0]:
                missing.append(
                    "the added index ix_settlement_patient is " + ("missing" if row is None else "not valid")
                )
        else:
            cur.execute(
                "SELECT count(*) FROM information_schema.statistics WHERE table_schema = %s "
                "AND table_name = 'oltp_settlement' AND index_name = 'ix_settlement_patient'",
                (schema,),
            )
            if not cur.fetchone()[0]:
                missing.append("the added index ix_settlement_patient is missing")
        if not missing:
            same = "note IS NOT DISTINCT FROM 'checked'" if target.dialect == "postgresql" else "note <=> 'checked'"
            cur.execute(f"SELECT count(*) FROM {schema}.oltp_settlement WHERE settlement_id <= {upto} AND NOT ({same})")
            left = int(cur.fetchone()[0])
            if left:
                missing.append(f"the batched update left {left:,} of {upto:,} pre-loaded rows unchanged")
    return missing


def refused_algorithm(conn: Any, target: Target, schema: str) -> tuple[bool, Text]:
    """An ALGORITHM/LOCK the engine cannot honour must raise, not silently copy the table: (refused or not
    applicable, what was seen)."""
    if target.dialect != "mysql":
        return True, msg("algo_na_postgresql")
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"ALTER TABLE {schema}.oltp_settlement MODIFY total_amount varchar(20), ALGORITHM=INPLACE, LOCK=NONE"
            )
    except Exception as exc:
        return True, msg("algo_refused", error=str(exc))
    return False, msg("algo_not_refused")
