"""BZ-DB-2: SM4 storage encryption of data files, logs and backups — proven or disproven part by part.

Known-answer tests check the harness's own SM4.  The canary scan writes 16 random canaries
through the server (table rows, an index, a temporary table, an update whose old values go to
the logs), forces them to disk, takes a physical backup, and searches the raw bytes of every
file class for them.  A class holding a canary is not encrypted.  The plain embedded servers are
the positive control: they must fail, naming where the plaintext was found.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clauseproof.backup.phases import WorkFolder, open_for, timed, vendor_command
from clauseproof.core.errors import first_line
from clauseproof.core.evidence import CaseEvidence
from clauseproof.encryption.atrest import CLASSES, make_canaries, scan_files, scan_tree
from clauseproof.encryption.sm4 import KAT_KEY, KAT_ONE, known_answers, random_vectors
from clauseproof.run.plugin import RUN_KEY
from clauseproof.targets.base import Target, row_numbers
from clauseproof.targets.containers.target import ContainerTarget
from clauseproof.targets.single.embedded import EmbeddedMariaDB, EmbeddedPostgres
from clauseproof.targets.single.external import ExternalTarget

#: Which file classes each part of the clause covers.
PARTS = {
    "postgresql": {"data files": ["data files", "temporary files"], "log files": ["WAL"]},
    "mysql": {
        "data files": ["data files", "temporary files", "undo log", "Aria logs"],
        "log files": ["redo log", "binary and relay logs"],
    },
}


@pytest.mark.clause("BZ-DB-2")
def test_sm4_known_answers(evidence: CaseEvidence) -> None:
    """The harness's SM4 (``cryptography``) against both GB/T 32907-2016 examples."""
    started = time.perf_counter()
    results = known_answers()
    evidence.parameters(
        known_answers=[{"name": r.name, "expected": r.expected, "got": r.got} for r in results],
        seconds=round(time.perf_counter() - started, 3),
    )
    evidence.measure(
        "BZ-DB-2",
        all(r.ok for r in results),
        "bool",
        statistic="part: SM4 known-answer tests of the harness's own SM4 (cryptography)",
    )
    evidence.require_pass()


#: Random (key, block) pairs per run beside the published example: a looked-up answer cannot pass.
RANDOM_VECTORS = 8


@pytest.mark.clause("BZ-DB-2")
def test_target_sm4_known_answer(target: Target, evidence: CaseEvidence) -> None:
    """The target's own SM4, through the profile's [sm4] encrypt_sql: GB/T 32907-2016 example 1 and
    random keys and blocks made for this run, each compared with the harness's SM4 (cryptography)."""
    sql = target.profile.sm4.get("encrypt_sql") if isinstance(target, ExternalTarget) and target.profile else None
    if not sql:
        pytest.skip(
            "the target's SM4 is tested when its profile declares [sm4] encrypt_sql "
            "(placeholders {key_hex} {plaintext_hex}, returning hex)"
        )
    vectors = [(KAT_KEY, KAT_KEY, KAT_ONE), *random_vectors(RANDOM_VECTORS)]
    results = []
    with target.connect() as conn, conn.cursor() as cur:
        for key, block, expected in vectors:
            cur.execute(sql.format(key_hex=key.hex(), plaintext_hex=block.hex()))
            row = cur.fetchone()
            got = _ciphertext_hex(row[0] if row else "")
            results.append({"key": key.hex(), "plaintext": block.hex(), "expected": expected.hex(), "got": got})
    wrong = [r for r in results if r["got"] != r["expected"]]
    published_ok = results[0]["got"] == results[0]["expected"]
    evidence.parameters(
        encrypt_sql=sql,
        vectors=results,
        vectors_from="GB/T 32907-2016 example 1, then random keys and blocks made for this run (test keys that "
        "protect nothing, recorded so the check can be repeated), expected values from the harness's SM4",
    )
    if not wrong:
        why = ""
    elif published_ok:
        why = (
            f"the published example is right but {len(wrong)} of {RANDOM_VECTORS} random vectors are wrong "
            "(a looked-up answer is not an SM4 implementation)"
        )
    else:
        why = f"{len(wrong)} of {len(results)} vectors wrong, the published example among them"
    evidence.measure(
        "BZ-DB-2",
        not wrong,
        "bool",
        statistic=f"part: the target's SM4 matches the harness's SM4 on GB/T 32907-2016 example 1 and "
        f"{RANDOM_VECTORS} random keys and blocks",
        why=why,
    )
    evidence.require_pass()


