"""Point-in-time recovery (SX-RDS-4): batches written with server-side points recorded between them; a restore to
each point must give exactly that point's rows, and a point beyond the archive must be refused, never silently
restored to the end.  The engine's procedure is the target's (:class:`PointInTimeRecovery`): PostgreSQL's base
backup + WAL archive with ``recovery_target_time``, MariaDB's mariadb-backup + binary log replayed up to a GTID."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from clauseproof.backup.equality import digest
from clauseproof.backup.source import Source
from clauseproof.core.digest import TableDigest, compare_digests, digest_tables
from clauseproof.core.errors import ClauseproofError, NotApplicable
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import Text, joined, msg
from clauseproof.targets.roles import Database, PointInTimeRecovery

TABLE = "pitr_batches"
BATCHES = 3
ROWS = 1000


def restore_to_points(target: Database, src: Source | None, evidence: CaseEvidence) -> None:
    if src is None or not isinstance(src.server, PointInTimeRecovery):
        raise NotApplicable(
            f"point-in-time recovery of {target.label} needs a procedure the harness can drive (a vendor's "
            "restore-to-time command is not supported yet; containers would need continuous archiving set up "
            "inside them); the embedded default shows the procedure"
        )
    server: PointInTimeRecovery = src.server
    work = src.work.sub("pitr", owned=src.server.dialect == "postgresql")
    conn = src.connect()
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
        cur.execute("DROP TABLE IF EXISTS pitr_sentinel")
        cur.execute(f"CREATE TABLE {TABLE} (id BIGINT PRIMARY KEY, batch INT NOT NULL, payload VARCHAR(64))")
    evidence.progress(f"{target.label}: base backup for point-in-time recovery")
    start = server.pitr_base_backup(work)
    points: list[dict[str, Any]] = []
    with conn.cursor() as cur:
        for b in range(1, BATCHES + 1):
            rows = ", ".join(f"({b * 100000 + i}, {b}, 'batch {b} row {i}')" for i in range(ROWS))
            cur.execute(f"INSERT INTO {TABLE} VALUES {rows}")
            time.sleep(0.05)  # the recorded point lies strictly between this batch's commit and the next
            ts, pos = server.pitr_point(cur)
            d = digest_tables(conn, src.server.dialect, src.schema)[TABLE]
            points.append({"batch": b, "server_time": ts, "position": pos, "rows": d.total.count,
                           "digest": str(d.total), "_digest": d})  # fmt: skip
            time.sleep(0.05)
        # A commit after the last point, so the archive covers it (recovery needs to see past a target).
        cur.execute("CREATE TABLE pitr_sentinel (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO pitr_sentinel VALUES (1)")
    server.pitr_close_archive(conn)
    conn.close()
    results = []
    unequal: list[Text | str] = []  # a difference found is the clause's FAIL, named, never an error of the case
    refused = ""
    try:
        for p in points:
            evidence.progress(f"{target.label}: restoring to point {p['batch']} ({p['server_time']})")
            got = _restored(server, src, work, p, start)
            ok = got == p["_digest"]
            results.append({"point": p["batch"], "expected": p["digest"], "restored": str(got.total), "equal": ok})
            if not ok:
                diff = "; ".join(compare_digests({"t": p["_digest"]}, {"t": got}))
                unequal.append(msg("pitr_unequal", point=p["batch"], time=p["server_time"], got=str(got.total),
                                   want=p["digest"], diff=diff))  # fmt: skip
        beyond = server.pitr_beyond(points[-1])
        evidence.progress(f"{target.label}: asking for a point beyond the archive (must be refused)")
        try:
            _restored(server, src, work, beyond, start)
        except ClauseproofError as exc:
            lines = str(exc).splitlines()
            refused = next((ln.strip() for ln in lines if "FATAL" in ln), lines[0])[:300]
        else:
            unequal.append(msg("pitr_beyond_not_refused"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    evidence.parameters(
        source_notes=src.notes,
        method=server.pitr_method,
        batches=BATCHES,
        rows_per_batch=ROWS,
        points=[{k: v for k, v in p.items() if not k.startswith("_")} for p in points],
        restores=results,
        beyond_archive={"requested": beyond["requested"], "refused_with": refused},
    )
    if refused:
        evidence.note(msg("note_beyond_archive", refused=refused))
    evidence.measure(
        "SX-RDS-4",
        not unequal,
        "bool",
        statistic=msg("pitr_exact", points=BATCHES)
        if not unequal
        else msg("pitr_differs", n=len(unequal), checks=BATCHES + 1),
        why=joined(unequal),
    )


def _restored(server: PointInTimeRecovery, src: Source, work: Path, point: dict[str, Any], start: str) -> TableDigest:
    """A fresh copy restored to ``point``: the digest of the PITR table there."""
    restored = server.pitr_restore(work, src.archive, point, start)
    try:
        return digest(lambda: restored.connect_database(src.data.database), src, src.schema)[TABLE]
    finally:
        restored.stop()
