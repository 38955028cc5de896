"""The source of the backup cases: a server holding the data set, and what is known about it (made by the
fixture ``backup_source`` in ``fixtures/backup.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clauseproof.backup.phases import WorkFolder
from clauseproof.bulk_load import bigdata
from clauseproof.targets.roles import Database


@dataclass
class Source:
    """The server the backup cases back up, and what is known about it."""

    server: Database
    data: bigdata.BigData
    work: WorkFolder
    #: The server is the harness's own (started from the cached data set), not the target itself.
    embedded: bool
    #: The WAL archive folder (PostgreSQL point-in-time recovery).
    archive: Path | None = None
    notes: list[str] = field(default_factory=list)
    #: The source's content digest per schema, computed once: the source is the harness's own, and the only
    #: change made to it between cases (rows added after a backup) is undone before the next case.
    digests: dict[str, Any] = field(default_factory=dict)

    @property
    def schema(self) -> str:
        """Where the tables are: the schema (PostgreSQL) or database (MySQL family)."""
        return "public" if self.server.dialect == "postgresql" else self.data.database

    def connect(self) -> Any:
        return self.server.connect_database(self.data.database)
