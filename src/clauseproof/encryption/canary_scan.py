"""BZ-DB-2's canary scan: the canaries (:mod:`clauseproof.encryption.canaries`) are written through the server,
forced to disk, a physical backup and a logical dump are taken, and the raw bytes of every file class are searched
for them.  A class holding a canary is not encrypted; a class whose files are not shown to be current and complete
is NOT SHOWN, never PASS.

The files are read where the target's :class:`DataFiles` role puts them (the data directory in place; copied out of
a container), or copied by the profile's ``[commands] copy_files``; its physical backup by :class:`PhysicalBackups`
or the profile's ``backup`` (a vendor's backup is shown to hold the canaries only by restoring it)."""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from clauseproof.backup.phases import WorkFolder, timed, vendor_command
from clauseproof.core.errors import first_line
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import Text, msg
from clauseproof.encryption.atrest import CLASSES, ScanResult, make_canaries, scan_files, scan_tree
from clauseproof.encryption.canaries import Expected, currency_problems, expected_files, write_canaries
from clauseproof.targets.roles import Database, DataFiles, PhysicalBackups

#: Which file classes each part of the clause covers.
PARTS = {
    "postgresql": {"data files": ["data files", "temporary files"], "log files": ["WAL"]},
    "mysql": {
        "data files": ["data files", "temporary files", "undo log", "Aria logs"],
        "log files": ["redo log", "binary and relay logs"],
    },
}


def _physical_backup(target: Database, out: Path, commands: dict[str, str], values: dict[str, str | int]) -> bool:
    """Take a physical backup into ``out``; False when there is no way to (an external target without one)."""
    if isinstance(target, PhysicalBackups):
        target.take_physical_backup(out)
        return True
    if "backup" in commands:
        out.mkdir(parents=True, exist_ok=True)
        vendor_command("vendor backup", commands["backup"], target, {**values, "output_dir": str(out)})
        return True
    return False


def _restored_canaries(
    target: Database, commands: dict[str, str], values: dict[str, str | int], rows: list[bytes]
) -> str:
    """Restore a vendor's backup with its restore command and look for the canary rows; '' when all are
    there, otherwise why the backup is not shown to hold them."""
    if isinstance(target, PhysicalBackups):
        return _restored_copy_canaries(target, Path(str(values["output_dir"])), rows)
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


