"""Database-level logical backup (pg_dump -Fd -j 2 / mariadb-dump) and its restore into a new database
(BZ-DB-4e/4f, SX-RDS-4), proven equal to the source as of the backup."""

from __future__ import annotations

import shutil
import time

from clauseproof.backup.equality import SourceChange, change_source, source_digest, undo_change, verdict_after_restore
from clauseproof.backup.phases import Phase, timed, written
from clauseproof.backup.record import record
from clauseproof.backup.source import Source
from clauseproof.core.evidence import CaseEvidence
from clauseproof.targets.roles import Database

RESTORED_DB = "clauseproof_restored"


def backup_and_restore(target: Database, src: Source, evidence: CaseEvidence) -> None:
    """The whole database dumped, timed; then restored into a new database, timed and proven equal."""
    server = src.server
    ep = server.address()
    env = ep.client_env(server.dialect)
    conn_args = ep.client_args(server.dialect)
    new_db = f"{target.namespace}_restored" if not src.embedded else RESTORED_DB
    before = source_digest(src, evidence, target.label)
    out = src.work.path / "logical"
    created = False
    change: SourceChange | None = None
    try:
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
            windows = (
                "pg_dump -Fd -j 2 of the whole database from its start to its exit",
                "CREATE DATABASE, then pg_restore -j 2 from its start to its exit",
            )
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
            windows = (
                "mariadb-dump of the whole database into a file, from its start to its exit",
                "CREATE DATABASE, then the mariadb client reading the dump, from its start to its exit",
            )
        unequal = verdict_after_restore(
            src, before, change, lambda: server.connect_database(new_db), restored_schema, evidence, "restored"
        )
        record(evidence, src, "logical (database level)", backup, restore, size, before, change, unequal, *windows)
    finally:
        undo_change(src, change)
        if created:
            with server.connect(in_namespace=False) as admin, admin.cursor() as cur:
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
