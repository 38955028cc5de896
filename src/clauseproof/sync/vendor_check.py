"""BZ-SYNC-3 with the vendor's own consistency checker (``[sync] check_command``): the harness loads the same table on
the source (PostgreSQL) and the target (MySQL family), then a copy with the nine seeded differences
(:data:`clauseproof.sync.seeded.SEEDED`), and runs the vendor's checker on both. It must report the real row counts,
find the equal copy equal, and name exactly the seeded differences — the keys the harness changed, no other (a
moved row may be named as its old key missing and its new key extra). The cheapest cheat, a checker that compares
row counts only, finds nothing in a seeded copy whose differences keep the count and is judged FAIL."""

from __future__ import annotations

import contextlib
from typing import Any

from clauseproof.core.i18n import msg
from clauseproof.sync import seeded
from clauseproof.sync.cases import Part
from clauseproof.sync.vendor import VendorSync

CLAUSE = "BZ-SYNC-3"


def _count(conn: Any, table: str) -> int:
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        return int(cur.fetchone()[0])


def check_with_vendor(lab: Any, rows: int) -> list[Part]:
    """The parts; NOT SHOWN where the lab has no checker of its own or its nodes are not PostgreSQL → MySQL."""
    name = "the vendor's own checker"
    if not isinstance(lab, VendorSync) or "check_command" not in lab.section.commands:
        why = msg("vendor_checker_none" if not isinstance(lab, VendorSync) else "vendor_checker_no_command")
        return [Part(CLAUSE, name, None, msg("seeded_copy_counts_values"), why=why)]
    if (lab.dialect_of("a"), lab.dialect_of("b")) != ("postgresql", "mysql"):
        nodes = msg("seeded_needs_pg_mysql", a=lab.dialect_of("a"), b=lab.dialect_of("b"))
        return [Part(CLAUSE, name, None, msg("seeded_copy_counts_values"), why=nodes)]
    with contextlib.closing(lab.node_connect("a")) as a, contextlib.closing(lab.node_connect("b")) as b:
        seeded.load(a, b, rows)
        want = seeded.seed(b, rows)
        real = (_count(a, "people"), _count(b, "people"), _count(b, "people_seeded"))
    try:
        equal = lab.run_checker("a", "b", "people", "people")
        differing = lab.run_checker("a", "b", "people", "people_seeded")
    finally:
        with contextlib.closing(lab.node_connect("b")) as b:
            seeded.drop(b, "people", "people_seeded")
        with contextlib.closing(lab.node_connect("a")) as a, contextlib.closing(a.cursor()) as c:
            c.execute("DROP TABLE IF EXISTS people")

    def named(doc: dict[str, Any]) -> set[int]:
        return {int(d["key"]) for d in doc.get("differences", []) if isinstance(d, dict) and "key" in d}

    want_keys = {k for k, _ in want}
    moved_to = {rows + 200}  # the seeded move's new key, which a checker may name as extra
    found = named(differing)
    counts_said = (equal.get("source_rows"), equal.get("target_rows"), differing.get("target_rows"))
    return [
        Part(CLAUSE, msg("checker_row_counts", name=name), counts_said == real,
             msg("checker_counts_against", said=str(counts_said), real=str(real)),
             why=msg("checker_counts_wrong", said=str(counts_said), real=str(real))),
        Part(CLAUSE, msg("checker_equal_copy", name=name), not named(equal),
             msg("equal_copy_no_difference", rows=real[0]),
             why=msg("named_in_equal_copy", n=len(named(equal)), keys=str(sorted(named(equal))[:5]))),
        Part(CLAUSE, msg("checker_seeded", name=name), want_keys <= found and not (found - want_keys - moved_to),
             msg("seeded_named", n=len(want), named=len(found & want_keys), others=len(found - want_keys - moved_to)),
             why=msg("not_named_extra", missing=str(sorted(want_keys - found)),
                     extra=str(sorted(found - want_keys - moved_to))),
             data={"named": sorted(found)[:50]}),
    ]  # fmt: skip
