"""BZ-DB-4e/4f: backup of at least 1 GiB and its restore, physical and logical, each restore
proven equal; SX-RDS-4: database-level logical backup and point-in-time recovery.

Equality: before each backup, per-table row counts and chunked content digests (count and sum
of md5-derived integers over each row's text, per key range) are computed on the source; the
same is computed on the restored copy; any difference fails the case and names table and range.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clauseproof.backup.phases import Phase, open_for, timed, vendor_command, written
from clauseproof.core.digest import TableDigest, compare_digests, digest_tables, summary, table_layout
from clauseproof.core.errors import ClauseproofError
from clauseproof.core.evidence import CaseEvidence
from clauseproof.targets.base import Target
from clauseproof.targets.containers.target import ContainerTarget
from clauseproof.targets.single.embedded import EmbeddedMariaDB, EmbeddedPostgres
from clauseproof.targets.single.external import ExternalTarget
from fixtures.backup import Source

RESTORED_DB = "clauseproof_restored"
#: Connections the content digest is split over (one server process each).
DIGEST_WORKERS = 2


def _digest(
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


def _source_digest(src: Source, evidence: CaseEvidence, label: str) -> dict[str, TableDigest]:
    """The source's digest as of now, computed once per source and reused by the next case (the source is the
    harness's own; the rows a case adds after its backup are removed before the next case starts)."""
    if src.schema in src.digests:
        evidence.record.parameters.setdefault("digest_seconds", {})["source"] = "reused: computed by an earlier case"
        return dict(src.digests[src.schema])
    evidence.progress(f"{label}: digest of the source before the backup")
    got = _digest(src.connect, src, src.schema, evidence, "source")
    src.digests[src.schema] = dict(got)
    return got


def _prove_equal(before: dict[str, TableDigest], after: dict[str, TableDigest], change: SourceChange) -> str:
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


def _change_source(src: Source) -> SourceChange:
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


def _count_changed(connect: Any, schema: str, change: SourceChange, dialect: str) -> int:
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


def _undo_change(src: Source, change: SourceChange | None) -> None:
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


