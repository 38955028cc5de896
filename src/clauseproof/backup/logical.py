"""Database-level logical backup (pg_dump -Fd -j 2 / mariadb-dump) and its restore into a new database
(BZ-DB-4e/4f, SX-RDS-4), proven equal to the source as of the backup."""

from __future__ import annotations

import gzip
import secrets
import shutil
import time
from pathlib import Path

from clauseproof.backup.equality import SourceChange, change_source, source_digest, undo_change, verdict_after_restore
from clauseproof.backup.phases import Phase, timed, written
from clauseproof.backup.record import record
from clauseproof.backup.source import Source
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import msg
from clauseproof.targets.roles import Database

RESTORED_DB = "clauseproof_restored"
OTHER_DB = "clauseproof_other"


def _other_database(server: Database, name: str, marker: str) -> None:
    """A second database on the same server, holding one marked row: a database-level backup must leave it out."""
    with server.connect(in_namespace=False) as admin, admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name}")
    conn = server.connect_database(name)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE {marker} (note VARCHAR(64))")
            cur.execute(f"INSERT INTO {marker} VALUES ('{marker}')")
    finally:
        conn.close()


def found_in(path: Path, needle: bytes) -> list[str]:
    """The files under ``path`` (a file or a folder) whose bytes — gunzipped where gzip-compressed, as pg_dump -Fd
    writes its tables — hold ``needle``."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    hits = []
    for f in files:
        opener = gzip.open if f.read_bytes()[:2] == b"\x1f\x8b" else open
        with opener(f, "rb") as fh:
            tail = b""
            while chunk := fh.read(1 << 20):
                if needle in tail + chunk:
                    hits.append(f.name)
                    break
                tail = chunk[-len(needle) :]
    return hits


def database_only(evidence: CaseEvidence, out: Path, marker: str, other: str) -> None:
    """SX-RDS-4's database-level part: the backup holds the database asked for and not the other one."""
    if not out.exists():
        evidence.part(
            "SX-RDS-4", None, statistic=msg("part_db_only_short"), not_shown=msg("backup_wrote_nothing_readable")
        )
        return
    hits = found_in(out, marker.encode())
    evidence.part(
        "SX-RDS-4",
        not hits,
        statistic=msg("part_db_only", other=other, marker=marker),
        why=msg("other_db_in_backup", where=", ".join(hits[:5])),
    )


def backup_and_restore(target: Database, src: Source, evidence: CaseEvidence) -> None:
    """The whole database dumped, timed; then restored into a new database, timed and proven equal."""
    server = src.server
    ep = server.address()
    env = ep.client_env(server.dialect)
    conn_args = ep.client_args(server.dialect)
    new_db = f"{target.namespace}_restored" if not src.embedded else RESTORED_DB
    other_db = f"{target.namespace}_other" if not src.embedded else OTHER_DB
    marker = f"cpother{secrets.token_hex(8)}"
    before = source_digest(src, evidence, target.label)
    out = src.work.path / "logical"
    created = False
    change: SourceChange | None = None
    try:
        _other_database(server, other_db, marker)
        if server.dialect == "postgresql":
            evidence.progress(f"{target.label}: pg_dump -Fd -j2")
            backup = [
                timed(
                    "pg_dump -Fd -j 2 (whole database)",
                    [server.tool("pg_dump"), *conn_args, "-d", src.data.database, "-Fd", "-j", "2", "-f", str(out)],
                    env=env,
                )
            ]
            size = written(out)
            database_only(evidence, out, marker, other_db)
            change = change_source(src)
            restore = [_create_database(server, new_db)]
            created = True
            evidence.progress(f"{target.label}: pg_restore -j2")
            restore.append(
                timed(
                    "pg_restore -j 2",
                    [server.tool("pg_restore"), *conn_args, "-d", new_db, "-j", "2", str(out)],
                    env=env,
                )
            )
            restored_schema = "public"
            windows = (msg("window_pg_dump"), msg("window_pg_restore"))
        else:
            evidence.progress(f"{target.label}: mariadb-dump")
            backup = [
                timed(
                    "mariadb-dump --single-transaction --quick (whole database)",
                    [server.tool("mariadb-dump"), *conn_args, "--single-transaction", "--quick", src.data.database],
                    stdout=out.with_suffix(".sql"),
                    env=env,
                )
            ]
            size = written(out.with_suffix(".sql"))
            database_only(evidence, out.with_suffix(".sql"), marker, other_db)
            change = change_source(src)
            restore = [_create_database(server, new_db)]
            created = True
            evidence.progress(f"{target.label}: restoring the dump through the mariadb client (slow by nature)")
            restore.append(
                timed(
                    "mariadb < dump",
                    [server.tool("mariadb"), *conn_args, new_db],
                    stdin=out.with_suffix(".sql"),
                    env=env,
                )
            )
            restored_schema = new_db
            windows = (msg("window_mariadb_dump"), msg("window_mariadb_dump_restore"))
        unequal = verdict_after_restore(
            src, before, change, lambda: server.connect_database(new_db), restored_schema, evidence, "restored"
        )
        record(evidence, src, "logical (database level)", backup, restore, size, before, change, unequal, *windows)
    finally:
        undo_change(src, change)
        with server.connect(in_namespace=False) as admin, admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {other_db}")
            if created:
                cur.execute(f"DROP DATABASE IF EXISTS {new_db}")
        shutil.rmtree(out, ignore_errors=True)
        out.with_suffix(".sql").unlink(missing_ok=True)


def _create_database(server: Database, name: str) -> Phase:
    """CREATE DATABASE, timed from the statement's start to its end (the connection is opened before)."""
    admin = server.connect(in_namespace=False)
    try:
        t0 = time.perf_counter()
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        return Phase("CREATE DATABASE", round(time.perf_counter() - t0, 4), f"CREATE DATABASE {name}")
    finally:
        admin.close()
