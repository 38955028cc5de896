"""A small MariaDB → PostgreSQL sync (change data capture from the binary log): the heterogeneous stand-in of the
sync suite.  Run by the harness as a process of its own; not a product.

1. Snapshot without stopping the source: ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` gives a read view and
   (MariaDB's ``binlog_snapshot_file`` / ``_position``) the binary-log position it corresponds to; every table is
   copied into the target and the position recorded there, in one target transaction.
2. Stream: row events from that position (``mysql-replication``), one source transaction at a time, applied to
   the target in one transaction *with* the new position: a change is applied exactly once, even across a
   restart of this process or of the target.
3. A target that cannot be reached (network cut, host or database down): the transaction being applied and
   everything after it wait here (the binlog reader stops reading: the source keeps its binary log), retried
   every ``--retry-s``; nothing is skipped.

Keys: each table's primary key on the source; updates and deletes find the target row by it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from typing import Any

STATE = "cp_sync_state"


def _target(args: argparse.Namespace) -> Any:
    import psycopg

    return psycopg.connect(
        autocommit=True,
        host=args.target_host,
        port=args.target_port,
        user=args.target_user,
        password=os.environ.get("CP_SYNC_TARGET_PASSWORD", ""),
        dbname=args.target_db,
        connect_timeout=5,
        options=f"-c search_path={args.target_schema} -c TimeZone=UTC",
    )


def _source_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "host": args.source_host,
        "port": args.source_port,
        "user": args.source_user,
        "password": os.environ.get("CP_SYNC_SOURCE_PASSWORD", ""),
    }


def _keys(src: Any, db: str, tables: list[str]) -> dict[str, list[str]]:
    cur = src.cursor()
    out = {}
    for t in tables:
        cur.execute(
            "SELECT column_name FROM information_schema.key_column_usage WHERE table_schema = %s AND table_name = %s "
            "AND constraint_name = 'PRIMARY' ORDER BY ordinal_position",
            (db, t),
        )
        out[t] = [r[0] for r in cur.fetchall()]
        if not out[t]:
            raise SystemExit(f"binlog_sync: table {db}.{t} has no primary key; updates and deletes need one")
    return out


def snapshot(args: argparse.Namespace, tables: list[str]) -> tuple[str, int]:
    """Copy every table at one consistent point; returns that point's binlog file and position."""
    from clauseproof.targets.pymysql_conn import connect as connect_mysql

    src = connect_mysql(**_source_settings(args), database=args.source_db, autocommit=False, charset="utf8mb4")
    cur = src.cursor()
    cur.execute("SET time_zone = '+00:00'")
    cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
    cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
    status = {str(k).lower(): v for k, v in cur.fetchall()}
    log_file, log_pos = status["binlog_snapshot_file"], int(status["binlog_snapshot_position"])
    with _target(args) as dst, dst.transaction():
        for t in tables:
            cur.execute(f"SELECT * FROM `{t}`")
            cols = [d[0] for d in cur.description]
            dst.execute(f'DELETE FROM "{t}"')
            with dst.cursor().copy(f'COPY "{t}" ({", ".join(cols)}) FROM STDIN') as copy:
                for row in cur.fetchall_unbuffered() if hasattr(cur, "fetchall_unbuffered") else cur.fetchall():
                    copy.write_row(row)
        dst.execute(
            f"INSERT INTO {STATE} (task, log_file, log_pos) VALUES (%s, %s, %s) ON CONFLICT (task) DO UPDATE "
            "SET log_file = excluded.log_file, log_pos = excluded.log_pos",
            (args.task, log_file, log_pos),
        )
    src.commit()
    src.close()
    return log_file, log_pos


def _apply(dst: Any, keys: dict[str, list[str]], changes: list[tuple[str, str, dict[str, Any]]]) -> None:
    for table, kind, row in changes:
        key = keys[table]
        if kind == "insert":
            vals = row["values"]
            cols = ", ".join(f'"{c}"' for c in vals)
            dst.execute(f'INSERT INTO "{table}" ({cols}) VALUES ({", ".join(["%s"] * len(vals))})', list(vals.values()))
        elif kind == "update":
            before, after = row["before_values"], row["after_values"]
            sets = ", ".join(f'"{c}" = %s' for c in after)
            cond = " AND ".join(f'"{c}" = %s' for c in key)
            dst.execute(f'UPDATE "{table}" SET {sets} WHERE {cond}', [*after.values(), *(before[c] for c in key)])
        else:
            vals = row["values"]
            cond = " AND ".join(f'"{c}" = %s' for c in key)
            dst.execute(f'DELETE FROM "{table}" WHERE {cond}', [vals[c] for c in key])


