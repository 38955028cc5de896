"""BZ-SYNC-1: the sync software takes TDSQL, TBase and other domestic distributed databases as its source.

The source (node ``a``) is identified by what it does, not by its version string: a distributed source shows its
shards in its own catalogue — the Postgres-XL family (TBase, openTenBase, distributed GaussDB) lists coordinators and
datanodes in ``pgxc_node``; TDSQL's proxy answers ``/*proxy*/ show status`` with its sets; TiDB lists its stores in
``information_schema.TIKV_STORE_STATUS``; OceanBase its servers in ``oceanbase.DBA_OB_SERVERS``. A single server
shows none of these. Then, on the Postgres-XL family (where the harness can read each datanode itself with
``EXECUTE DIRECT``), rows written through the coordinator are shown to sit on every datanode, and a sync task must
deliver all of them: changes from every shard arrive. Elsewhere that part is NOT SHOWN, naming why.

On the embedded stand-ins the source is a single PostgreSQL or MariaDB: both parts NOT SHOWN, with the identity read.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from clauseproof.core.errors import first_line
from clauseproof.core.i18n import Text, joined, msg
from clauseproof.sync.cases import Part
from clauseproof.targets.roles import SyncSystem

CLAUSE = "BZ-SYNC-1"
ROWS = 2000
ARRIVE_S = 120.0
SINGLE_PG, SINGLE_MYSQL = "PostgreSQL, a single server", "a single MySQL-family server"


@dataclass(frozen=True)
class SourceIdentity:
    family: str  # "Postgres-XL family (TBase, openTenBase, ...)", "TDSQL", "TiDB", "OceanBase", or the single engine
    distributed: bool
    shards: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)

    @property
    def label(self) -> Text | str:
        """The family in the report's language (a product's name stays as it is)."""
        return {SINGLE_PG: msg("single_postgresql"), SINGLE_MYSQL: msg("single_mysql")}.get(self.family, self.family)


def _try(conn: Any, sql: str) -> tuple[list[Any] | None, str]:
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall()), ""
    except Exception as exc:
        with contextlib.suppress(Exception):
            if not getattr(conn, "autocommit", True):
                conn.rollback()
        return None, first_line(exc)


def identify(conn: Any, dialect: str) -> SourceIdentity:
    """What the source is, by what its catalogue answers."""
    seen = []
    if dialect == "postgresql":
        nodes, err = _try(conn, "SELECT node_name, node_type, node_host, node_port FROM pgxc_node ORDER BY 1")
        seen.append(f"pgxc_node: {len(nodes)} nodes" if nodes is not None else f"pgxc_node: {err}")
        if nodes:
            datanodes = [str(n[0]) for n in nodes if str(n[1]) == "D"]
            return SourceIdentity("Postgres-XL family (TBase, openTenBase, distributed GaussDB)", len(datanodes) > 1,
                                  datanodes, seen)  # fmt: skip
        version, _ = _try(conn, "SELECT version()")
        seen.append(f"version(): {version[0][0] if version else '?'}")
        return SourceIdentity(SINGLE_PG, False, [], seen)
    probes: list[tuple[str, str]] = [
        ("TDSQL", "/*proxy*/ show status"),
        ("TiDB", "SELECT STORE_ID, ADDRESS FROM information_schema.TIKV_STORE_STATUS"),
        ("OceanBase", "SELECT SVR_IP, SVR_PORT FROM oceanbase.DBA_OB_SERVERS"),
    ]
    for family, sql in probes:
        rows, err = _try(conn, sql)
        seen.append(f"{family} ({sql}): {f'{len(rows)} rows' if rows is not None else err}")
        if rows and family == "TDSQL":  # to any other MySQL the hint is a comment: SHOW STATUS, no sets in it
            rows = [r for r in rows if str(r[0]).lower().startswith(("set_", "set "))]
        if rows:
            return SourceIdentity(family, True, [" ".join(map(str, r))[:60] for r in rows], seen)
    version, _ = _try(conn, "SELECT CONCAT(VERSION(), ' ', @@version_comment)")
    seen.append(f"VERSION(): {version[0][0] if version else '?'}")
    return SourceIdentity(SINGLE_MYSQL, False, [], seen)


def _per_datanode(conn: Any, table: str, shards: list[str]) -> dict[str, int]:
    out = {}
    for node in shards:
        rows, _ = _try(conn, f"EXECUTE DIRECT ON ({node}) 'SELECT count(*) FROM {table}'")
        out[node] = int(rows[0][0]) if rows else -1
    return out


def check_source(lab: SyncSystem) -> list[Part]:
    """The parts of BZ-SYNC-1 on the lab's source (node ``a``) and target (``b``)."""
    with contextlib.closing(lab.node_connect("a")) as conn:
        ident = identify(conn, lab.dialect_of("a"))
    facts = joined([ident.label, *ident.seen])
    shards = msg("family_shards", family=ident.label, n=len(ident.shards), shards=", ".join(ident.shards[:8]))
    parts = [Part(CLAUSE, msg("name_domestic_distributed"), True if ident.distributed else None, shards,
                  why=msg("no_shards", facts=facts), data={"identity": ident.__dict__})]  # fmt: skip
    statistic = msg("every_shard_lands")
    every = msg("name_every_shard")
    if not ident.distributed:
        parts.append(Part(CLAUSE, every, None, statistic, why=msg("not_distributed", family=ident.label)))
        return parts
    if not ident.family.startswith("Postgres-XL"):
        parts.append(Part(CLAUSE, every, None, statistic, why=msg("no_execute_direct", family=ident.label)))
        return parts
    parts.append(_every_shard_arrives(lab, ident))
    return parts


