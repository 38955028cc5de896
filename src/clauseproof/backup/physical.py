"""Physical backup and its restore (BZ-DB-4e/4f, SX-RDS-4): by the target's own role (:class:`PhysicalBackups`:
pg_basebackup / mariadb-backup on the harness's servers, the engine's tool inside a container) or by the vendor's
commands from the profile.  Each restore is proven equal to the source as of the backup."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from clauseproof.backup.equality import SourceChange, change_source, source_digest, undo_change, verdict_after_restore
from clauseproof.backup.phases import Phase, vendor_command, written
from clauseproof.backup.record import record
from clauseproof.backup.source import Source
from clauseproof.core.commands import fill_command, timed
from clauseproof.core.errors import NotApplicable
from clauseproof.core.evidence import CaseEvidence
from clauseproof.targets.roles import Database, PhysicalBackups


def backup_and_restore(target: Database, src: Source, evidence: CaseEvidence) -> None:
    """One physical backup of the source, timed; then its restore into a new instance, timed and proven equal."""
    if isinstance(src.server, PhysicalBackups):
        _own(src.server, src, evidence)
    else:
        _vendor(target, src, evidence)


def _own(server: PhysicalBackups, src: Source, evidence: CaseEvidence) -> None:
    label = src.server.label
    before = source_digest(src, evidence, label)
    out = src.work.sub("physical")
    scratch = src.work.sub("restore")
    restored: Database | None = None
    change: SourceChange | None = None
    try:
        evidence.progress(f"{label}: {server.backup_method} backup")
        backup = server.take_physical_backup(out)
        size = written(out)
        change = change_source(src)
        evidence.progress(f"{label}: restoring the backup into a new instance")
        restore, restored = server.restore_physical_backup(out, scratch)
        evidence.progress(f"{label}: digest of the restored copy")
        copy = restored
        unequal = verdict_after_restore(
            src, before, change, lambda: copy.connect_database(src.data.database), src.schema, evidence, "restored"
        )
        record(evidence, src, server.backup_method, backup, restore, size, before, change, unequal,
               *server.backup_windows)  # fmt: skip
    finally:
        if restored is not None:
            restored.stop()
        undo_change(src, change)
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


def _shown_artefact(
    target: Database, commands: dict[str, str], values: dict[str, str | int], evidence: CaseEvidence
) -> str:
    """Where a vendor's backup that wrote nothing to the output folder keeps its artefact: the profile's
    ``show_backup`` command prints one line per file, ``<bytes> <sha256> <name>``; "no …" when none was shown."""
    if "show_backup" not in commands:
        return "no show_backup command in the profile's [commands]"
    with tempfile.NamedTemporaryFile(prefix="clauseproof-show-") as out:
        timed("vendor show_backup", [fill_command(commands["show_backup"], **values)], shell=True,
              env=target.address().client_env(target.dialect), stdout=Path(out.name), timeout=300)  # fmt: skip
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


def _vendor(target: Database, src: Source, evidence: CaseEvidence) -> None:
    commands = target.profile.commands if target.profile else {}
    if not {"backup", "restore"} <= set(commands):
        raise NotApplicable(
            "physical backup of an external target needs the vendor's commands: declare [commands] "
            "backup and restore in the profile (placeholders {host} {port} {user} {database} "
            "{output_dir} {new_database})"
        )
    ep = target.address()
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
    before = source_digest(src, evidence, target.label)
    change: SourceChange | None = None
    try:
        backup: list[Phase] = [vendor_command("vendor backup", commands["backup"], target, values)]
        size = written(out)
        elsewhere = _shown_artefact(target, commands, values, evidence) if size[0] == 0 else ""
        if elsewhere and not elsewhere.startswith("no "):
            size = (sum(a["bytes"] for a in evidence.record.parameters["backup_artefact"]),
                    len(evidence.record.parameters["backup_artefact"]))  # fmt: skip
        change = change_source(src)
        restore = [vendor_command("vendor restore", commands["restore"], target, values)]
        unequal = verdict_after_restore(
            src,
            before,
            change,
            lambda: target.connect_database(new_db),
            "public" if target.dialect == "postgresql" else new_db,
            evidence,
            "restored",
        )
        record(
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
        undo_change(src, change)
        with target.connect(in_namespace=False) as admin, admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {new_db}")
        shutil.rmtree(out, ignore_errors=True)
