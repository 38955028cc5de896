"""A vendor's consistency checker for the self-tests' [sync] check_command: the honest one runs clauseproof's own
checker between the two nodes (their URLs and passwords in VENDORCTL_A_URL / VENDORCTL_B_URL); ``--counts-only``
is the cheapest cheat, comparing row counts and naming nothing."""

import argparse
import json
import os

import psycopg
import pymysql

from clauseproof.sync import seeded
from clauseproof.sync.checker import Checker, Side

p = argparse.ArgumentParser()
p.add_argument("--schema", required=True)
p.add_argument("--counts-only", action="store_true")
p.add_argument("source_table")
p.add_argument("target_table")
a = p.parse_args()


def pg() -> psycopg.Connection:
    return psycopg.connect(os.environ["VENDORCTL_A_URL"], options=f"-c search_path={a.schema}", autocommit=True)


def my() -> pymysql.Connection:
    url = os.environ["VENDORCTL_B_URL"]  # mysql://user:password@host:port/
    user, rest = url.split("://", 1)[1].split(":", 1)
    password, hostport = rest.rsplit("@", 1)
    host, port = hostport.rstrip("/").split(":")
    return pymysql.connect(host=host, port=int(port), user=user, password=password, database=a.schema, autocommit=True)


def count(conn: object, table: str) -> int:
    with conn.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute(f"SELECT count(*) FROM {table}")
        return int(cur.fetchone()[0])


if a.counts_only:
    out = {"source_rows": count(pg(), a.source_table), "target_rows": count(my(), a.target_table), "differences": []}
else:
    tm = seeded.replace_target(seeded.MAPPING, a.target_table)
    check = Checker(Side("source", "postgresql", pg), Side("target", "mysql", my)).check(tm)
    out = {"source_rows": check.source_rows, "target_rows": check.target_rows,
           "differences": [{"key": d.key, "kind": d.kind} for d in check.diffs]}  # fmt: skip
print(json.dumps(out))
