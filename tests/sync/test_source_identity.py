"""BZ-SYNC-1's identification of the source by its catalogue: the embedded PostgreSQL and MariaDB are single
servers (and MariaDB's SHOW STATUS behind TDSQL's proxy hint is not taken for TDSQL's sets); a recorded TBase
answer is the Postgres-XL family with its datanodes as the shards."""

from __future__ import annotations

from typing import Any

from clauseproof.sync.source_identity import identify
from clauseproof.targets.single.mariadb import EmbeddedMariaDB
from clauseproof.targets.single.postgres import EmbeddedPostgres


def test_single_servers_are_not_distributed(pg_server: EmbeddedPostgres, mariadb_server: EmbeddedMariaDB) -> None:
    for server, family in (
        (pg_server, "PostgreSQL, a single server"),
        (mariadb_server, "a single MySQL-family server"),
    ):
        conn = server.connect()
        try:
            ident = identify(conn, server.dialect)
        finally:
            conn.close()
        assert (ident.family, ident.distributed) == (family, False), ident.seen


class RecordedTBase:
    """A TBase coordinator's answer to pgxc_node (two coordinators, three datanodes)."""

    NODES = (("cn001", "C", "10.0.0.1", 5432), ("cn002", "C", "10.0.0.2", 5432), ("dn001", "D", "10.0.0.3", 5433),
             ("dn002", "D", "10.0.0.4", 5433), ("dn003", "D", "10.0.0.5", 5433))  # fmt: skip

    def cursor(self) -> Any:
        return self

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *a: object) -> None:
        return None

    def execute(self, sql: str) -> None:
        assert "pgxc_node" in sql

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self.NODES)


def test_a_recorded_tbase_is_the_postgres_xl_family_with_its_datanodes() -> None:
    ident = identify(RecordedTBase(), "postgresql")
    assert ident.distributed and ident.family.startswith("Postgres-XL") and ident.shards == ["dn001", "dn002", "dn003"]