def _verdict_after_restore(
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
    change.seen_in_restore = _count_changed(restored_connect, schema, change, src.server.dialect)
    after = _digest(restored_connect, src, schema, evidence, label)
    return _prove_equal(before, after, change)


def _record(
    evidence: CaseEvidence,
    source: Source,
    method: str,
    backup: list[Phase],
    restore: list[Phase],
    written: tuple[int, int],
    before: dict[str, TableDigest],
    change: SourceChange,
    unequal: str,
    window_backup: str,
    window_restore: str,
    elsewhere: str | None = None,
) -> None:
    """Record the phases and judge BZ-DB-4e/4f and SX-RDS-4 (manual backup and restore): a backup that wrote
    nothing, or a restore that is not the source as of the backup, is FAIL whatever the times.  A vendor's backup
    may keep its artefact outside the output folder (a storage snapshot, an object store): ``elsewhere`` is then
    what the profile's show_backup command listed ("" when nothing was shown: the backup's parts are NOT SHOWN,
    never PASS, unless the restore already proves it wrong)."""
    b = sum(p.seconds for p in backup)
    r = sum(p.seconds for p in restore)
    backup_bytes, backup_files = written
    empty = f"the backup wrote {backup_bytes:,} bytes in {backup_files} files" if backup_bytes == 0 else ""
    unshown = ""
    if empty and elsewhere is not None:  # a vendor's backup: nothing in the output folder
        empty = ""
        unshown = (
            f"the backup wrote nothing to the output folder and its artefact was shown nowhere ({elsewhere})"
            if elsewhere.startswith("no ")
            else ""
        )
    evidence.parameters(
        method=method,
        data_set=source.data.evidence(),
        server_bytes=source.data.server_bytes,
        backup_bytes=backup_bytes,
        backup_files=backup_files,
        backup_mb_per_s=round(source.data.server_bytes / 1e6 / b, 1) if b else None,
        backup_phases=[p.evidence() for p in backup],
        restore_phases=[p.evidence() for p in restore],
        digests_before=summary(before),
        source_notes=source.notes,
        source_changed_between=change.evidence(),
        equality="per-table, per key range (100,000 keys): row count and sum of md5-derived integers, "
        "computed in SQL on the source before the backup and on the restored copy; "
        + (f"NOT EQUAL: {unequal}" if unequal else "all equal"),
    )
    evidence.window(
        f"backup: {window_backup}. Restore: {window_restore}. Digests, size measurements, the change to the "
        "source between backup and restore, and clean-up are outside both windows"
    )
    where = f"{backup_bytes:,} bytes written" if not elsewhere or elsewhere.startswith("no ") else elsewhere
    if unshown and not unequal:
        evidence.not_shown("BZ-DB-4e", statistic=f"{method}: one backup of {source.data.server_bytes:,} bytes "
                           f"in {b:.2f} s", why=unshown)  # fmt: skip
    else:
        evidence.measure(
            "BZ-DB-4e",
            b,
            "s",
            statistic=f"{method}: one backup of {source.data.server_bytes:,} bytes ({where})",
            samples=[b],
            sample_unit="s",
            wrong=empty or unequal,
        )
    evidence.measure(
        "BZ-DB-4f",
        r,
        "s",
        statistic=f"{method}: one restore, compared with the source as of the backup",
        samples=[r],
        sample_unit="s",
        wrong=unequal or empty,
    )
    if unshown and not unequal:
        evidence.not_shown("SX-RDS-4", statistic=f"{method} backup restored, equal to the source as of the backup",
                           why=unshown)  # fmt: skip
        return
    evidence.measure(
        "SX-RDS-4",
        not (unequal or empty),
        "bool",
        statistic=f"{method} backup restored into a new instance or database, compared with the source as of the "
        "backup",
        wrong=unequal or empty,
    )


@pytest.mark.clause("BZ-DB-4e", "BZ-DB-4f", "SX-RDS-4")
def test_physical_backup_restore(target: Target, backup_source: Source, evidence: CaseEvidence) -> None:
    """Physical backup (pg_basebackup / mariadb-backup, or the vendor's command) and its restore."""
    src = backup_source
    evidence.parameters(retention_730_days=_retention(target))
    if isinstance(target, ContainerTarget):
        _container_backup_restore(target, src, evidence)
        return
    if not src.embedded:
        _vendor_backup_restore(target, src, evidence)
        return
    run_progress = evidence.progress
    before = _source_digest(src, evidence, target.label)
    out = src.work.path / "physical"
    restored: EmbeddedPostgres | EmbeddedMariaDB | None = None
    change: SourceChange | None = None
    try:
        if isinstance(src.server, EmbeddedPostgres):
            cmd = src.server.physical_backup_command(out)
            run_progress(f"{target.label}: pg_basebackup")
            backup = [timed("pg_basebackup -Ft -X fetch -c fast", cmd)]
            size = written(out)
            change = _change_source(src)
            open_for(out, src.server.run_as)
            restored = EmbeddedPostgres(
                "restored-physical",
                target.namespace,
                src.server.bindir_option,
                restore_from=out / "base.tar",
                settings={"archive_mode": "off"},
                create_namespace=False,
            )
            run_progress(f"{target.label}: restoring the base backup")
            t0 = time.perf_counter()
            restored.start()
            restore = [
                Phase(
                    "extract base.tar into a new data directory and start the server until it accepts "
                    "connections (pg_ctl start -w)",
                    round(time.perf_counter() - t0, 4),
                    f"tar -xf base.tar; pg_ctl start -w (port {restored._ep().port})",
                )
            ]
            windows = (
                "pg_basebackup -Ft -X fetch (WAL inside base.tar) from its start to its exit",
                "tar extraction of base.tar into an empty data directory plus pg_ctl start -w, until the "
                "restored server accepts connections",
            )
        else:
            assert isinstance(src.server, EmbeddedMariaDB)
            cmd = src.server.physical_backup_command(out)
            run_progress(f"{target.label}: mariadb-backup --backup")
            backup = [timed("mariadb-backup --backup", cmd)]
            size = written(out)
            change = _change_source(src)
            restore = [
                timed(
                    "mariadb-backup --prepare", ["mariadb-backup", "--no-defaults", "--prepare", f"--target-dir={out}"]
                )
            ]
            restored = EmbeddedMariaDB(
                "restored-physical",
                target.namespace,
                src.server.bindir_option,
                restore_from=out,
                create_namespace=False,
            )
            t0 = time.perf_counter()
            restored.start()
            restore.append(
                Phase(
                    "mariadb-backup --copy-back into an empty data directory and start mariadbd "
                    "until it accepts connections",
                    round(time.perf_counter() - t0, 4),
                    "mariadb-backup --copy-back; mariadbd",
                )
            )
            windows = (
                "mariadb-backup --backup from its start to its exit",
                "mariadb-backup --prepare, then --copy-back and mariadbd start until it accepts "
                "connections (phases listed separately)",
            )
        run_progress(f"{target.label}: digest of the restored copy")
        unequal = _verdict_after_restore(
            src, before, change, lambda: restored.connect_database(src.data.database), src.schema, evidence, "restored"
        )
        _record(evidence, src, "physical", backup, restore, size, before, change, unequal, *windows)
    finally:
        if restored is not None:
            restored.stop()
        _undo_change(src, change)
        shutil.rmtree(out, ignore_errors=True)
    evidence.require_pass()


@pytest.mark.clause("BZ-DB-4e", "BZ-DB-4f", "SX-RDS-4")
def test_logical_backup_restore(target: Target, backup_source: Source, evidence: CaseEvidence) -> None:
    """Database-level logical backup (pg_dump -Fd -j2 / mariadb-dump) restored into a new database."""
    src = backup_source
    evidence.parameters(retention_730_days=_retention(target))
    server = src.server
    ep = server._ep()
    env = ep.client_env(server.dialect)
    conn_args = ep.client_args(server.dialect)
    new_db = f"{target.namespace}_restored" if not src.embedded else RESTORED_DB
    before = _source_digest(src, evidence, target.label)
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
            change = _change_source(src)
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
            change = _change_source(src)
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
        unequal = _verdict_after_restore(
            src, before, change, lambda: server.connect_database(new_db), restored_schema, evidence, "restored"
        )
        _record(evidence, src, "logical (database level)", backup, restore, size, before, change, unequal, *windows)
    finally:
        _undo_change(src, change)
        if created:
            with server.connect(in_namespace=False) as admin, admin.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {new_db}")
        shutil.rmtree(out, ignore_errors=True)
        out.with_suffix(".sql").unlink(missing_ok=True)
    evidence.require_pass()


def _create_database(server: Target, name: str) -> Phase:
    """CREATE DATABASE, timed from the statement's start to its end (the connection is opened before)."""
    admin = server.connect(in_namespace=False)
    try:
        t0 = time.perf_counter()
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        return Phase("CREATE DATABASE", round(time.perf_counter() - t0, 4), f"CREATE DATABASE {name}")
    finally:
        admin.close()


def _container_backup_restore(target: ContainerTarget, src: Source, evidence: CaseEvidence) -> None:
    """The engine's own physical backup inside the container, restored into a new container of the same image."""
    before = _source_digest(src, evidence, target.label)
    out = src.work.sub("container-physical")
    restored: ContainerTarget | None = None
    change: SourceChange | None = None
    try:
        evidence.progress(f"{target.label}: physical backup inside the container")
        t0 = time.perf_counter()
        what = target.physical_backup(out)
        backup = [Phase(what, round(time.perf_counter() - t0, 4), what)]
        size = written(out)
        change = _change_source(src)
        evidence.progress(f"{target.label}: restoring into a new container")
        t0 = time.perf_counter()
        archive, how = target.restore_archive(out, src.work.path)
        restore = [Phase(how, round(time.perf_counter() - t0, 4), how)]
        t0 = time.perf_counter()
        restored = target.restored_copy(archive)
        restore.append(
            Phase(
                "a new container of the same image started on the restored data directory, until ready",
                round(time.perf_counter() - t0, 4),
                f"testcontainers start of {target.image} with the archive put into its data volume",
            )
        )
        unequal = _verdict_after_restore(
            src, before, change, lambda: restored.connect_database(src.data.database), src.schema, evidence, "restored"
        )
        _record(
            evidence,
            src,
            "physical, inside the container",
            backup,
            restore,
            size,
            before,
            change,
            unequal,
            f"{what}, from the start of the backup to the last file on the host",
            "preparing the backup (MariaDB), then a new container started on it until it accepts connections",
        )
    finally:
        if restored is not None:
            restored.stop()
        _undo_change(src, change)
        shutil.rmtree(out, ignore_errors=True)
        (src.work.path / "restore.tar").unlink(missing_ok=True)
    evidence.require_pass()


def _shown_artefact(
    target: Target, commands: dict[str, str], values: dict[str, str | int], evidence: CaseEvidence
) -> str:
    """Where a vendor's backup that wrote nothing to the output folder keeps its artefact: the profile's
    ``show_backup`` command prints one line per file, ``<bytes> <sha256> <name>``; "no …" when none was shown."""
    if "show_backup" not in commands:
        return "no show_backup command in the profile's [commands]"
    import tempfile

    from clauseproof.core.commands import fill_command, timed

    with tempfile.NamedTemporaryFile(prefix="clauseproof-show-") as out:
        timed("vendor show_backup", [fill_command(commands["show_backup"], **values)], shell=True,
              env=target._ep().client_env(target.dialect), stdout=Path(out.name), timeout=300)  # fmt: skip
        lines = Path(out.name).read_text(errors="replace").splitlines()
    artefacts: list[dict[str, Any]] = []
    for line in lines:
        parts = line.split(maxsplit=2)
        if len(parts) == 3 and parts[0].isdigit() and re.fullmatch(r"[0-9a-f]{64}", parts[1]):
            artefacts.append({"bytes": int(parts[0]), "sha256": parts[1], "name": parts[2]})
    evidence.parameters(backup_artefact=artefacts, backup_artefact_listed_by=commands["show_backup"])
    total = sum(int(a["bytes"]) for a in artefacts)
    if total == 0:
        return f"no artefact in what show_backup printed ({len(lines)} lines; expected '<bytes> <sha256> <name>')"
    return f"{total:,} bytes in {len(artefacts)} files shown by the vendor's show_backup, outside the output folder"


def _vendor_backup_restore(target: Target, src: Source, evidence: CaseEvidence) -> None:
    profile = target.profile if isinstance(target, ExternalTarget) else None
    commands = profile.commands if profile else {}
    if not {"backup", "restore"} <= set(commands):
        pytest.skip(
            "physical backup of an external target needs the vendor's commands: declare [commands] "
            "backup and restore in the profile (placeholders {host} {port} {user} {database} "
            "{output_dir} {new_database})"
        )
    ep = target._ep()
    out = src.work.sub("vendor")
    new_db = f"{target.namespace}_restored"
    values: dict[str, str | int] = {
        "host": ep.host,
        "port": ep.port,
        "user": ep.user,
        "database": src.data.database,
        "output_dir": str(out),
        "new_database": new_db,
    }
    before = _source_digest(src, evidence, target.label)
    change: SourceChange | None = None
    try:
        backup = [vendor_command("vendor backup", commands["backup"], target, values)]
        size = written(out)
        elsewhere = _shown_artefact(target, commands, values, evidence) if size[0] == 0 else ""
        if elsewhere and not elsewhere.startswith("no "):
            size = (sum(a["bytes"] for a in evidence.record.parameters["backup_artefact"]),
                    len(evidence.record.parameters["backup_artefact"]))  # fmt: skip
        change = _change_source(src)
        restore = [vendor_command("vendor restore", commands["restore"], target, values)]
        unequal = _verdict_after_restore(
            src,
            before,
            change,
            lambda: target.connect_database(new_db),
            "public" if target.dialect == "postgresql" else new_db,
            evidence,
            "restored",
        )
        _record(
            evidence,
            src,
            "vendor command",
            backup,
            restore,
            size,
            before,
            change,
            unequal,
            "the vendor's backup command from its start to its exit",
            "the vendor's restore command from its start to its exit",
            elsewhere,
        )
    finally:
        _undo_change(src, change)
        with target.connect(in_namespace=False) as admin, admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {new_db}")
        shutil.rmtree(out, ignore_errors=True)
    evidence.require_pass()


__all__ = ["ClauseproofError"]


PITR_TABLE = "pitr_batches"
PITR_BATCHES = 3
PITR_ROWS = 1000


@pytest.mark.clause("SX-RDS-4")
def test_point_in_time_recovery(target: Target, pitr_source: Source | None, evidence: CaseEvidence) -> None:
    """Write batches, record server-side points between them, restore to each point exactly.

    PostgreSQL: base backup + WAL archive, ``recovery_target_time`` = the server clock recorded
    after each batch.  MariaDB: mariadb-backup + binary log replayed with mariadb-binlog up to the
    GTID recorded with the server clock after each batch.  A point beyond the archive must be
    refused, never silently restored to the end.
    """
    evidence.parameters(retention_730_days=_retention(target))
    src = pitr_source
    if src is None and isinstance(target, ContainerTarget):
        pytest.skip(
            "point-in-time recovery is not run in containers yet (it needs continuous archiving set up in the "
            "container and a restore to a time into a new one); the embedded default shows the procedure"
        )
    if src is None:
        pytest.skip(
            "point-in-time recovery of an external target needs the vendor's restore-to-time command; "
            "the embedded default shows the procedure"
        )
    server = src.server
    work = src.work.sub("pitr", owned=isinstance(server, EmbeddedPostgres))
    conn = src.connect()
    schema = src.schema
    pitr_schema = schema
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {PITR_TABLE}")
        cur.execute("DROP TABLE IF EXISTS pitr_sentinel")
        cur.execute(f"CREATE TABLE {PITR_TABLE} (id BIGINT PRIMARY KEY, batch INT NOT NULL, payload VARCHAR(64))")
    evidence.progress(f"{target.label}: base backup for point-in-time recovery")
    if isinstance(server, EmbeddedPostgres):
        timed(
            "pg_basebackup",
            server.physical_backup_command(work / "base"),
        )
        open_for(work, server.run_as)
        start_gtid = ""
    else:
        assert isinstance(server, EmbeddedMariaDB)
        timed(
            "mariadb-backup --backup",
            server.physical_backup_command(work / "base"),
        )
        timed(
            "mariadb-backup --prepare",
            ["mariadb-backup", "--no-defaults", "--prepare", f"--target-dir={work / 'base'}"],
        )
        start_gtid = (work / "base" / "xtrabackup_binlog_info").read_text().split()[2]
    points: list[dict[str, Any]] = []
    with conn.cursor() as cur:
        for b in range(1, PITR_BATCHES + 1):
            rows = ", ".join(f"({b * 100000 + i}, {b}, 'batch {b} row {i}')" for i in range(PITR_ROWS))
            cur.execute(f"INSERT INTO {PITR_TABLE} VALUES {rows}")
            time.sleep(0.05)  # the recorded point lies strictly between this batch's commit and the next
            if server.dialect == "postgresql":
                cur.execute("SELECT clock_timestamp()::text, pg_current_wal_lsn()::text")
            else:
                cur.execute("SELECT CAST(NOW(6) AS CHAR), @@gtid_binlog_pos")
            ts, pos = cur.fetchone()
            digest = digest_tables(conn, server.dialect, pitr_schema)[PITR_TABLE]
            points.append(
                {
                    "batch": b,
                    "server_time": ts,
                    "position": pos,
                    "rows": digest.total.count,
                    "digest": str(digest.total),
                    "_digest": digest,
                }
            )
            time.sleep(0.05)
        # A commit after the last point, so the archive covers it (recovery needs to see past a target).
        cur.execute("CREATE TABLE pitr_sentinel (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO pitr_sentinel VALUES (1)")
        if server.dialect == "postgresql":
            cur.execute("SELECT pg_walfile_name(pg_switch_wal())")
            (last_wal,) = cur.fetchone()
            _wait_archived(conn, last_wal)
        else:
            cur.execute("FLUSH BINARY LOGS")
    conn.close()
    results = []
    unequal: list[str] = []  # a difference found is the clause's FAIL, named, never an error of the case
    refused = ""
    try:
        for p in points:
            evidence.progress(f"{target.label}: restoring to point {p['batch']} ({p['server_time']})")
            got = _restore_to(server, src, work, target, p, start_gtid)
            ok = got == p["_digest"]
            results.append({"point": p["batch"], "expected": p["digest"], "restored": str(got.total), "equal": ok})
            if not ok:
                unequal.append(
                    f"restore to point {p['batch']} ({p['server_time']}) gave {got.total}, expected "
                    f"{p['digest']}: " + "; ".join(compare_digests({"t": p["_digest"]}, {"t": got}))
                )
        # A point beyond the archive must be refused.
        beyond = dict(points[-1])
        if server.dialect == "postgresql":
            beyond["server_time"] = "2999-01-01 00:00:00+00"
        else:
            domain, srv, seq = str(points[-1]["position"]).split("-")
            beyond["position"] = f"{domain}-{srv}-{int(seq) + 1000}"
        evidence.progress(f"{target.label}: asking for a point beyond the archive (must be refused)")
        try:
            _restore_to(server, src, work, target, beyond, start_gtid)
        except ClauseproofError as exc:
            lines = str(exc).splitlines()
            refused = next((ln.strip() for ln in lines if "FATAL" in ln), lines[0])[:300]
        else:
            unequal.append("a restore to a point beyond the archive was not refused")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    evidence.parameters(
        source_notes=src.notes,
        method="PostgreSQL: base backup + WAL archive, recovery_target_time"
        if server.dialect == "postgresql"
        else "MariaDB: mariadb-backup + binary log (ROW) replayed by mariadb-binlog --stop-position=<GTID>",
        batches=PITR_BATCHES,
        rows_per_batch=PITR_ROWS,
        points=[{k: v for k, v in p.items() if not k.startswith("_")} for p in points],
        restores=results,
        beyond_archive={
            "requested": beyond.get("server_time") if server.dialect == "postgresql" else beyond["position"],
            "refused_with": refused,
        },
    )
    if refused:
        evidence.note(f"A point beyond the archive was refused: {refused}")
    evidence.measure(
        "SX-RDS-4",
        not unequal,
        "bool",
        statistic=f"point-in-time restore to each of {PITR_BATCHES} recorded points gave exactly that "
        "point's rows; a point beyond the archive was refused"
        if not unequal
        else f"point-in-time restore: {len(unequal)} of {PITR_BATCHES + 1} checks found a difference",
        why="; ".join(unequal),
    )
    evidence.require_pass()


def _wait_archived(conn: Any, wal: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with conn.cursor() as cur:
            cur.execute("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
            (last,) = cur.fetchone()
        if last >= wal:
            return
        time.sleep(0.1)
    raise ClauseproofError(f"WAL segment {wal} was not archived within {timeout:g} s")


def _restore_to(
    server: Target, src: Source, work: Any, target: Target, point: dict[str, Any], start_gtid: str
) -> TableDigest:
    """Restore a fresh copy to ``point`` and return the digest of the PITR table there."""
    restored: EmbeddedPostgres | EmbeddedMariaDB
    if isinstance(server, EmbeddedPostgres):
        assert src.archive is not None
        restored = EmbeddedPostgres(
            "restored-pitr",
            target.namespace,
            server.bindir_option,
            restore_from=work / "base" / "base.tar",
            recovery=True,
            create_namespace=False,
            settings={
                "archive_mode": "off",
                "restore_command": f"cp {src.archive}/%f %p",
                "recovery_target_time": str(point["server_time"]),
                "recovery_target_action": "promote",
            },
        )
        try:
            restored.start()
            return _digest(lambda: restored.connect_database(src.data.database), src, src.schema)[PITR_TABLE]
        finally:
            restored.stop()
    assert isinstance(server, EmbeddedMariaDB) and server.folder is not None
    binlogs = sorted(str(p) for p in server.data_dir.glob("binlog.[0-9]*"))
    replay = work / "replay.sql"
    proc = __import__("subprocess").run(
        [
            "mariadb-binlog",
            "--no-defaults",
            f"--start-position={start_gtid}",
            f"--stop-position={point['position']}",
            *binlogs,
        ],
        stdout=open(replay, "wb"),
        stderr=-1,
        check=False,
    )
    err = proc.stderr.decode(errors="replace")
    if proc.returncode != 0 or "Did not reach stop position" in err:
        raise ClauseproofError(f"refused: the binary log archive does not reach {point['position']}: {err.strip()}")
    restored = EmbeddedMariaDB(
        "restored-pitr", target.namespace, server.bindir_option, restore_from=work / "base", create_namespace=False
    )
    try:
        restored.start()
        timed(
            "mariadb < replay",
            ["mariadb", "--no-defaults", f"--socket={restored.socket_path}", "-u", "root"],
            stdin=replay,
        )
        return _digest(lambda: restored.connect_database(src.data.database), src, src.schema)[PITR_TABLE]
    finally:
        restored.stop()


def _retention(target: Target) -> str:
    """What the target declares about backup retention (SX-RDS-4 asks for up to 730 days)."""
    profile = target.profile if isinstance(target, ExternalTarget) else None
    days = profile.server.get("backup_retention_days") if profile else None
    if days is not None:
        return f"declared, not measured: the profile declares {days} days of backup retention (clause: up to 730)"
    return (
        "declared, not measured: nothing declared; the embedded archive lives for the run only. A profile "
        "declares it as [server] backup_retention_days"
    )
