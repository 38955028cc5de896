"""The backup cases' evidence: the phases, the windows, and the verdicts of BZ-DB-4e/4f and SX-RDS-4."""

from __future__ import annotations

from clauseproof.backup.equality import SourceChange
from clauseproof.backup.phases import Phase
from clauseproof.backup.source import Source
from clauseproof.core.digest import TableDigest, summary
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import Text, msg
from clauseproof.targets.roles import Database


def record(
    evidence: CaseEvidence,
    source: Source,
    method: str,
    backup: list[Phase],
    restore: list[Phase],
    written: tuple[int, int],
    before: dict[str, TableDigest],
    change: SourceChange,
    unequal: str,
    window_backup: Text | str,
    window_restore: Text | str,
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
    evidence.window(msg("win_backup", backup=window_backup, restore=window_restore))
    where = msg("bytes_written", n=f"{backup_bytes:,}") if not elsewhere or elsewhere.startswith("no ") else elsewhere
    size = f"{source.data.server_bytes:,}"
    if unshown and not unequal:
        one = msg("one_backup_in", method=method, size=size, seconds=f"{b:.2f}")
        evidence.not_shown("BZ-DB-4e", statistic=one, why=unshown)
    else:
        evidence.measure(
            "BZ-DB-4e",
            b,
            "s",
            statistic=msg("one_backup", method=method, size=size, where=where),
            samples=[b],
            sample_unit="s",
            wrong=empty or unequal,
        )
    evidence.measure(
        "BZ-DB-4f",
        r,
        "s",
        statistic=msg("one_restore", method=method),
        samples=[r],
        sample_unit="s",
        wrong=unequal or empty,
    )
    if unshown and not unequal:
        evidence.not_shown("SX-RDS-4", statistic=msg("backup_restored_equal", method=method), why=unshown)
        return
    evidence.measure(
        "SX-RDS-4",
        not (unequal or empty),
        "bool",
        statistic=msg("backup_restored_new", method=method),
        wrong=unequal or empty,
    )


def retention(target: Database) -> str:
    """What the target declares about backup retention (SX-RDS-4 asks for up to 730 days)."""
    profile = target.profile
    days = profile.server.get("backup_retention_days") if profile else None
    measured = ("the retention is measured by test_automatic_backup_and_retention, read back from the service's "
                "policy ([backup_policy])")  # fmt: skip
    if days is not None:
        return f"the profile declares {days} days of backup retention (clause: up to 730); {measured}"
    return f"nothing declared (the embedded archive lives for the run only); {measured}"
