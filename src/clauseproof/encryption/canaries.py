"""BZ-DB-2's canaries: random strings written through the server where each file class keeps them (table rows
with an index, a temporary table held open, old values overwritten by an update), forced to disk; and the files a
current, complete copy of the data directory must hold, as the server names them after the canaries were written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clauseproof.core.errors import first_line
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import msg
from clauseproof.targets.base import row_numbers
from clauseproof.targets.roles import Database


def write_canaries(target: Database, conn: Any, canaries: list[bytes], evidence: CaseEvidence) -> tuple[Any, bool]:
    """Write the canaries; return a session holding a temporary table open (close it after the scan), and
    whether the table's pages were forced to disk (without that, finding no canary in the data files proves
    nothing)."""
    text = [c.decode() for c in canaries]
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS canary")
        cur.execute("CREATE TABLE canary (id INT PRIMARY KEY, secret VARCHAR(64) NOT NULL, note VARCHAR(64))")
        cur.execute("CREATE INDEX canary_secret ON canary (secret)")
        for i, t in enumerate(text[:8]):
            cur.execute("INSERT INTO canary VALUES (%s, %s, NULL)", (i, t))
        for i, t in enumerate(text[12:16]):  # old values live only in the logs after the update
            cur.execute("INSERT INTO canary VALUES (%s, %s, %s)", (100 + i, "x" * 28, t))
            cur.execute("UPDATE canary SET note = 'overwritten' WHERE id = %s", (100 + i,))
    temp = target.connect()
    with temp.cursor() as cur:
        kw = "TEMP" if target.dialect == "postgresql" else "TEMPORARY"
        if target.dialect == "postgresql":
            # the smallest local buffer pool, so ~2 MB of filler evicts the temporary table's pages to disk
            cur.execute("SET temp_buffers = '800kB'")
        cur.execute(f"CREATE {kw} TABLE canary_tmp (id INT PRIMARY KEY, secret VARCHAR(64), pad VARCHAR(1000))")
        for i, t in enumerate(text[8:12]):
            cur.execute("INSERT INTO canary_tmp (id, secret) VALUES (%s, %s)", (i, t))
        if target.dialect == "postgresql":
            cur.execute(
                "INSERT INTO canary_tmp (id, secret) SELECT g, repeat('f', 60) FROM generate_series(100, 30099) g"
            )
        else:
            _spill_innodb_temp(cur, evidence)
    try:
        _force_to_disk(target, conn)
    except Exception as exc:  # an external target's user may lack the privilege
        evidence.note(msg("note_force_refused", error=first_line(exc)))
        return temp, False
    return temp, True


#: The most filler written to push an InnoDB temporary table out of the buffer pool.
TEMP_FILLER_MAX = 512 << 20


def _spill_innodb_temp(cur: Any, evidence: CaseEvidence) -> None:
    """InnoDB keeps temporary tables in ibtmp1 behind the buffer pool: write 1.3 x the pool of filler
    (at most 512 MiB) after the canaries, so their pages are evicted to disk."""
    cur.execute("SELECT @@innodb_buffer_pool_size")
    pool = int(cur.fetchone()[0])
    want = int(pool * 1.3)
    if want > TEMP_FILLER_MAX:
        evidence.note(msg("note_pool_too_big", pool=pool >> 20, want=want >> 20, most=TEMP_FILLER_MAX >> 20))
        return
    rows = want // 1000
    cur.execute(
        f"INSERT INTO canary_tmp (id, pad) SELECT i, REPEAT('f', 990) FROM {row_numbers(cur, 'mysql', 100, rows + 99)}"
    )
    evidence.parameters(temporary_filler_bytes=rows * 1000, buffer_pool_bytes=pool)


def _force_to_disk(target: Database, conn: Any) -> None:
    """Write the canary table's pages to its files, changing no server-wide setting: a checkpoint on
    PostgreSQL; ``FLUSH TABLES … FOR EXPORT`` (this table's dirty pages only) on the MySQL family."""
    with conn.cursor() as cur:
        if target.dialect == "postgresql":
            cur.execute("CHECKPOINT")
        else:
            cur.execute("FLUSH TABLES canary FOR EXPORT")
            cur.execute("UNLOCK TABLES")


@dataclass
class Expected:
    """A file the scanned copy must hold, as the server names it after the canaries were written."""

    part: str
    what: str
    #: Path relative to the data directory (matched by file name alone when ``by_name``).
    path: str
    min_bytes: int
    by_name: bool = False
    #: The copy must have exactly ``min_bytes`` (a table's file; a log file may have grown since).
    exact: bool = False


def expected_files(target: Database, conn: Any, evidence: CaseEvidence) -> list[Expected]:
    """Files a current and complete copy holds: the canary table's own file at its full size and the log
    file being written after the canaries.  Asked of the server, after the canaries reached disk."""
    out: list[Expected] = []
    with conn.cursor() as cur:
        if target.dialect == "postgresql":
            cur.execute("SELECT pg_relation_filepath('canary'), pg_relation_size('canary')")
            path, size = cur.fetchone()
            out.append(Expected("data files", "the canary table's relation file", str(path), int(size), exact=True))
            cur.execute("SELECT pg_walfile_name(pg_current_wal_lsn())")
            out.append(
                Expected("log files", "the WAL segment written after the canaries", f"pg_wal/{cur.fetchone()[0]}", 1)
            )
            return out
        cur.execute(
            "SELECT FILE_SIZE FROM information_schema.INNODB_SYS_TABLESPACES WHERE NAME = %s",
            (f"{target.namespace}/canary",),
        )
        row = cur.fetchone()
        out.append(
            Expected(
                "data files",
                "the canary table's tablespace",
                f"{target.namespace}/canary.ibd",
                int(row[0]) if row else 1,
                exact=row is not None,
            )
        )
        try:
            cur.execute("SHOW MASTER STATUS")
            status = cur.fetchone()
        except Exception as exc:  # the privilege to see it may be missing
            evidence.note(msg("note_binlog_unread", error=first_line(exc)))
            status = None
        if status:
            out.append(
                Expected(
                    "log files",
                    "the binary log written after the canaries",
                    str(status[0]),
                    int(status[1]),
                    by_name=True,
                )
            )
    return out


def currency_problems(root: Path, expected: list[Expected]) -> dict[str, list[str]]:
    """Per part, what the copy lacks of what the server says it holds: missing, shorter, or (a table's file) of
    another size."""
    problems: dict[str, list[str]] = {}
    for e in expected:
        if e.by_name:
            found = [p for p in root.rglob(Path(e.path).name) if p.is_file()]
        else:
            found = [root / e.path] if (root / e.path).is_file() else []
        if not found:
            problems.setdefault(e.part, []).append(f"{e.what} ({e.path}) is not in the files scanned")
        else:
            size = max(p.stat().st_size for p in found)
            if size < e.min_bytes or (e.exact and size != e.min_bytes):  # cut short, or changed on the way
                problems.setdefault(e.part, []).append(
                    f"{e.what} ({e.path}) has {size:,} bytes in the files scanned, the server has {e.min_bytes:,}"
                )
    return problems
