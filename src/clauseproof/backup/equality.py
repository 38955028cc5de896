"""Proving a restored copy equal to its source as of the backup: chunked content digests of both, and rows
written to the source after the backup that the copy must not hold (a "restore" that clones the live source
holds them)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from clauseproof.backup.source import Source
from clauseproof.core.digest import TableDigest, compare_digests, digest_tables, table_layout
from clauseproof.core.evidence import CaseEvidence

#: Connections the content digest is split over (one server process each).
DIGEST_WORKERS = 2


def digest(
    connect: Any, source: Source, schema: str, evidence: CaseEvidence | None = None, label: str = ""
) -> dict[str, TableDigest]:
    """Chunked digests of ``schema`` over two connections; with ``evidence`` the time is recorded
    (outside every window)."""
    started = time.perf_counter()
    conn = connect()
    try:
        return digest_tables(conn, source.server.dialect, schema, connect=connect, workers=DIGEST_WORKERS)
    finally:
        conn.close()
        if evidence is not None:
            evidence.record.parameters.setdefault("digest_seconds", {})[label] = round(time.perf_counter() - started, 2)


def source_digest(src: Source, evidence: CaseEvidence, label: str) -> dict[str, TableDigest]:
    """The source's digest as of now, computed once per source and reused by the next case (the source is the
    harness's own; the rows a case adds after its backup are removed before the next case starts)."""
    if src.schema in src.digests:
        evidence.record.parameters.setdefault("digest_seconds", {})["source"] = "reused: computed by an earlier case"
        return dict(src.digests[src.schema])
    evidence.progress(f"{label}: digest of the source before the backup")
    got = digest(src.connect, src, src.schema, evidence, "source")
    src.digests[src.schema] = dict(got)
    return got


def prove_equal(before: dict[str, TableDigest], after: dict[str, TableDigest], change: SourceChange) -> str:
    """'' when the restored copy equals the source as of the backup; otherwise the difference, named.

    A copy holding the rows written to the source *after* the backup finished did not come from the
    backup (a "restore" that clones the live source, say), whatever else it holds."""
    if change.seen_in_restore:
        return (
            f"the restored copy holds {change.seen_in_restore} of the {change.rows} rows written to the source "
            "after the backup had finished: it was not restored from the backup"
        )
    problems = compare_digests(before, after)
    if problems:
        return "not equal to the source as of the backup: " + "; ".join(problems[:10])
    return ""


#: Rows written to the source between the backup and the restore (outside both windows).
CHANGE_ROWS = 1000


@dataclass
class SourceChange:
    """Rows added to the source's largest table after the backup finished, removed after the restore."""

    table: str
    key: str
    above: int
    rows: int
    #: How many of them the restored copy holds (must be 0).
    seen_in_restore: int = 0

    def evidence(self) -> str:
        return (
            f"after the backup finished and before the restore started, {self.rows} rows were added to the "
            f"source's {self.table} ({self.key} > {self.above}); the restored copy must equal the source as of "
            f"the backup and hold none of them (it held {self.seen_in_restore}); they were removed afterwards"
        )


def change_source(src: Source) -> SourceChange:
    """Copy the first CHANGE_ROWS rows of the data set's table under new keys (outside every window)."""
    table = src.data.table
    conn = src.connect()
    try:
        layout = table_layout(conn, src.server.dialect, src.schema)[table]
        assert layout.key is not None, f"{table} has no integer key"
        key = layout.key
        with conn.cursor() as cur:
            cur.execute(f"SELECT min({key}), max({key}) FROM {table}")
            lo, hi = (int(v) for v in cur.fetchone())
            cols = ", ".join(layout.columns)
            values = ", ".join(f"{c} + {hi - lo + 1}" if c == key else c for c in layout.columns)
            cur.execute(f"INSERT INTO {table} ({cols}) SELECT {values} FROM {table} WHERE {key} < {lo + CHANGE_ROWS}")
            added = cur.rowcount
            if not getattr(conn, "autocommit", True):
                conn.commit()
    finally:
        conn.close()
    return SourceChange(table, key, hi, added)


def count_changed(connect: Any, schema: str, change: SourceChange, dialect: str) -> int:
    """How many of the post-backup rows a database holds (0 when the table is missing)."""
    conn = connect()
    try:
        qualified = f'"{schema}"."{change.table}"' if dialect == "postgresql" else f"`{schema}`.`{change.table}`"
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {qualified} WHERE {change.key} > {change.above}")
            return int(cur.fetchone()[0])
    except Exception:
        return 0
    finally:
        conn.close()


def undo_change(src: Source, change: SourceChange | None) -> None:
    """Remove the rows added after the backup; if that fails, the source's remembered digest is forgotten (the
    next case computes it again rather than compare against a source that no longer holds)."""
    if change is None:
        return
    try:
        with contextlib.closing(src.connect()) as conn, conn.cursor() as cur:
            cur.execute(f"DELETE FROM {change.table} WHERE {change.key} > {change.above}")
            if not getattr(conn, "autocommit", True):
                conn.commit()
    except BaseException:
        src.digests.clear()
        raise


def verdict_after_restore(
    src: Source,
    before: dict[str, TableDigest],
    change: SourceChange,
    restored_connect: Any,
    schema: str,
    evidence: CaseEvidence,
    label: str,
) -> str:
    """Count the post-backup rows in the restored copy, then compare its digests with the source's as of the
    backup; '' when equal, otherwise what differs."""
    change.seen_in_restore = count_changed(restored_connect, schema, change, src.server.dialect)
    after = digest(restored_connect, src, schema, evidence, label)
    return prove_equal(before, after, change)
