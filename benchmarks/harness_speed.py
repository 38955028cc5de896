"""The harness's own speed, side by side with native tools.  Run: ``./run bench``.

1. Data generation: first generation of 2,000,000 settlement rows (fresh cache) and reuse; then on one core, the
   generator alone (≥ 1,000,000 rows/s asked) and with the content digest.
2. Load overhead: the harness's timed 1,000,000-row load against the native client loading the
   same file into the same embedded server, alternating, each after TRUNCATE (+ CHECKPOINT):
   PostgreSQL: harness COPY from memory and from the file vs ``psql -c "\\copy ... FROM file"``;
   MariaDB: harness LOAD DATA LOCAL INFILE (PyMySQL) vs the ``mariadb`` client's.
   The native times include the client process start (about 10-20 ms), as a user would see them.
3. SM4 column encryption: an ORM insert of 100,000 rows with two SM4-GCM columns against the
   same insert with plain text columns, on the embedded PostgreSQL.
4. The load generator (``--only oltp``): the OLTP workload's point select (patient by key) in
   Locust against ``pgbench -S`` (account by key) at the same client count on the same embedded
   PostgreSQL, each for the same time; Locust in 1 and 2 processes; TPS ratio and client CPU (cores and
   milliseconds per 1,000 transactions); on the whole machine, then pinned with ``taskset`` (server on one CPU,
   client on another) so the client's efficiency shows apart from contention (≥ 80 % of pgbench asked).  pgbench
   runs with its default simple protocol (the server parses and plans every query) and with ``-M prepared``, the
   protocol psycopg uses after a statement's fifth execution: the second is the like-for-like peer.
5. The failover judge (``--only history``): 1,000,000 operations with an outage, judged (≤ 10 s asked).
6. The sync checker (``--only sync``): 2,000,000 rows on an embedded PostgreSQL against the same rows on an
   embedded MariaDB (seven columns of five kinds, normalised), equal (≤ 20 s asked), then with one changed
   row, until its key is named (≤ 2x that asked); then the same against an embedded ClickHouse (columnar).
7. Containers (``--only containers``): the image found in the cache (≤ 1 s asked), a container started until
   ready (≤ 10 s asked), and the harness's 1,000,000-row load into the container against the same load into an
   embedded server of the same engine, alternating (≤ 1.1x asked).
8. The open-loop generator (``--only openloop``): 2,000 requests/s (asked) and 4,000/s for ``--seconds`` through
   the embedded nginx gateway (a rate-limited route: most answers are nginx's own 429s), its scheduling lag
   (time handed to the client library minus scheduled time), the rate it achieved and its CPU.
9. Connections (``--only connect``): the client CPU of one MySQL-protocol connection made, used for one query and
   closed (what the failover readers and the SQL availability probes do), through PyMySQL's ``connect`` as it
   comes against the harness's (``targets/pymysql_conn.py``: PyMySQL's TLS-preferred context built once per
   process, not for every connection), on an embedded MariaDB over TCP; psycopg's on an embedded PostgreSQL beside.
10. The VM batch (``--only cloud``): the harness beside Rally's ``NovaServers.boot_and_delete_server`` on the
   embedded OpenStack (``benchmarks/cloud_rally.py``; ≤ 1.1x asked).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from sqlalchemy import BigInteger, LargeBinary, String, create_engine  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column  # noqa: E402

from clauseproof.bulk_load.datasets import ensure_dataset  # noqa: E402
from clauseproof.core import shipped  # noqa: E402
from clauseproof.encryption.atrest import CHUNK, CLASSES, make_canaries, scan_tree  # noqa: E402
from clauseproof.encryption.sm4column import EnvKeyProvider, SM4Attribute, install  # noqa: E402
from clauseproof.sync.checker import WAVES  # noqa: E402
from clauseproof.targets.base import Target  # noqa: E402
from clauseproof.targets.single.mariadb import EmbeddedMariaDB  # noqa: E402
from clauseproof.targets.single.postgres import EmbeddedPostgres  # noqa: E402
from clauseproof.workloads import settlement  # noqa: E402

DDL = shipped.DDL


def bench_generation(rows: int) -> None:
    cache = Path(tempfile.mkdtemp(prefix="clauseproof-bench-cache-"))
    try:
        t0 = time.perf_counter()
        ds = ensure_dataset(settlement, rows, 20240101, cache)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        ensure_dataset(settlement, rows, 20240101, cache)
        reuse = time.perf_counter() - t0
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print(
        f"generation of {rows:,} rows ({ds.size_bytes / 1e6:.0f} MB, digest included, {os.cpu_count()} processes): "
        f"{first:.2f} s = {rows / first:,.0f} rows/s; reuse from cache: {reuse * 1000:.1f} ms"
    )
    # one core: the generator alone (≥ 1,000,000 rows/s asked), and with the content digest the cache keeps
    from clauseproof.bulk_load.datasets import CHUNK_ROWS
    from clauseproof.core.digest import digest_lines

    gen_s = digest_s = 0.0
    for start in range(0, rows, CHUNK_ROWS):
        t0 = time.process_time()
        data = settlement.generate_chunk(20240101, start, min(CHUNK_ROWS, rows - start))
        t1 = time.process_time()
        digest_lines(data)
        gen_s, digest_s = gen_s + t1 - t0, digest_s + time.process_time() - t1
    print(
        f"one core (CPU time): generator {rows / gen_s:,.0f} rows/s; with the content digest "
        f"{rows / (gen_s + digest_s):,.0f} rows/s"
    )


def _prepare(t: Target, conn: object, table: str) -> None:
    t.truncate(conn, table)
    if t.dialect == "postgresql":
        with conn.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute("CHECKPOINT")


def bench_load(t: Target, rows: int, rounds: int, cache: Path) -> None:
    ds = ensure_dataset(settlement, rows, 20240101, cache)
    data = ds.path.read_bytes()
    conn = t.connect()
    t.create_table(conn, DDL, "settlement", "bench")
    cols = ", ".join(ds.columns)
    assert t.endpoint is not None
    ep = t.endpoint
    if t.dialect == "postgresql":
        native = [
            t.tool("psql"),
            "-X",
            "-q",
            *ep.client_args(t.dialect),
            "-d",
            ep.database,
            "-c",
            f"\\copy {t.namespace}.bench ({cols}) FROM '{ds.path}'",
        ]
        paths = {
            "harness COPY from memory": lambda: t.bulk_load(conn, "bench", ds.columns, data=data),
            "harness COPY from file": lambda: t.bulk_load(conn, "bench", ds.columns, path=ds.path),
        }
    else:
        native = [
            t.tool("mariadb"),
            *ep.client_args(t.dialect),
            "--local-infile=1",
            t.namespace,
            "-e",
            f"LOAD DATA LOCAL INFILE '{ds.path}' INTO TABLE bench FIELDS TERMINATED BY '\\t' "
            f"LINES TERMINATED BY '\\n' ({cols})",
        ]
        paths = {"harness LOAD DATA LOCAL": lambda: t.bulk_load(conn, "bench", ds.columns, path=ds.path)}
    times: dict[str, list[float]] = {k: [] for k in [*paths, "native client"]}
    env = {**os.environ, **(t._ep().client_env(t.dialect) or {})}  # the embedded server's password
    for _ in range(rounds):
        for name, fn in paths.items():
            _prepare(t, conn, "bench")
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        _prepare(t, conn, "bench")
        t0 = time.perf_counter()
        subprocess.run(native, check=True, capture_output=True, env=env)
        times["native client"].append(time.perf_counter() - t0)
        assert t.digest(conn, "bench", ds.columns) == ds.digest
    conn.close()
    base = statistics.median(times["native client"])
    print(f"{t.label}: {rows:,} rows, {rounds} alternating rounds (median seconds, ratio to native)")
    for name, xs in times.items():
        med = statistics.median(xs)
        print(f"  {name:<28} {med:7.3f} s  x{med / base:5.3f}   samples {', '.join(f'{x:.3f}' for x in xs)}")


def bench_sm4(rows: int, rounds: int) -> None:
    """ORM insert of ``rows`` rows with two SM4-GCM columns vs the same insert of plain text columns."""

    class Base(DeclarativeBase):
        pass

    class Plain(Base):
        __tablename__ = "plain_person"
        person_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
        id_number: Mapped[str] = mapped_column(String(64))
        phone: Mapped[str] = mapped_column(String(64))

    class Sealed(Base):
        __tablename__ = "sealed_person"
        person_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
        id_number_sealed: Mapped[bytes | None] = mapped_column("id_number", LargeBinary)
        phone_sealed: Mapped[bytes | None] = mapped_column("phone", LargeBinary)
        id_number = SM4Attribute("id_number_sealed", key="p.id_number")
        phone = SM4Attribute("phone_sealed", key="p.phone")

    keys = {EnvKeyProvider.variable(n): os.urandom(16).hex() for n in ("p.id_number", "p.phone")}
    t = EmbeddedPostgres("embedded-postgresql", "clauseproof_bench", None)
    t.start()
    try:
        ep = t._ep()
        engine = create_engine(
            f"postgresql+psycopg://{ep.user}@{ep.host}:{ep.port}/{ep.database}",
            connect_args={"options": f"-c search_path={t.namespace}"},
        )
        times: dict[str, list[float]] = {"plain": [], "SM4-GCM": []}
        for _ in range(rounds):
            for name, cls in (("plain", Plain), ("SM4-GCM", Sealed)):
                Base.metadata.drop_all(engine)
                Base.metadata.create_all(engine)
                objs = [cls(person_id=i, id_number=f"61010219900101{i:06d}", phone=f"138{i:08d}") for i in range(rows)]
                with Session(engine) as s:
                    install(s, EnvKeyProvider(keys))
                    t0 = time.perf_counter()
                    s.add_all(objs)
                    s.commit()
                    times[name].append(time.perf_counter() - t0)
        engine.dispose()
    finally:
        t.stop()
    plain, sealed = statistics.median(times["plain"]), statistics.median(times["SM4-GCM"])
    print(
        f"SM4 columns: ORM insert of {rows:,} rows with 2 text columns, {rounds} rounds (median): plain "
        f"{plain:.2f} s, SM4-GCM {sealed:.2f} s, ratio x{sealed / plain:.2f}"
    )


def bench_scan(mib: int, rounds: int) -> None:
    """scan_tree over ``mib`` MiB of random files holding 16 canaries, after one read to warm the cache."""
    import random

    canaries = make_canaries(16)
    root = Path(tempfile.mkdtemp(prefix="clauseproof-bench-scan-"))
    try:
        files = []
        for i in range(mib // 64):  # 64 MiB "relation segments", as PostgreSQL's base/ holds them
            path = root / "base" / "1" / str(16384 + i)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(64 << 20))
            files.append(path)
        rnd = random.Random(1)
        places = [(files[0], CHUNK - 10)] + [(rnd.choice(files), rnd.randrange((64 << 20) - 64)) for _ in range(15)]
        for (path, offset), canary in zip(places, canaries, strict=True):
            with open(path, "r+b") as f:
                f.seek(offset)
                f.write(canary)
        scan_tree(root, CLASSES["postgresql"], canaries)  # warm the page cache
        rates = []
        for _ in range(rounds):
            result = scan_tree(root, CLASSES["postgresql"], canaries)
            found = sum(len(h) for h in result.found.values())
            assert found == 16, f"the scan found {found} of 16 canaries"
            rates.append(result.mb_per_s)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"canary scan: {mib} MiB of random bytes, 16 canaries (all found), {rounds} rounds: "
        f"median {statistics.median(rates):,.0f} MB/s (min {min(rates):,.0f}, max {max(rates):,.0f})"
    )


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _pin_server(t: EmbeddedPostgres, cpus: list[int]) -> None:
    """The embedded PostgreSQL's postmaster and every process it forked onto ``cpus`` (later backends inherit it)."""
    import psutil

    assert t.data_dir is not None
    postmaster = psutil.Process(int((t.data_dir / "postmaster.pid").read_text().split()[0]))
    for proc in [postmaster, *postmaster.children(recursive=True)]:
        proc.cpu_affinity(cpus)