def _every_shard_arrives(lab: SyncSystem, ident: SourceIdentity) -> Part:
    table, name = "cp_shards", "cp_bzsync1"
    with contextlib.closing(lab.node_connect("a")) as a, contextlib.closing(a.cursor()) as c:
        c.execute(f"DROP TABLE IF EXISTS {table}")
        c.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, note TEXT) DISTRIBUTE BY HASH (id)")
    with contextlib.closing(lab.node_connect("b")) as b, contextlib.closing(b.cursor()) as c:
        c.execute(f"DROP TABLE IF EXISTS {table}")
        c.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, note VARCHAR(40))")
    lab.create_task(name, "a", "b", [table], copy_data=False)
    try:
        with contextlib.closing(lab.node_connect("a")) as a, contextlib.closing(a.cursor()) as c:
            for lo in range(0, ROWS, 500):
                c.execute(f"INSERT INTO {table} SELECT g, 'row ' || g FROM generate_series({lo}, {lo + 499}) g")
            spread = _per_datanode(a, table, ident.shards)
        empty = [n for n, k in spread.items() if k <= 0]
        deadline, arrived = time.monotonic() + ARRIVE_S, 0
        while time.monotonic() < deadline:
            with contextlib.closing(lab.node_connect("b")) as b, contextlib.closing(b.cursor()) as c:
                c.execute(f"SELECT count(*) FROM {table}")
                arrived = int(c.fetchone()[0])
            if arrived >= ROWS:
                break
            time.sleep(1)
        problems = [f"no rows on {', '.join(empty)} (the spread is not shown)" if empty else "",
                    f"{arrived} of {ROWS} arrived in {ARRIVE_S:g} s" if arrived < ROWS else ""]  # fmt: skip
        why = "; ".join(w for w in problems if w)
        said = msg("every_shard_spread", rows=ROWS, n=len(ident.shards), spread=str(spread))
        return Part(CLAUSE, msg("name_every_shard"), not why, said, why=why,
                    data={"per_datanode": spread, "arrived": arrived})  # fmt: skip
    finally:
        with contextlib.suppress(Exception):
            lab.drop_task(name)
        for node in ("a", "b"):
            with contextlib.suppress(Exception), contextlib.closing(lab.node_connect(node)) as conn:
                with conn.cursor() as c:
                    c.execute(f"DROP TABLE IF EXISTS {table}")
