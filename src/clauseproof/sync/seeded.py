"""A table on PostgreSQL and its copy on MariaDB — or on ClickHouse, the columnar engine — as a sync would leave it
(each engine's own types), and differences seeded into the copy: what BZ-SYNC-3's checker is shown on, in the
suite and in the self-tests.

The copy differs in form but not in content: a wider decimal, wall-clock time in +08:00, CHAR padding, a
latin1 column, '' for NULL, a float off in the 13th digit, TINYINT for the boolean, the columns in another
order.  A naive comparison finds a difference in every row; the declared mapping (``MAPPING``) none.  On
ClickHouse (``CH_DDL``): the same, with ``UInt8`` for the boolean, epoch ``DateTime`` in whole seconds (rounded as
a sync at second precision would) and ``CH_MAPPING`` comparing the timestamps to the second.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from clauseproof.core.i18n import Text, msg
from clauseproof.sync.checker import Checker, Side, TableCheck
from clauseproof.sync.mapping import ColumnMap, TableMap

ROWS = 3000  # the self-tests' size; the suite uses its own
UTC8 = dt.timezone(dt.timedelta(hours=8))
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

PG_DDL = """CREATE TABLE people (id bigint PRIMARY KEY, amount numeric(12,2), seen timestamptz, name text,
    city text, nick text, score double precision, flag boolean, born date)"""
# the same rows as MariaDB holds them after a sync: wider decimal, wall-clock time in +08:00, CHAR padding,
# a latin1 column, '' for NULL, a float off in the 12th digit, TINYINT for the boolean, columns in another order
MY_DDL = """CREATE TABLE {name} (flag tinyint, born date, id bigint {pk}, score double, nick varchar(20),
    city varchar(20) CHARACTER SET latin1, name char(30), seen datetime(6), amount decimal(14,4))"""


CH_DDL = """CREATE TABLE {name} (flag UInt8, born Date, id Int64, score Float64, nick String, city Nullable(String),
    name String, seen DateTime, amount Decimal(14, 4)) ENGINE = MergeTree ORDER BY id"""


#: ClickHouse 18.16's Date starts at 1970-01-01 (it writes earlier dates as 0000-00-00): its copies are of rows born
#: from here
CH_BORN_FROM = dt.date(1990, 1, 1)


def people(rows: int = ROWS, born_from: dt.date = dt.date(1960, 1, 1)) -> list[tuple[Any, ...]]:
    base = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
    cities = ["Zürich", "Besançon", "Köln", "Malmö", "Niš"]
    return [
        (
            i,
            Decimal(i * 37 % 100000) / 100,
            base + dt.timedelta(seconds=i * 1.234567),
            f"name {i}",
            cities[i % len(cities)] if i % 7 else None,
            None if i % 3 == 0 else f"nick{i}",
            i / 7,
            i % 2 == 0,
            born_from + dt.timedelta(days=i),
        )
        for i in range(1, rows + 1)
    ]


def as_mariadb(r: tuple[Any, ...]) -> tuple[Any, ...]:
    i, amount, seen, name, city, nick, score, flag, born = r
    wall = seen.astimezone(UTC8).replace(tzinfo=None)
    return (int(flag), born, i, score * (1 + 1e-13), nick or "", city, name, wall, amount)


def as_clickhouse(r: tuple[Any, ...]) -> tuple[Any, ...]:
    i, amount, seen, name, city, nick, score, flag, born = r
    us = (seen - EPOCH) // dt.timedelta(microseconds=1)
    second = EPOCH + dt.timedelta(seconds=(us + 500_000) // 1_000_000)  # half up, as the checker rounds
    return (int(flag), born, i, score * (1 + 1e-13), nick or "", city, name + "   ", second, amount)


MAPPING = TableMap(
    source_table="people",
    target_table="people",
    key="id",
    columns=(
        ColumnMap("id", kind="int"),
        ColumnMap("amount", kind="decimal", scale=2),
        ColumnMap("seen", kind="timestamp", source_tz="+00:00", target_tz="+08:00"),
        ColumnMap("name", kind="text", rtrim=True),
        ColumnMap("city", kind="text"),
        ColumnMap("nick", kind="text", empty_is_null=True),
        ColumnMap("score", kind="float", scale=9),
        ColumnMap("flag", kind="bool"),
        ColumnMap("born", kind="date"),
    ),
)


#: (what, SQL on the copy ``{t}``, the key and kind the checker must report)
SEEDED: list[tuple[Text, str, tuple[int, str]]] = [
    (msg("seed_decimal"), "UPDATE {t} SET amount = amount + 0.01 WHERE id = 101", (101, "changed")),
    (msg("seed_timestamp_us"), "UPDATE {t} SET seen = seen + INTERVAL 1 MICROSECOND WHERE id = 202", (202, "changed")),
    (msg("seed_accent"), "UPDATE {t} SET city = 'Zurich' WHERE id = 5", (5, "changed")),
    (msg("seed_null_value"), "UPDATE {t} SET nick = 'x' WHERE id = 303", (303, "changed")),
    (msg("seed_float"), "UPDATE {t} SET score = score + 1e-6 WHERE id = 404", (404, "changed")),
    (msg("seed_missing"), "DELETE FROM {t} WHERE id = 505", (505, "missing")),
    (
        msg("seed_extra"),
        "INSERT INTO {t} SELECT flag, born, {extra}, score, nick, city, name, seen, amount FROM {t} WHERE id = 606",
        (-1, "extra"),
    ),
    (msg("seed_duplicated"), "INSERT INTO {t} SELECT * FROM {t} WHERE id = 707", (707, "duplicated")),
    (msg("seed_moved"), "UPDATE {t} SET id = {moved} WHERE id = 808", (808, "moved")),
]


def load_postgres(pg: Any, data: list[tuple[Any, ...]], table: str = "people") -> None:
    """The source table on PostgreSQL (``pg``), made anew."""
    pg.execute(f"DROP TABLE IF EXISTS {table}")
    pg.execute(PG_DDL.replace("people", table))
    with pg.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", data)
    pg.execute(f"UPDATE {table} SET name = name || '  ' WHERE id % 5 = 0")  # source-side trailing spaces


def load(pg: Any, my: Any, rows: int, table: str = "people") -> None:
    """The table on PostgreSQL (``pg``) and its copy on MariaDB (``my``), both made anew."""
    data = people(rows)
    load_postgres(pg, data, table)
    c = my.cursor()
    c.execute(f"DROP TABLE IF EXISTS {table}")
    c.execute(MY_DDL.format(name=table, pk="PRIMARY KEY"))
    c.executemany(
        f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [tuple(v if j != 6 else v + "   " for j, v in enumerate(as_mariadb(r))) for r in data],
    )
    c.close()


def seed(my: Any, rows: int, source: str = "people", copy: str = "people_seeded") -> set[tuple[int, str]]:
    """A copy of ``source`` without a key constraint on MariaDB, every difference of ``SEEDED`` made in it;
    returns the (key, kind) pairs the checker must report."""
    c = my.cursor()
    c.execute(f"DROP TABLE IF EXISTS {copy}")
    c.execute(MY_DDL.format(name=copy, pk=""))
    c.execute(f"INSERT INTO {copy} SELECT * FROM {source}")
    want = set()
    for _, sql, (key, kind) in SEEDED:
        c.execute(sql.format(t=copy, extra=rows + 100, moved=rows + 200))
        want.add((rows + 100 if key == -1 else key, kind))
    c.close()
    return want


def compare(pg: Callable[[], Any], my: Callable[[], Any], tm: TableMap = MAPPING) -> TableCheck:
    return Checker(Side("source", "postgresql", pg), Side("target", "mysql", my)).check(tm)


def drop(my: Any, *tables: str) -> None:
    with contextlib.closing(my.cursor()) as c:
        for t in tables:
            c.execute(f"DROP TABLE IF EXISTS {t}")


def replace_target(tm: TableMap, table: str) -> TableMap:
    """``tm`` pointed at another target table."""
    from dataclasses import replace

    return replace(tm, target_table=table)


#: the mapping onto ClickHouse: its DateTime holds whole seconds, compared at precision 0
CH_MAPPING = TableMap(
    source_table="people",
    target_table="people",
    key="id",
    columns=tuple(
        ColumnMap("seen", kind="timestamptz", precision=0) if c.source == "seen" else c for c in MAPPING.columns
    ),
)

#: (what, the change made to the copy's row of that key, the key and kind the checker must report) — ClickHouse's
#: updates are asynchronous mutations, so the copy is written with its differences in place
CH_SEEDED: list[tuple[Text, int, str]] = [
    (msg("seed_decimal"), 101, "changed"),
    (msg("seed_timestamp_s"), 202, "changed"),
    (msg("seed_accent"), 5, "changed"),
    (msg("seed_null_value"), 303, "changed"),
    (msg("seed_float"), 404, "changed"),
    (msg("seed_missing"), 505, "missing"),
    (msg("seed_extra"), 606, "extra"),
    (msg("seed_duplicated"), 707, "duplicated"),
    (msg("seed_moved"), 808, "moved"),
]


def load_clickhouse(
    ch: Any, rows: int, table: str = "people", *, seeded: bool = False, born_from: dt.date = CH_BORN_FROM
) -> set[tuple[int, str]]:
    """The copy of ``people(rows, born_from)`` on ClickHouse (``ch``, a DB-API connection), made anew; ``seeded``:
    with every difference of ``CH_SEEDED`` in it.  Returns the (key, kind) pairs the checker must report."""
    data = [as_clickhouse(r) for r in people(rows, born_from)]
    want: set[tuple[int, str]] = set()
    if seeded:
        by_id = {r[2]: list(r) for r in data}
        by_id[101][8] += Decimal("0.01")
        by_id[202][7] += dt.timedelta(seconds=1)
        by_id[5][5] = "Zurich"
        by_id[303][4] = "x"
        by_id[404][3] += 1e-6
        del by_id[505]
        extra = list(by_id[606])
        extra[2] = rows + 100
        moved = by_id.pop(808)
        moved[2] = rows + 200
        data = [tuple(r) for r in by_id.values()] + [tuple(extra), tuple(by_id[707]), tuple(moved)]
        want = {(rows + 100 if kind == "extra" else key, kind) for _, key, kind in CH_SEEDED}
    c = ch.cursor()
    c.execute(f"DROP TABLE IF EXISTS {table}")
    c.execute(CH_DDL.format(name=table))
    c.executemany(f"INSERT INTO {table} (flag, born, id, score, nick, city, name, seen, amount) VALUES", data)
    c.close()
    return want