def _cpu_of(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        ct = psutil.Process(pid).cpu_times()
        total += ct.user + ct.system
    return total


def bench_oltp(clients: int, seconds: int) -> None:
    """pgbench -S against the Locust workload's point select, on the whole machine and pinned (server on CPU 0,
    client on CPU 1).  Client CPU is read from the client processes over the measured window only."""
    import re

    from clauseproof.load.background import BackgroundLoad
    from clauseproof.workloads import oltp

    all_cpus = sorted(os.sched_getaffinity(0))
    modes: list[tuple[str, str, tuple[int, ...]]] = [("whole machine", "", (1, 2))]
    if len(all_cpus) >= 2:
        modes.append((f"pinned: server on CPU {all_cpus[0]}, client on CPU {all_cpus[1]}", str(all_cpus[1]), (1,)))
    t = EmbeddedPostgres("embedded-postgresql", "clauseproof_bench", None)
    t.start()
    try:
        with t.connect() as conn:
            oltp.populate(conn, "postgresql", "clauseproof_bench")
        ep = t._ep()
        pgbench = t.tool("pgbench")
        conn_args = ["-h", ep.host, "-p", str(ep.port), "-U", ep.user]
        env = {**os.environ, **(ep.client_env("postgresql") or {})}  # the embedded server's password
        subprocess.run(
            [pgbench, "-i", "-s", "1", "-q", *conn_args, "postgres"], check=True, capture_output=True, env=env
        )
        for mode, client_cpus, process_counts in modes:
            _pin_server(t, [all_cpus[0]] if client_cpus else all_cpus)
            pin = ["taskset", "-c", client_cpus] if client_cpus else []
            pg_tps: dict[str, float] = {}
            for protocol in ("simple", "prepared"):  # -S's default, and the protocol the Locust workload speaks
                cpu0 = _children_cpu()
                out = subprocess.run(
                    [*pin, pgbench, "-S", "-n", "-M", protocol, "-c", str(clients), "-j", "2", "-T", str(seconds),
                     *conn_args, "postgres"],
                    check=True,
                    capture_output=True,
                    text=True,
                    env=env,
                ).stdout  # fmt: skip
                pg_cpu = _children_cpu() - cpu0
                m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
                assert m, out
                pg_tps[protocol] = float(m.group(1))
                print(
                    f"{mode}: pgbench -S -M {protocol}: {clients} clients, -j 2, {seconds} s: "
                    f"{pg_tps[protocol]:,.0f} TPS, client CPU {pg_cpu / seconds:.2f} cores = "
                    f"{pg_cpu * 1e6 / (pg_tps[protocol] * seconds):.1f} ms per 1,000"
                )
            for procs in process_counts:
                load = BackgroundLoad(
                    t, "clauseproof_bench", users=clients, weights="lookup=1", processes=procs, cpus=client_cpus
                )
                load.start()  # until every process has answered: start-up stays out of the window
                pids = [p.pid for p in load.procs]
                time.sleep(1.0)  # every user connected and past its first statements
                c0 = _cpu_of(pids)
                with load.window("measured"):
                    time.sleep(seconds)
                cpu = _cpu_of(pids) - c0
                result = load.stop()
                w = result.windows[0]
                # whole seconds inside the window only (the series is per second)
                per_t = {line["t"]: 0 for line in result.lines if w.start <= line["t"] and line["t"] + 1 <= w.end}
                for line in result.lines:
                    if line["t"] in per_t:
                        per_t[line["t"]] += sum(line["requests"].values())
                tps = sum(per_t.values()) / max(len(per_t), 1)
                print(
                    f"{mode}: Locust point select: {clients} users in {procs} process(es), {len(per_t)} whole "
                    f"seconds: {tps:,.0f} TPS = {tps / pg_tps['simple'] * 100:.0f} % of pgbench -S, "
                    f"{tps / pg_tps['prepared'] * 100:.0f} % of -M prepared (the same protocol); client CPU "
                    f"{cpu / (w.end - w.start):.2f} cores = {cpu * 1e6 / (tps * (w.end - w.start)):.1f} ms per 1,000"
                )
    finally:
        t.stop()


def bench_history(ops: int, rounds: int) -> None:
    """The failover judge over a history of ``ops`` operations (writes and reads of 16 clients, a 3 s outage),
    a final read of every acknowledged id and 10 leader polls per second."""
    import numpy as np

    from clauseproof.failover.history import READ, WRITE, History, LeaderSample, judge

    rng = np.random.default_rng(1)
    h = History(capacity=ops)
    start, fault_at = 0.0, ops / 20_000 / 2  # 20,000 operations per second; the fault half way
    acked = []
    t0 = time.perf_counter()
    for i in range(ops):
        at = start + i / 20_000
        kind = WRITE if i % 4 else READ
        j = h.invoke(i % 16, kind, i, at=at)
        down = fault_at <= at < fault_at + 3
        h.complete(j, ("info" if rng.random() < 0.5 else "fail") if down else "ok", at=at + 0.002)
        if kind == WRITE and not down:
            acked.append(i)
    build = time.perf_counter() - t0
    end_at = ops / 20_000
    leaders = [
        LeaderSample(k / 10, {"n1": k / 10 < fault_at + 2, "n2": k / 10 >= fault_at + 2, "n3": False})
        for k in range(int(end_at * 10))
    ]
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        trial = judge(h, fault="kill", fault_at=fault_at, end_at=end_at, final_ids=acked, leaders=leaders)
        times.append(time.perf_counter() - t0)
    assert trial.problems == [], trial.problems
    print(
        f"failover judge: {ops:,} operations, {len(leaders):,} leader polls, {rounds} rounds: median "
        f"{statistics.median(times):.2f} s (recording them took {build:.1f} s, {build / ops * 1e6:.2f} µs each)"
    )


SYNC_PG = """CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL, amount numeric(12,2) NOT NULL,
    ts timestamptz NOT NULL, name varchar(40) NOT NULL, score double precision NOT NULL, note text);
INSERT INTO t SELECT i, i % 1000, (i * 37 % 100000) / 100.0, timestamptz '2026-01-01 00:00:00+00'
    + i * interval '1.234567 second', 'name-' || i, i / 7.0, CASE WHEN i % 10 = 0 THEN NULL ELSE 'note ' || i END
    FROM generate_series(1, {rows}) i;
VACUUM ANALYZE t"""
SYNC_MY = """CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL, amount decimal(12,2) NOT NULL,
    ts datetime(6) NOT NULL, name varchar(40) NOT NULL, score double NOT NULL, note text);
SET SESSION max_recursive_iterations = {rows};
INSERT INTO t WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < {rows})
    SELECT i, i % 1000, (i * 37 % 100000) / 100.0, TIMESTAMPADD(MICROSECOND, i * 1234567, '2026-01-01 00:00:00'),
    CONCAT('name-', i), i / 7.0, IF(i % 10 = 0, NULL, CONCAT('note ', i)) FROM g"""
# the same rows on ClickHouse (Debian's 18.16): DateTime in whole seconds (rounded half up, as compared)
SYNC_CH = """CREATE TABLE t (id Int64, n Int32, amount Decimal(12, 2), ts DateTime, name String, score Float64,
    note Nullable(String)) ENGINE = MergeTree ORDER BY id;
INSERT INTO t SELECT i, i % 1000, toDecimal64(i * 37 % 100000, 2) / 100,
    toDateTime(1767225600 + intDiv(i * 1234567 + 500000, 1000000)), concat('name-', toString(i)), i / 7,
    if(i % 10 = 0, NULL, concat('note ', toString(i))) FROM (SELECT toInt64(number + 1) AS i FROM numbers({rows}))"""


def bench_sync(rows: int, rounds: int) -> None:
    from dataclasses import replace

    from clauseproof.sync.checker import Checker, Side
    from clauseproof.sync.mapping import ColumnMap, TableMap
    from clauseproof.targets.single.clickhouse import EmbeddedClickHouse

    pg = EmbeddedPostgres("embedded-postgresql", "clauseproof_bench", None)
    my = EmbeddedMariaDB("embedded-mariadb", "clauseproof_bench", None)
    ch = EmbeddedClickHouse()
    tm = TableMap(
        "t",
        "t",
        "id",
        (
            ColumnMap("id", kind="int"),
            ColumnMap("n", kind="int"),
            ColumnMap("amount", kind="decimal", scale=2),
            ColumnMap("ts", kind="timestamp"),
            ColumnMap("name"),
            ColumnMap("score", kind="float", scale=6),
            ColumnMap("note"),
        ),
    )
    try:
        pg.start()
        my.start()
        t0 = time.perf_counter()
        with pg.connect() as conn:
            for stmt in SYNC_PG.format(rows=rows).split(";"):
                conn.execute(stmt)
        c = my.connect()
        for stmt in SYNC_MY.format(rows=rows).split(";"):
            c.cursor().execute(stmt)
        print(f"sync checker: {rows:,} rows made on each side in {time.perf_counter() - t0:.1f} s (not timed)")
        checker = Checker(Side("source", "postgresql", pg.connect), Side("target", "mysql", my.connect))
        key = rows // 2 + 17

        def change_target(k: int) -> None:
            c.cursor().execute(f"UPDATE t SET amount = amount + 0.01 WHERE id = {k}")

        _time_checker("PostgreSQL / MariaDB", checker, tm, rows, rounds, key, change_target)
        c.close()
        my.stop()
        # the columnar engine: the same rows on ClickHouse, compared with timestamps to the second
        ch.start()
        t0 = time.perf_counter()
        cc = ch.connect()
        for stmt in SYNC_CH.format(rows=rows).split(";"):
            cc.cursor().execute(stmt)
        print(f"sync checker: {rows:,} rows made on ClickHouse in {time.perf_counter() - t0:.1f} s (not timed)")
        tm_ch = replace(tm, columns=tuple(replace(c, kind="timestamptz", precision=0) if c.source == "ts" else c
                                          for c in tm.columns))  # fmt: skip
        checker = Checker(Side("source", "postgresql", pg.connect), Side("target", "clickhouse", ch.connect))

        def change_source(k: int) -> None:  # the source differs this time
            with pg.connect() as conn:
                conn.execute(f"UPDATE t SET amount = amount + 0.01 WHERE id = {k}")

        _time_checker("PostgreSQL / ClickHouse", checker, tm_ch, rows, rounds, key, change_source)
    finally:
        ch.stop()
        my.stop()
        pg.stop()


def _time_checker(
    pair: str, checker: Any, tm: Any, rows: int, rounds: int, key: int, change: Callable[[int], None]
) -> None:
    """``rounds`` equal checks, then ``change`` (one row's amount on one side, mid-table) and ``rounds`` checks
    naming it; then a second row near the start of the key range changed too, and the first difference timed."""
    equal, found, first, equal_whole = [], [], [], []

    def told(_: Any) -> None:  # a listener, as clauseproof sync-diff has: the key range then goes in waves
        pass

    for _ in range(rounds):
        r = checker.check(tm, on_diff=told)
        assert r.equal, r.summary()
        equal.append(r.seconds)
        equal_whole.append(checker.check(tm).seconds)  # no listener: one pass, as the cases run it
    change(key)
    for _ in range(rounds):
        r = checker.check(tm, on_diff=told)
        assert [(d.key, d.kind) for d in r.diffs] == [(key, "changed")], r.summary()
        assert r.first_diff_s is not None
        found.append(r.seconds)
        first.append(r.first_diff_s)
    busy = r.side_seconds
    whole = []
    for _ in range(rounds):
        r1 = checker.check(tm)
        assert r1.first_diff_s is not None
        whole.append(r1.first_diff_s)
    # the key range in two parts at once (sync-diff --jobs 2): on a 2-core machine that holds both servers, each
    # server already has a core busy with its side's query; shown so the figure is known, not assumed
    jobs2 = []
    for _ in range(rounds):
        r2 = type(checker)(checker.source, checker.target, jobs=2).check(tm)
        assert [(d.key, d.kind) for d in r2.diffs] == [(key, "changed")], r2.summary()
        jobs2.append(r2.seconds)
    change(7)  # near the start of the key range, as a seeded difference often is
    early = []
    for _ in range(rounds):
        r3 = checker.check(tm, on_diff=told)
        assert [(d.key, d.kind) for d in r3.diffs] == [(7, "changed"), (key, "changed")], r3.summary()
        assert r3.first_diff_s is not None
        early.append(r3.first_diff_s)
    med = statistics.median(equal)
    print(
        f"sync checker, {rows:,} rows per side ({pair}): equal in {med:.2f} s median "
        f"(rounds {', '.join(f'{x:.2f}' for x in equal)}; ≤ 20 s asked); each side busy "
        f"{', '.join(f'{k} {v:.2f} s' for k, v in busy.items())} in the last; "
        f"one changed row named after {statistics.median(first):.2f} s median, check done in "
        f"{statistics.median(found):.2f} s ({statistics.median(first) / med:.2f}x the equal check; ≤ 2x asked); "
        f"without a listener (one pass, not {WAVES} waves): equal in {statistics.median(equal_whole):.2f} s, the "
        f"changed row named after {statistics.median(whole):.2f} s; two parts at once (--jobs 2, no listener): "
        f"{statistics.median(jobs2):.2f} s; a row near the start of the key range (key 7) named after "
        f"{statistics.median(early):.2f} s median (rounds {', '.join(f'{x:.2f}' for x in early)})"
    )


def bench_containers(rows: int, rounds: int, engines: list[str]) -> None:
    from clauseproof.targets.containers import engine as docker_engine
    from clauseproof.targets.containers import images
    from clauseproof.targets.containers.target import ContainerTarget

    docker_engine.start_engine()
    cache = Path(tempfile.mkdtemp(prefix="clauseproof-bench-cache-"))
    ds = ensure_dataset(settlement, rows, 20240101, cache)
    try:
        for name in engines:
            t0 = time.perf_counter()
            tag, how = images.ensure_image(name)
            print(f"{name}: image {tag} {how} in {time.perf_counter() - t0:.2f} s")
            starts = []
            for _ in range(rounds):
                c = ContainerTarget(f"containers-{name}", "clauseproof_bench", name, image=tag, progress=lambda s: None)
                t0 = time.perf_counter()
                c.start()
                starts.append(time.perf_counter() - t0)
                c.stop()
            print(f"  container start to ready (testcontainers' check): {', '.join(f'{x:.2f}' for x in starts)} s")
            cls = EmbeddedPostgres if name == "postgresql" else EmbeddedMariaDB
            emb = cls(f"embedded-{name}", "clauseproof_bench", None)
            con = ContainerTarget(f"containers-{name}", "clauseproof_bench", name, image=tag, progress=lambda s: None)
            emb.start()
            con.start()
            try:
                times: dict[str, list[float]] = {"embedded": [], "container": []}
                conns = {}
                for label, t in (("embedded", emb), ("container", con)):
                    conns[label] = t.connect()
                    t.create_table(conns[label], DDL, "settlement", "bench")
                    print(f"  {label}: {t.server_environment()['version']}")
                for _ in range(rounds):
                    for label, t in (("embedded", emb), ("container", con)):
                        conn = conns[label]
                        _prepare(t, conn, "bench")
                        t0 = time.perf_counter()
                        t.bulk_load(conn, "bench", ds.columns, path=ds.path)
                        times[label].append(time.perf_counter() - t0)
                        assert t.digest(conn, "bench", ds.columns) == ds.digest
                for c in conns.values():
                    c.close()
            finally:
                con.stop()
                emb.stop()
            base = statistics.median(times["embedded"])
            print(f"  {rows:,} rows loaded by the harness, {rounds} alternating rounds (median, ratio to embedded)")
            for label, xs in times.items():
                med = statistics.median(xs)
                print(f"    {label:<10} {med:7.3f} s  x{med / base:5.3f}   samples {', '.join(f'{x:.3f}' for x in xs)}")
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def bench_openloop(seconds: int, rounds: int) -> None:
    from clauseproof.gateway.openloop import Stream, run
    from clauseproof.targets.gateways.nginx import EmbeddedGateway

    g = EmbeddedGateway()
    g.start()
    try:
        print(f"open-loop generator through {g.label} ({g.describe()['gateway']}), {seconds} s per run")
        for rate in (2000, 4000):
            for _ in range(rounds):
                cpu0 = time.process_time()
                r = run(g.base_url, [Stream("bench", rate, "/limit/route-a/echo")], seconds)
                cpu = time.process_time() - cpu0
                sent = sorted(x.sent for x in r.samples)
                achieved = (len(sent) - 1) / (sent[-1] - sent[0])
                lag = r.lag_ms()
                answered = sum(1 for x in r.samples if x.status > 0)
                print(
                    f"  {rate:,}/s asked: {len(r.samples):,} requests, sent at {achieved:,.0f}/s; lag p50 "
                    f"{lag['p50']:.2f} ms, p99 {lag['p99']:.2f} ms, max {lag['max']:.2f} ms; not sent "
                    f"{lag['not_sent']}; answered {answered:,}; generator CPU {cpu / seconds:.2f} cores"
                )
    finally:
        g.stop()


def bench_connect(rounds: int, n: int = 300) -> None:
    from functools import partial

    import psycopg
    import pymysql

    from clauseproof.targets.pymysql_conn import connect as connect_mysql

    def per_connection(make: Callable[[], Any]) -> tuple[float, float]:
        cpu, wall = time.thread_time(), time.perf_counter()
        for _ in range(n):
            c = make()
            with c.cursor() as cur:
                cur.execute("SELECT 1")
            c.close()
        return (time.thread_time() - cpu) / n * 1e3, (time.perf_counter() - wall) / n * 1e3

    for cls in (EmbeddedMariaDB, EmbeddedPostgres):
        t = cls(f"embedded-{cls.dialect}", "clauseproof_bench", None)
        t.start()
        try:
            ep = t.address()
            kinds: dict[str, Callable[[], Any]]
            if t.dialect == "postgresql":
                kw: dict[str, Any] = {"password": ep.password, "dbname": ep.database}
                kinds = {"psycopg": partial(psycopg.connect, host=ep.host, port=ep.port, user=ep.user, **kw)}
            else:
                kw = {"host": ep.host, "port": ep.port, "user": ep.user, "password": ep.password or ""}
                kinds = {
                    "PyMySQL as it comes": partial(pymysql.connect, **kw),
                    "the harness's PyMySQL": partial(connect_mysql, **kw),
                }
            for name, make in kinds.items():
                runs = [per_connection(make) for _ in range(rounds)]
                cpu, wall = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
                print(f"connect + SELECT 1 + close, {t.label}, {name}: {cpu:.2f} ms CPU, {wall:.2f} ms wall (median "
                      f"of {rounds} rounds of {n})")  # fmt: skip
        finally:
            t.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--gen-rows", type=int, default=2_000_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--engines", default="postgresql,mariadb")
    p.add_argument("--sm4-rows", type=int, default=100_000)
    p.add_argument(
        "--only",
        choices=[
            "generation",
            "load",
            "sm4",
            "oltp",
            "scan",
            "history",
            "sync",
            "connect",
            "containers",
            "openloop",
            "cloud",
        ],
        help="run one section only (containers and cloud run only when named: they need a Docker engine, and "
        "Debian's OpenStack and Rally)",
    )
    p.add_argument("--history-ops", type=int, default=1_000_000, help="history: operations judged")
    p.add_argument("--clients", type=int, default=16, help="oltp: clients for pgbench and Locust users")
    p.add_argument("--seconds", type=int, default=15, help="oltp, openloop: seconds per measurement")
    p.add_argument("--scan-mib", type=int, default=1024, help="scan: MiB of files to scan")
    p.add_argument("--sync-rows", type=int, default=2_000_000, help="sync: rows per side")
    p.add_argument("--vms", type=int, default=30, help="cloud: servers per round")
    p.add_argument("--concurrency", type=int, default=10, help="cloud: servers in flight")
    a = p.parse_args()
    if a.only == "cloud":
        from benchmarks.cloud_rally import bench_cloud

        bench_cloud(a.vms, a.concurrency, a.rounds)
        return 0
    if a.only == "containers":
        bench_containers(a.rows, a.rounds, a.engines.split(","))
        return 0
    if a.only in (None, "connect"):
        bench_connect(a.rounds)
    if a.only == "connect":
        return 0
    if a.only in (None, "openloop"):
        bench_openloop(a.seconds, a.rounds)
    if a.only == "openloop":
        return 0
    if a.only in (None, "sync"):
        bench_sync(a.sync_rows, a.rounds)
    if a.only == "sync":
        return 0
    if a.only in (None, "history"):
        bench_history(a.history_ops, a.rounds)
    if a.only == "history":
        return 0
    if a.only in (None, "scan"):
        bench_scan(a.scan_mib, a.rounds)
    if a.only == "scan":
        return 0
    if a.only in (None, "oltp"):
        bench_oltp(a.clients, a.seconds)
    if a.only == "oltp":
        return 0
    if a.only in (None, "sm4"):
        bench_sm4(a.sm4_rows, a.rounds)
    if a.only == "sm4":
        return 0
    bench_generation(a.gen_rows)
    if a.only == "generation":
        return 0
    cache = Path(tempfile.mkdtemp(prefix="clauseproof-bench-cache-"))
    try:
        for engine in a.engines.split(","):
            cls = EmbeddedPostgres if engine == "postgresql" else EmbeddedMariaDB
            t = cls(f"embedded-{engine}", "clauseproof_bench", None)
            t.start()
            try:
                bench_load(t, a.rows, a.rounds, cache)
            finally:
                t.stop()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    import signal

    def _stop(signum: int, frame: object) -> None:  # SIGTERM, SIGHUP as Ctrl-C: what a section started is stopped
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    sys.exit(main())
