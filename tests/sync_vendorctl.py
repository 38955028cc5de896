"""A stand-in vendor's sync command line for the self-tests (not a product): tasks between PostgreSQL nodes made of
a publication and a subscription.  Node URLs (with passwords) come from VENDORCTL_<NODE>_URL.

    python tests/sync_vendorctl.py create NAME --from a --to b -s SCHEMA -t t1,t2 --spec JSON   (-t '*': the schema)
    python tests/sync_vendorctl.py drop NAME --from a --to b -s SCHEMA
    python tests/sync_vendorctl.py pause NAME --to b      # "network cut": the subscription stops, the slot keeps
    python tests/sync_vendorctl.py resume NAME --to b
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def url(node: str) -> str:
    return os.environ[f"VENDORCTL_{node.upper()}_URL"]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("action", choices=["create", "drop", "pause", "resume"])
    p.add_argument("name")
    p.add_argument("--from", dest="source", default="")
    p.add_argument("--to", dest="target", required=True)
    p.add_argument("-s", dest="schema", default="")
    p.add_argument("-t", dest="tables", default="*")
    p.add_argument("--spec", default="{}")
    a = p.parse_args()
    if a.action in ("pause", "resume"):
        with psycopg.connect(url(a.target), autocommit=True) as dst:
            dst.execute(f"ALTER SUBSCRIPTION {a.name} {'DISABLE' if a.action == 'pause' else 'ENABLE'}")
            deadline = time.monotonic() + 10  # a fault command returns once it took effect: the apply worker gone
            while a.action == "pause" and time.monotonic() < deadline:
                q = "SELECT count(*) FROM pg_stat_subscription WHERE subname = %s AND pid IS NOT NULL"
                if dst.execute(q, (a.name,)).fetchone() == (0,):
                    break
                time.sleep(0.05)
        return 0
    src_info = conninfo_to_dict(url(a.source))
    with psycopg.connect(url(a.source), autocommit=True) as src, psycopg.connect(url(a.target), autocommit=True) as dst:
        if a.action == "drop":
            dst.execute(f"DROP SUBSCRIPTION IF EXISTS {a.name}")
            src.execute(f"DROP PUBLICATION IF EXISTS {a.name}")
            return 0
        spec = json.loads(a.spec)
        items = [f"TABLES IN SCHEMA {a.schema}"] if a.tables == "*" else []  # by user: every table of a schema
        for t in a.tables.split(",") if a.tables != "*" else []:
            cols = spec.get("columns", {}).get(t)
            cond = spec.get("row_filters", {}).get(t)
            items.append(
                f"TABLE {a.schema}.{t}"
                + (f" ({', '.join(cols)})" if cols else "")
                + (f" WHERE ({cond})" if cond else "")
            )
        src.execute(f"CREATE PUBLICATION {a.name} FOR {', '.join(items)} WITH (publish = '{spec.get('operations')}')")
        keep = ("host", "port", "user", "password", "dbname")
        conninfo = make_conninfo("", **{k: str(v) for k, v in src_info.items() if k in keep and v is not None})
        dst.execute(
            f"CREATE SUBSCRIPTION {a.name} CONNECTION '{conninfo}' PUBLICATION {a.name} "
            f"WITH (copy_data = {str(spec.get('copy_data', True)).lower()})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