def _restored_copy_canaries(target: PhysicalBackups, backup: Path, rows: list[bytes]) -> str:
    """The backup restored into a new instance by the target's own procedure (a new container, say), and the
    canary rows looked for there."""
    restored = None
    scratch = backup.parent / "restore"
    scratch.mkdir(exist_ok=True)
    try:
        _, restored = target.restore_physical_backup(backup, scratch)
        with contextlib.closing(restored.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT secret FROM canary")
            present = {str(r[0]).encode() for r in cur.fetchall()}
    except Exception as exc:
        return f"restoring the backup to look for the canary rows failed: {first_line(exc)}"
    finally:
        if restored is not None:
            restored.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    missing = [c for c in rows if c not in present]
    return f"the restored backup lacks {len(missing)} of {len(rows)} canary rows" if missing else ""


def _logical_dump(target: Database, dump: Path) -> None:
    ep = target.address()
    if target.dialect == "postgresql":
        tool = target.tool("pg_dump")
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
#: the report's words for the parts and file classes (their English is the key)
TERMS = {
    "data files": "term_data_files",
    "log files": "term_log_files",
    "temporary files": "term_temporary_files",
    "undo log": "term_undo_log",
    "Aria logs": "term_aria_logs",
    "redo log": "term_redo_log",
    "binary and relay logs": "term_binary_relay_logs",
    "WAL": "term_wal",
    "physical backup": "term_physical_backup",
    "logical backup": "term_logical_backup",
    "physical backup files": "term_physical_backup_files",
    "logical backup files (a logical dump is plaintext by design)": "term_logical_backup_files",
}


def _term(name: str) -> Text | str:
    return msg(TERMS[name]) if name in TERMS else name


def _terms(names: list[str]) -> list[Text | str]:
    """The names as a list the report joins in its language ("a, b" / "a、b")."""
    return [_term(n) for n in names]


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


@dataclass
class _Scanned:
    """What the scan read: canaries found per file class, files the server names that the copy lacks, classes not
    inspected (and why), where the data directory was read, whether the canaries were forced to disk."""

    canaries: list[bytes]
    result: ScanResult
    stale: dict[str, list[str]]
    not_inspectable: dict[str, str]
    root: Path
    forced: bool
    expected: list[Expected]


def scan(target: Database, evidence: CaseEvidence) -> None:
    """Canaries written, the files read, each part of BZ-DB-2 judged (see the module's docstring)."""
    _judge(target, evidence, _read(target, evidence))


def _read(target: Database, evidence: CaseEvidence) -> _Scanned:
    """The canaries written and forced to disk, then the data directory, a physical backup and a logical dump read
    for them; the canary tables are dropped and the copies removed whatever happens."""
    embedded = target.kind == "embedded"  # the harness's own server: its backup is not restored to be shown
    commands = target.profile.commands if target.profile else {}
    canaries = make_canaries(16)
    conn = target.connect()
    temp, forced = write_canaries(target, conn, canaries, evidence)
    expected = expected_files(target, conn, evidence)
    # owned by the server's user where it has one (PostgreSQL's, as root): it reads the backup written there
    work = WorkFolder("atrest", owner=getattr(target, "run_as", None))
    ep = target.address()
    values: dict[str, str | int] = {"host": ep.host, "port": ep.port, "user": ep.user, "database": ep.database}
    not_inspectable: dict[str, str] = {}
    try:
        if isinstance(target, DataFiles):
            root = target.data_files(work.path)
        else:
            root = work.sub("files")
            evidence.progress(f"{target.label}: copying the target's files with the profile's copy_files command")
            vendor_command("vendor copy_files", commands["copy_files"], target, {**values, "output_dir": str(root)})
        evidence.progress(f"{target.label}: scanning the data directory for {len(canaries)} canaries")
        result = scan_tree(root, CLASSES[target.dialect], canaries)
        stale = currency_problems(root, expected)
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
    return _Scanned(canaries, result, stale, not_inspectable, root, forced, expected)


def _judge(target: Database, evidence: CaseEvidence, scanned: _Scanned) -> None:
    """Each part of BZ-DB-2 from what was read: PASS only where no canary was found in files shown to be current."""
    canaries, result, stale, not_inspectable = scanned.canaries, scanned.result, scanned.stale, scanned.not_inspectable
    root, forced, expected = scanned.root, scanned.forced, scanned.expected
    where = {
        cls: sorted({f.split("/data/")[-1].split("/files/")[-1] for fs in hits.values() for f in fs})[:5]
        for cls, hits in result.found.items()
        if hits
    }
    cipher, known = (
        target.storage_cipher()
        if isinstance(target, DataFiles)
        else ("as the vendor configured it (the profile's [server] notes say more)", None)
    )
    temp_canaries = {c.decode() for c in canaries[8:12]}
    temp_on_disk = any(temp_canaries & set(hits) for hits in result.found.values())
    pool = int(evidence.record.parameters.get("buffer_pool_bytes") or 0)
    ibtmp = root / "ibtmp1"
    ibtmp_size = ibtmp.stat().st_size if target.dialect == "mysql" and ibtmp.exists() else 0
    if pool and ibtmp_size > pool and not temp_on_disk:
        evidence.note(msg("note_temp_reached_disk", size=ibtmp_size >> 20, pool=pool >> 20))
        temp_on_disk = True
    elif not temp_on_disk:
        evidence.note(msg("note_temp_in_memory"))
    evidence.parameters(
        canaries=len(canaries),
        canary_length=len(canaries[0]),
        written_as="8 in table rows with an index on them, 4 in a temporary table held open during the scan "
        "(PostgreSQL: temp_buffers 800kB and 2 MB of filler; InnoDB: 1.3 x the buffer pool of filler; so its "
        "pages reach disk), 4 as old values "
        "overwritten by an UPDATE (the logs keep them)",
        files_from=target.files_from if isinstance(target, DataFiles) else "the profile's copy_files command",
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
        evidence.note(msg("note_empty_classes", classes=_terms(empty)))
    for part, classes in parts.items():
        statistic = msg("part_encrypted", part=_term(part), classes=_terms(classes))
        if any(c in not_inspectable for c in classes):
            unread = "; ".join(not_inspectable[c] for c in classes if c in not_inspectable)
            evidence.not_shown("BZ-DB-2", statistic=statistic, why=msg("not_inspected", why=unread))
            continue
        leaked = [c for c in classes if result.found.get(c)]
        missing = _unshown(part, classes, result.files, stale, forced)
        if leaked or not missing:
            found = msg("plaintext_found", where=_terms(leaked))
            evidence.measure("BZ-DB-2", not leaked, "bool", statistic=statistic, why=found)
        else:  # nothing found, but in files that are not shown to hold the canaries
            evidence.not_shown("BZ-DB-2", statistic=statistic, why=msg("scan_does_not_show", why="; ".join(missing)))
    if "BZ-SEC-1" in evidence.record.clause_ids:  # seed 003 三、3: the storage half of "stored and transmitted"
        leaked = sorted(c for c, hits in result.found.items() if hits)
        statistic = msg("part_storage_plaintext")
        if leaked or not not_inspectable:
            found = msg("plaintext_found", where=_terms(leaked))
            evidence.measure("BZ-SEC-1", not leaked, "bool", statistic=statistic, why=found)
        else:
            evidence.not_shown(
                "BZ-SEC-1", statistic=statistic, why=msg("not_inspected", why="; ".join(not_inspectable.values()))
            )
    if known is not None:  # a cipher the harness configured itself, and it is not SM4
        evidence.measure(
            "BZ-DB-2",
            False,
            "bool",
            statistic=msg("part_sm4_cipher"),
            why=msg("no_at_rest_cipher") if known == "none" else msg("cipher_not_sm4", cipher=known),
        )