def stream(
    args: argparse.Namespace, tables: list[str], log_file: str, log_pos: int, keys: dict[str, list[str]]
) -> None:
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.event import XidEvent
    from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

    reader = BinLogStreamReader(
        connection_settings=_source_settings(args),
        server_id=args.server_id,
        resume_stream=True,
        blocking=True,
        log_file=log_file,
        log_pos=log_pos,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent],
        only_schemas=[args.source_db],
        only_tables=tables,
        is_mariadb=False,  # True would stream from a GTID, not from the snapshot's file and position
        slave_heartbeat=1.0,
    )
    dst: Any = None
    pending: list[tuple[str, str, dict[str, Any]]] = []
    kinds = {WriteRowsEvent: "insert", UpdateRowsEvent: "update", DeleteRowsEvent: "delete"}
    print(f"binlog_sync {args.task}: streaming from {log_file}:{log_pos}", flush=True)
    for event in reader:
        if not isinstance(event, XidEvent):
            kind = kinds[type(event)]
            pending.extend((event.table, kind, row) for row in event.rows)
            continue
        position = (reader.log_file, reader.log_pos)
        while True:  # this transaction and all after it wait until the target takes it
            try:
                if dst is None:
                    dst = _target(args)
                with dst.transaction():
                    _apply(dst, keys, pending)
                    dst.execute(
                        f"UPDATE {STATE} SET log_file = %s, log_pos = %s WHERE task = %s", (*position, args.task)
                    )
                break
            except Exception as exc:  # the target is unreachable or refused: keep the change, try again
                print(f"binlog_sync {args.task}: target: {str(exc).splitlines()[0] if str(exc) else exc}", flush=True)
                with contextlib.suppress(Exception):
                    dst.close()
                dst = None
                time.sleep(args.retry_s)
        pending = []


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--tables", required=True, help="comma-separated")
    p.add_argument("--source-host", default="127.0.0.1")
    p.add_argument("--source-port", type=int, required=True)
    p.add_argument("--source-user", default="root")
    p.add_argument("--source-db", required=True)
    p.add_argument("--target-host", default="127.0.0.1")
    p.add_argument("--target-port", type=int, required=True)
    p.add_argument("--target-user", default="postgres")
    p.add_argument("--target-db", default="postgres")
    p.add_argument("--target-schema", required=True)
    p.add_argument("--server-id", type=int, default=4242)
    p.add_argument("--retry-s", type=float, default=0.5)
    args = p.parse_args()
    if os.environ.get("CLAUSEPROOF_PARENT_PID"):  # started by the harness: never outlive it (a SIGKILL included)
        from clauseproof.core.reaper import die_with_parent

        die_with_parent(int(os.environ["CLAUSEPROOF_PARENT_PID"]))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    tables = args.tables.split(",")
    from clauseproof.targets.pymysql_conn import connect as connect_mysql

    src = connect_mysql(**_source_settings(args), database=args.source_db)
    keys = _keys(src, args.source_db, tables)
    src.close()
    with _target(args) as dst:
        dst.execute(f"CREATE TABLE IF NOT EXISTS {STATE} (task text PRIMARY KEY, log_file text, log_pos bigint)")
        row = dst.execute(f"SELECT log_file, log_pos FROM {STATE} WHERE task = %s", (args.task,)).fetchone()
    if row is None:
        log_file, log_pos = snapshot(args, tables)
        print(f"binlog_sync {args.task}: snapshot of {', '.join(tables)} at {log_file}:{log_pos}", flush=True)
    else:
        log_file, log_pos = str(row[0]), int(row[1])
    stream(args, tables, log_file, log_pos, keys)
    return 0


if __name__ == "__main__":
    sys.exit(main())
