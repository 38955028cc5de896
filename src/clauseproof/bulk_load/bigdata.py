"""A data set of a given size built inside the server, measured on the server, and cached.

Rows are the settlement rows of :mod:`clauseproof.workloads.settlement` in shape, computed by SQL from the
row number (``generate_series`` on PostgreSQL, the ``seq_1_to_N`` sequence engine on MariaDB),
inserted in batches over two connections.  The size is what the server reports after the load
(``pg_database_size``; InnoDB data + index length after ANALYZE TABLE), never assumed.

For embedded servers the built data directory is cached per (engine, server version, size,
builder version) and copied for the next run; the evidence says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clauseproof.core.errors import ClauseproofError, first_line
from clauseproof.targets.base import Target

BUILDER_VERSION = 1
DATABASE = "clauseproof_data"
TABLE = "settlement"
BATCH_ROWS = 500_000
#: Fewest rows one round adds: sizes grow by pages, so tiny rounds near the goal would crawl.
MIN_ROUND_ROWS = 50_000

_PG_DDL = f"""CREATE TABLE {TABLE} (
    settlement_id bigint NOT NULL, patient_id bigint NOT NULL, hospital_code varchar(12) NOT NULL,
    diagnosis_code varchar(8) NOT NULL, insurance_type smallint NOT NULL, total_amount numeric(12,2) NOT NULL,
    fund_paid numeric(12,2) NOT NULL, self_paid numeric(12,2) NOT NULL, settled_at timestamp NOT NULL)"""
_MY_DDL = f"""CREATE TABLE {TABLE} (
    settlement_id BIGINT NOT NULL PRIMARY KEY, patient_id BIGINT NOT NULL, hospital_code VARCHAR(12) NOT NULL,
    diagnosis_code VARCHAR(8) NOT NULL, insurance_type SMALLINT NOT NULL, total_amount DECIMAL(12,2) NOT NULL,
    fund_paid DECIMAL(12,2) NOT NULL, self_paid DECIMAL(12,2) NOT NULL, settled_at DATETIME NOT NULL) ENGINE=InnoDB"""
_CENTS = "(100 + ({g} * 48271) % 2000000)"
_PG_INSERT = f"""INSERT INTO {TABLE} SELECT g, 100000000000 + (g * 2654435761) % 900000000000,
    'H61' || lpad(((g * 7919) % 10 + 1)::text, 2, '0') || lpad(((g * 104729) % 3000 + 1)::text, 7, '0'),
    chr(65 + ((g * 31) % 26)::int) || lpad(((g * 17) % 100)::text, 2, '0') || '.'
        || lpad(((g * 13) % 1000)::text, 3, '0'),
    (ARRAY[310, 390, 510])[(g % 3 + 1)::int],
    {_CENTS.format(g="g")} / 100.0,
    ({_CENTS.format(g="g")} * ((g * 16807) % 91) / 100) / 100.0,
    ({_CENTS.format(g="g")} - {_CENTS.format(g="g")} * ((g * 16807) % 91) / 100) / 100.0,
    timestamp '2024-01-01' + ((g * 69621) % 63158400) * interval '1 second'
    FROM generate_series({{lo}}::bigint, {{hi}}::bigint) g"""
_MY_INSERT = f"""INSERT INTO {TABLE} SELECT seq, 100000000000 + (seq * 2654435761) % 900000000000,
    CONCAT('H61', LPAD((seq * 7919) % 10 + 1, 2, '0'), LPAD((seq * 104729) % 3000 + 1, 7, '0')),
    CONCAT(CHAR(65 + (seq * 31) % 26), LPAD((seq * 17) % 100, 2, '0'), '.', LPAD((seq * 13) % 1000, 3, '0')),
    ELT(seq % 3 + 1, 310, 390, 510),
    {_CENTS.format(g="seq")} / 100,
    FLOOR({_CENTS.format(g="seq")} * ((seq * 16807) % 91) / 100) / 100,
    ({_CENTS.format(g="seq")} - FLOOR({_CENTS.format(g="seq")} * ((seq * 16807) % 91) / 100)) / 100,
    TIMESTAMP'2024-01-01 00:00:00' + INTERVAL ((seq * 69621) % 63158400) SECOND
    FROM seq_{{lo}}_to_{{hi}}"""


@dataclass(frozen=True)
class BigData:
    """What was built: where, how many rows, how many bytes the server reports."""

    database: str
    table: str
    rows: int
    server_bytes: int
    build_seconds: float
    from_cache: bool
    builder_version: int = BUILDER_VERSION

    def evidence(self) -> dict[str, Any]:
        return asdict(self)


def server_size(conn: Any, dialect: str, database: str) -> int:
    """Bytes the server reports for ``database`` (PostgreSQL) or its InnoDB tables (MySQL family)."""
    cur = conn.cursor()
    if dialect == "postgresql":
        cur.execute("SELECT pg_database_size(%s)", (database,))
    else:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (database,))
        for (t,) in cur.fetchall():
            cur.execute(f"ANALYZE TABLE `{database}`.`{t}`")
            cur.fetchall()
        cur.execute(
            "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
            "WHERE table_schema = %s",
            (database,),
        )
    (size,) = cur.fetchone()
    cur.close()
    return int(size)


def build(
    target: Target, database: str, min_bytes: int, *, progress: Callable[[str], None] | None = None, workers: int = 2
) -> BigData:
    """Create ``database`` on ``target`` and fill it until the server reports at least ``min_bytes``."""
    dialect = target.dialect
    started = time.perf_counter()
    admin = target.connect(in_namespace=False)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {database}")
    except Exception as exc:
        if "permission denied" in str(exc).lower() or "access denied" in str(exc).lower():
            raise ClauseproofError(
                f"the backup suite could not create its database {database} on {target.label}: {first_line(exc)}",
                checked="CREATE DATABASE as the target's user (the suite builds its data set in a database named "
                "after the run, and restores into another, and drops both)",
                fix="grant the user CREATEDB (PostgreSQL: ALTER ROLE <user> CREATEDB) or CREATE/DROP on databases "
                "named clauseproof_% (MySQL family), or deselect the backup suite",
            ) from None
        raise
    finally:
        admin.close()
    conns = [target.connect_database(database) for _ in range(workers)]
    insert = _PG_INSERT if dialect == "postgresql" else _MY_INSERT
    with conns[0].cursor() as cur:
        cur.execute(_PG_DDL if dialect == "postgresql" else _MY_DDL)
    rows = 0
    # PostgreSQL gets its key after the bulk of the load (faster); ~12 % of the size is the key's index.
    pk_added = dialect != "postgresql"
    try:
        while True:
            size = server_size(conns[0], dialect, database)
            goal = min_bytes if pk_added else min_bytes * 0.88
            if size >= goal and rows:  # at least one round of rows, however small the goal
                if pk_added:
                    break
                with conns[0].cursor() as cur:
                    cur.execute(f"ALTER TABLE {TABLE} ADD PRIMARY KEY (settlement_id)")
                pk_added = True
                continue
            per_row = size / rows if rows else 120
            batch = int(min(max((goal - size) / per_row, MIN_ROUND_ROWS) / workers + 1, BATCH_ROWS))
            errors: list[BaseException] = []

            def work(conn: Any, lo: int, hi: int, errors: list[BaseException]) -> None:
                try:
                    with conn.cursor() as c:
                        c.execute(insert.format(lo=lo, hi=hi))
                except BaseException as exc:  # reported below
                    errors.append(exc)

            threads = []
            for i, conn in enumerate(conns):
                lo = rows + i * batch + 1
                threads.append(threading.Thread(target=work, args=(conn, lo, lo + batch - 1, errors)))
            for t in threads:
                t.start()
            try:
                for t in threads:
                    t.join()
            except BaseException:  # Ctrl-C, SIGTERM: stop the statements the workers wait on, then let them end
                _cancel(target, conns)
                for t in threads:
                    t.join(timeout=10)
                raise
            if errors:
                raise ClauseproofError(f"building the data set failed: {errors[0]}")
            rows += batch * workers
            if progress:
                progress(
                    f"building {min_bytes / 2**30:.2f} GiB data set on {target.label}: {rows:,} rows, "
                    f"{size / 2**20:,.0f} MiB so far"
                )
        final = server_size(conns[0], dialect, database)
    finally:
        for c in conns:
            c.close()
    return BigData(
        database=database,
        table=TABLE,
        rows=rows,
        server_bytes=final,
        build_seconds=round(time.perf_counter() - started, 2),
        from_cache=False,
    )


def _cancel(target: Target, conns: list[Any]) -> None:
    """Cancel the statement each of ``conns`` is running (another thread waits on it): PostgreSQL through the
    protocol's cancel request, the MySQL family with ``KILL QUERY`` from a connection of its own. Best effort: the
    run's clean-up also stops every session of the run before it drops its objects."""
    with contextlib.suppress(Exception):
        if target.dialect == "postgresql":
            for conn in conns:
                with contextlib.suppress(Exception):
                    conn.cancel_safe(timeout=5.0)
            return
        admin = target.connect(in_namespace=False)
        try:
            with admin.cursor() as cur:
                for conn in conns:
                    with contextlib.suppress(Exception):
                        cur.execute(f"KILL QUERY {int(conn.thread_id())}")
        finally:
            admin.close()


@contextlib.contextmanager
def cache_lock(cache: Path, key: str) -> Iterator[None]:
    """Hold the cached data directory ``key`` for this process: two runs sharing a cache neither build it
    twice nor delete it while the other copies it."""
    folder = cache / "datadirs"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def cached_datadir(cache: Path, key: str) -> tuple[Path, BigData] | None:
    """A cached data directory and its description, if present and complete."""
    folder = cache / "datadirs" / key
    try:
        meta = json.loads((folder / "meta.json").read_text())
        return folder / "data", BigData(**{**meta, "from_cache": True})
    except (OSError, ValueError, TypeError):
        return None


def store_datadir(cache: Path, key: str, data_dir: Path, built: BigData) -> Path:
    """Move a stopped server's data directory into the cache (meta.json written last)."""
    folder = cache / "datadirs" / key
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.move(str(data_dir), folder / "data")
    (folder / "meta.json").write_text(json.dumps(built.evidence(), indent=2))
    return folder / "data"