def _ciphertext_hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):  # a binary result: the ciphertext itself
        return bytes(value).hex()
    return str(value).strip().lower().removeprefix("\\x")  # text: hex, possibly with PostgreSQL's bytea prefix


def _write_canaries(target: Target, conn: Any, canaries: list[bytes], evidence: CaseEvidence) -> tuple[Any, bool]:
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
        evidence.note(f"forcing the canaries to disk was refused: {first_line(exc)}")
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
        evidence.note(
            f"The buffer pool holds {pool >> 20} MiB; writing {want >> 20} MiB of temporary filler to spill the "
            f"temporary table is more than this case writes ({TEMP_FILLER_MAX >> 20} MiB)."
        )
        return
    rows = want // 1000
    cur.execute(
        f"INSERT INTO canary_tmp (id, pad) SELECT i, REPEAT('f', 990) FROM {row_numbers(cur, 'mysql', 100, rows + 99)}"
    )
    evidence.parameters(temporary_filler_bytes=rows * 1000, buffer_pool_bytes=pool)


def _force_to_disk(target: Target, conn: Any) -> None:
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


def _expected_files(target: Target, conn: Any, evidence: CaseEvidence) -> list[Expected]:
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
            evidence.note(f"the binary log position could not be read ({first_line(exc)}); its file is not required")
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


def _currency_problems(root: Path, expected: list[Expected]) -> dict[str, list[str]]:
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


@pytest.mark.clause("BZ-DB-2")
def test_canary_scan(target: Target, evidence: CaseEvidence) -> None:
    """Plaintext canaries in data files, logs, temporary files and backups (each a part of BZ-DB-2).

    Embedded targets are scanned in place; an external target needs the profile's
    ``[commands] copy_files`` (which copies the data directory to ``{output_dir}``), and its
    ``backup`` command if physical backups are to be scanned too.
    """
    commands = target.profile.commands if isinstance(target, ExternalTarget) and target.profile else {}
    if not isinstance(target, EmbeddedPostgres | EmbeddedMariaDB | ContainerTarget) and "copy_files" not in commands:
        pytest.skip(
            "the raw files of an external target are reachable only through the profile's "
            "[commands] copy_files (placeholders {host} {port} {user} {database} {output_dir})"
        )
    _scan(target, evidence)


@pytest.fixture(scope="module")
def encrypted_mariadb(request: pytest.FixtureRequest) -> Iterator[EmbeddedMariaDB]:
    run = request.config.stash[RUN_KEY]
    spec = "embedded-mariadb-encrypted"
    if spec in run.settings.targets:
        pytest.skip(f"{spec} is a target of this run: test_canary_scan covers it")
    if not any(t.startswith("embedded-") for t in run.settings.targets):
        pytest.skip("the encrypted MariaDB variant runs beside embedded targets only")
    t = run.target(spec)
    try:
        assert isinstance(t, EmbeddedMariaDB)
        yield t
    finally:
        run.stop_target(spec)


@pytest.mark.clause("BZ-DB-2")
def test_canary_scan_encrypted_mariadb(encrypted_mariadb: EmbeddedMariaDB, evidence: CaseEvidence) -> None:
    """The same scan on MariaDB with data-at-rest encryption (file key management, AES_CTR)."""
    evidence.record.target = encrypted_mariadb.label
    _scan(encrypted_mariadb, evidence)


