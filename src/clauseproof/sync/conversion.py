"""BZ-SYNC-6: a sync task that converts as it copies (a subset of columns and rows, other types at the
target), judged by the checker at the declared target types."""

from __future__ import annotations

import contextlib

from clauseproof.core.i18n import joined, msg
from clauseproof.sync.cases import FIRST_ROWS, Part, _barrier_to, _run_sql, _short_load, check, prepare, scenario
from clauseproof.sync.mapping import ColumnMap, TableMap
from clauseproof.targets.roles import SyncSystem

# -- BZ-SYNC-6 ---------------------------------------------------------------------------------------------------
CONVERTED = """CREATE TABLE orders (updated_at timestamp, amount numeric(14,4), customer bigint, status varchar(20),
    id bigint PRIMARY KEY)"""
#: judged at the declared target type exactly: amount numeric(12,2) → numeric(14,4) compared at the target's 4 places,
#: no tolerance (compared at the source's 2, a detour through a binary float that truncates 12.34 to 12.3399 passed)
CONVERSION = TableMap(
    "orders",
    "orders",
    "id",
    (
        ColumnMap("id", kind="int"),
        ColumnMap("customer", kind="int"),
        ColumnMap("amount", kind="decimal", scale=4),
        ColumnMap("status", kind="text"),
        ColumnMap("updated_at", kind="timestamp", source_tz="+00:00", target_tz="+00:00"),
    ),
    source_where="id % 4 <> 0",
    exact_columns=True,
)
SELECTED = ["id", "customer", "amount", "status", "updated_at"]


def conversion(
    sys: SyncSystem,
    *,
    target_ddl: str = CONVERTED,
    where: str = "id % 4 <> 0",
    seconds: float = 3.0,
    rate: float = 100,
    timeout: float = 120,
) -> list[Part]:
    """Columns selected, reordered and retyped, rows selected by a filter; proven by the checker."""
    a, b = "a", "b"
    with scenario(sys, [a, b]):
        prepare(sys, a, [])
        _run_sql(sys, b, target_ddl, "CREATE TABLE cp_marker (id bigint, origin text, committed_at timestamptz)")
        sys.create_task(
            "cp_conv",
            a,
            b,
            ["orders", "cp_marker"],
            columns={"orders": SELECTED},
            where={"orders": where} if where else {},
        )
        reports = _short_load(sys, {a: FIRST_ROWS + 1}, seconds, rate)
        wait = _barrier_to(sys, a, b, "conversion", 30_000_000, timeout)
        result = check(sys, a, b, CONVERSION)
        with contextlib.closing(sys.node_connect(b)) as conn:
            outside = conn.execute("SELECT count(*) FROM orders WHERE NOT (id % 4 <> 0)").fetchone()[0]
            layout = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = 'orders' ORDER BY ordinal_position"
            ).fetchall()
    errors = [e for r in reports for e in r.errors]
    where_txt = "id % 4 <> 0"
    layout_txt = ", ".join(f"{c} {t}" for c, t in layout)
    changed = [d for d in result.diffs if d.kind == "changed"]
    rows_ok = result.counts_equal and not [d for d in result.diffs if d.kind in ("extra", "missing", "duplicated")]
    base = {"checks": [result.evidence()], "barrier_s": wait, "target_layout": layout_txt}
    late = "" if wait is not None else "a marker did not arrive"
    return [
        Part(
            "BZ-SYNC-6",
            msg("name_conversion"),
            not changed and not result.missing_columns and wait is not None and not errors,
            msg("conversion_how", layout=layout_txt, columns="; ".join(c.describe() for c in CONVERSION.columns)),
            why=joined(
                [result.summary_text(5) if changed else "", late, f"load errors {errors[:3]}" if errors else ""]
            ),
            data=base,
        ),
        Part(
            "BZ-SYNC-6",
            msg("name_row_selection"),
            rows_ok and outside == 0,
            msg(
                "row_selection_how",
                where=where_txt,
                source=result.source_rows,
                target=result.target_rows,
                outside=outside,
            ),
            why=result.summary_text(5) if not rows_ok else (msg("rows_outside", n=outside) if outside else ""),
        ),
        Part(
            "BZ-SYNC-6",
            msg("name_column_selection"),
            not result.extra_columns and not result.missing_columns,
            msg("column_selection_how", selected=", ".join(SELECTED), layout=layout_txt),
            why=msg("columns_outside", cols=str(result.extra_columns))
            if result.extra_columns
            else msg("columns_missing", cols=str(result.missing_columns))
            if result.missing_columns
            else "",
        ),
    ]