def _physical_backup(target: Target, out: Path, commands: dict[str, str], values: dict[str, str | int]) -> bool:
    """Take a physical backup into ``out``; False when there is no way to (an external target without one)."""
    if isinstance(target, EmbeddedPostgres):
        timed(
            "pg_basebackup",
            target.physical_backup_command(out),
        )
        open_for(out, target.run_as)
        return True
    if isinstance(target, EmbeddedMariaDB):
        timed(
            "mariadb-backup --backup",
            target.physical_backup_command(out),
        )
        return True
    if isinstance(target, ContainerTarget):
        target.physical_backup(out)
        return True
    if "backup" in commands:
        out.mkdir(parents=True, exist_ok=True)
        vendor_command("vendor backup", commands["backup"], target, {**values, "output_dir": str(out)})
        return True
    return False


def _restored_canaries(
    target: Target, commands: dict[str, str], values: dict[str, str | int], rows: list[bytes]
) -> str:
    """Restore a vendor's backup with its restore command and look for the canary rows; '' when all are
    there, otherwise why the backup is not shown to hold them."""
    if isinstance(target, ContainerTarget):
        return _container_canaries(target, Path(str(values["output_dir"])), rows)
    if "restore" not in commands:
        return "the backup is not shown to hold the canary table: the profile declares no [commands] restore"
    new_db = f"{target.namespace}_restored"
    try:
        vendor_command("vendor restore", commands["restore"], target, {**values, "new_database": new_db})
        table = f"{target.namespace}.canary" if target.dialect == "postgresql" else "canary"
        with target.connect_database(new_db) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT secret FROM {table}")
            present = {str(r[0]).encode() for r in cur.fetchall()}
    except Exception as exc:
        return f"restoring the backup to look for the canary rows failed: {first_line(exc)}"
    finally:
        with contextlib.suppress(Exception), target.connect(in_namespace=False) as admin, admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {new_db}")
    missing = [c for c in rows if c not in present]
    return f"the restored backup lacks {len(missing)} of {len(rows)} canary rows" if missing else ""


def _container_canaries(target: ContainerTarget, backup: Path, rows: list[bytes]) -> str:
    """The container's backup restored into a new container, and the canary rows looked for there."""
    restored = None
    try:
        archive, _ = target.restore_archive(backup, backup.parent)
        restored = target.restored_copy(archive, "restored-canaries")
        with contextlib.closing(restored.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT secret FROM canary")
            present = {str(r[0]).encode() for r in cur.fetchall()}
    except Exception as exc:
        return f"restoring the backup to look for the canary rows failed: {first_line(exc)}"
    finally:
        if restored is not None:
            restored.stop()
        (backup.parent / "restore.tar").unlink(missing_ok=True)
    missing = [c for c in rows if c not in present]
    return f"the restored backup lacks {len(missing)} of {len(rows)} canary rows" if missing else ""


def _logical_dump(target: Target, dump: Path) -> None:
    ep = target._ep()
    if target.dialect == "postgresql":
        tool = str(target.bindir() / "pg_dump") if isinstance(target, EmbeddedPostgres) else "pg_dump"
        timed(
            "pg_dump",
            [
                tool,
                "-h",
                ep.host,
                "-p",
                str(ep.port),
                "-U",
                ep.user,
                "-d",
                ep.database,
                "-n",
                target.namespace,
                "-f",
                str(dump),
            ],
            env={"PGPASSWORD": ep.password} if ep.password else None,
        )
    else:
        timed(
            "mariadb-dump",
            ["mariadb-dump", "--no-defaults", "-h", ep.host, "-P", str(ep.port), "-u", ep.user, target.namespace],
            stdout=dump,
            env={"MYSQL_PWD": ep.password} if ep.password else None,
        )


#: The class that must have files for a part's "no canary found" to count (the others may be empty).
ESSENTIAL = {
    "data files": ("data files",),
    "log files": ("WAL", "redo log"),
    "physical backup files": ("physical backup",),
    "logical backup files (a logical dump is plaintext by design)": ("logical backup",),
}


def _unshown(
    part: str, classes: list[str], files: dict[str, int], stale: dict[str, list[str]], forced: bool
) -> list[str]:
    """Why finding no canary in a part's files would prove nothing: no file of its essential class, a file the
    server names missing or short in the copy, or canaries never forced to disk."""
    why = [f"no {c} file was scanned" for c in classes if c in ESSENTIAL.get(part, ()) and not files.get(c)]
    if part in ("data files", "log files"):  # one copy: a file of either part missing or short shows it is not current
        why += stale.get("data files", []) + stale.get("log files", [])
    else:
        why += stale.get(part, [])
    if part == "data files" and not forced:
        why.append("the canaries were not forced to disk (see the notes)")
    return why


def _scan(target: Target, evidence: CaseEvidence) -> None:
    embedded = isinstance(target, EmbeddedPostgres | EmbeddedMariaDB)
    commands = target.profile.commands if isinstance(target, ExternalTarget) and target.profile else {}
    canaries = make_canaries(16)
    conn = target.connect()
    temp, forced = _write_canaries(target, conn, canaries, evidence)
    expected = _expected_files(target, conn, evidence)
    work = WorkFolder("atrest", owner=target.run_as if isinstance(target, EmbeddedPostgres) else None)
    ep = target._ep()
    values: dict[str, str | int] = {"host": ep.host, "port": ep.port, "user": ep.user, "database": ep.database}
    not_inspectable: dict[str, str] = {}
    try:
        if isinstance(target, EmbeddedPostgres | EmbeddedMariaDB):
            root = target.data_dir
        elif isinstance(target, ContainerTarget):
            root = work.sub("files")
            evidence.progress(f"{target.label}: copying the container's data directory out")
            target.copy_files(root)
        else:
            root = work.sub("files")
            evidence.progress(f"{target.label}: copying the target's files with the profile's copy_files command")
            vendor_command("vendor copy_files", commands["copy_files"], target, {**values, "output_dir": str(root)})
        evidence.progress(f"{target.label}: scanning the data directory for {len(canaries)} canaries")
        result = scan_tree(root, CLASSES[target.dialect], canaries)
        stale = _currency_problems(root, expected)
        backup = work.path / "backup"
        if _physical_backup(target, backup, commands, values):
            files = [p for p in backup.rglob("*") if p.is_file()]
            hits, n = scan_files(files, canaries)
            result.found["physical backup"], result.files["physical backup"] = hits, len(files)
            result.bytes_scanned += n
            # a backup smaller than the canary table it must hold cannot be the table's backup
            least = next(e.min_bytes for e in expected if e.part == "data files")
            if n < least:
                stale["physical backup files"] = [
                    f"the backup wrote {n:,} bytes in {len(files)} files, less than the canary table's {least:,} bytes"
                ]
            elif not embedded:  # a vendor's backup is shown to hold the canaries only by restoring it
                shown = _restored_canaries(target, commands, {**values, "output_dir": str(backup)}, canaries[:8])
                if shown:
                    stale["physical backup files"] = [shown]
        else:
            not_inspectable["physical backup"] = "the profile declares no [commands] backup"
        dump = work.path / "logical.sql"
        _logical_dump(target, dump)
        hits, n = scan_files([dump], canaries)
        result.found["logical backup"], result.files["logical backup"] = hits, 1
        result.bytes_scanned += n
    finally:
        temp.close()
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS canary")
        conn.close()
        shutil.rmtree(work.path, ignore_errors=True)
    where = {
        cls: sorted({f.split("/data/")[-1].split("/files/")[-1] for fs in hits.values() for f in fs})[:5]
        for cls, hits in result.found.items()
        if hits
    }
    encrypted = isinstance(target, EmbeddedMariaDB) and target.encrypted
    if encrypted:
        assert isinstance(target, EmbeddedMariaDB)
        cipher = (
            "MariaDB data-at-rest encryption: file_key_management, "
            f"{target.settings['file_key_management_encryption_algorithm']}, one generated key (never recorded)"
        )
    elif embedded:
        cipher = "none: a plain server (the positive control that shows the scan finds plaintext)"
    elif isinstance(target, ContainerTarget):
        cipher = f"as the image {target.image} configures it"
    else:
        cipher = "as the vendor configured it (the profile's [server] notes say more)"
    temp_canaries = {c.decode() for c in canaries[8:12]}
    temp_on_disk = any(temp_canaries & set(hits) for hits in result.found.values())
    pool = int(evidence.record.parameters.get("buffer_pool_bytes") or 0)
    ibtmp = root / "ibtmp1"
    ibtmp_size = ibtmp.stat().st_size if target.dialect == "mysql" and ibtmp.exists() else 0
    if pool and ibtmp_size > pool and not temp_on_disk:
        evidence.note(
            f"The temporary table's pages reached disk (ibtmp1 grew to {ibtmp_size >> 20} MiB, beyond the "
            f"{pool >> 20} MiB buffer pool) and none of its 4 canaries is there in plaintext."
        )
        temp_on_disk = True
    elif not temp_on_disk:
        evidence.note(
            "The 4 canaries of the temporary table were found in no file class: the temporary table "
            "stayed in memory, so this scan shows temporary-file encryption neither way."
        )
    evidence.parameters(
        canaries=len(canaries),
        canary_length=len(canaries[0]),
        written_as="8 in table rows with an index on them, 4 in a temporary table held open during the scan "
        "(PostgreSQL: temp_buffers 800kB and 2 MB of filler; InnoDB: 1.3 x the buffer pool of filler; so its "
        "pages reach disk), 4 as old values "
        "overwritten by an UPDATE (the logs keep them)",
        files_from="the data directory in place"
        if embedded
        else "the container's data directory, copied out through the engine's API"
        if isinstance(target, ContainerTarget)
        else "the profile's copy_files command",
        canaries_forced_to_disk=forced,
        files_required=[vars(e) for e in expected],
        files_missing_or_short=stale,
        files_per_class=result.files,
        canaries_found_per_class={c: len(h) for c, h in result.found.items()},
        plaintext_found_in=where,
        not_inspectable=not_inspectable,
        bytes_scanned=result.bytes_scanned,
        scan_mb_per_s=round(result.mb_per_s, 1),
        at_rest_encryption=cipher,
        temporary_table_reached_disk=temp_on_disk,
    )
    parts = {
        **PARTS[target.dialect],
        "physical backup files": ["physical backup"],
        "logical backup files (a logical dump is plaintext by design)": ["logical backup"],
    }
    empty = [c for c, n in result.files.items() if n == 0 and c != "other files"]
    if empty:
        evidence.note(f"file classes with no file to scan (shown neither way): {', '.join(empty)}")
    for part, classes in parts.items():
        statistic = f"part: {part} encrypted (no canary in {', '.join(classes)})"
        if any(c in not_inspectable for c in classes):
            evidence.not_shown(
                "BZ-DB-2",
                statistic=statistic,
                why="not inspected: " + "; ".join(not_inspectable[c] for c in classes if c in not_inspectable),
            )
            continue
        leaked = [c for c in classes if result.found.get(c)]
        missing = _unshown(part, classes, result.files, stale, forced)
        if leaked or not missing:
            evidence.measure(
                "BZ-DB-2", not leaked, "bool", statistic=statistic, why=f"plaintext found in {', '.join(leaked)}"
            )
        else:  # nothing found, but in files that are not shown to hold the canaries
            evidence.not_shown(
                "BZ-DB-2", statistic=statistic, why="the files scanned do not show it: " + "; ".join(missing)
            )
    if embedded:
        evidence.measure(
            "BZ-DB-2",
            False,
            "bool",
            statistic="part: SM4 is the storage cipher",
            why="MariaDB encrypts with AES (file_key_management offers AES_CBC and AES_CTR), not SM4"
            if encrypted
            else "no at-rest encryption is configured",
        )
    evidence.require_pass()
