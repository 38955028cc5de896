"""A vendor's backup-policy tool over an embedded PostgreSQL, for the self-tests' [backup_policy] profiles: a real
scheduler (a background process that runs pg_dump every interval, for at most a minute), a policy kept in a state
folder, a list and a restore. ``--cheat retention`` keeps at most 30 days whatever it is told; ``--cheat empty``
backs up an empty database instead of the one asked for."""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

p = argparse.ArgumentParser()
p.add_argument("--state", required=True, type=Path)
p.add_argument("--port", required=True)
p.add_argument("--cheat", default="")
p.add_argument("verb")
p.add_argument("args", nargs="*")
a = p.parse_args()
policy_file, list_file = a.state / "policy.json", a.state / "backups.json"
pg = ["-h", "127.0.0.1", "-p", a.port, "-U", "postgres"]


def load(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.exists() else default


if a.verb == "show":
    print(json.dumps(load(policy_file, {"retention_days": 7, "interval_s": 86400})))
elif a.verb == "set":
    retention, interval = int(a.args[0]), int(a.args[1])
    if a.cheat == "retention":
        retention = min(retention, 30)
    policy_file.write_text(json.dumps({"retention_days": retention, "interval_s": interval}))
    if interval < 60:  # the scheduler: detached, bounded to a minute
        subprocess.Popen(
            [sys.executable, __file__, *sys.argv[1:-3], "schedule"],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
elif a.verb == "schedule":
    end = time.monotonic() + 60
    last = time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.2)
        interval = load(policy_file, {}).get("interval_s", 86400)
        if time.monotonic() - last < interval:
            continue
        last = time.monotonic()
        n = len(load(list_file, []))
        out = a.state / f"b{n}.dump"
        db = "template1" if a.cheat == "empty" else "postgres"
        subprocess.run(["pg_dump", *pg, "-Fc", "-f", str(out), db], check=True, env=os.environ)
        taken = datetime.datetime.now(datetime.UTC).isoformat()
        backups = load(list_file, [])
        backups.append({"id": f"b{n}", "taken_at": taken, "automatic": True})
        list_file.write_text(json.dumps(backups))
elif a.verb == "list":
    print(json.dumps(load(list_file, [])))
elif a.verb == "restore":
    backup_id, new_db = a.args
    subprocess.run(["createdb", *pg, new_db], check=True)
    subprocess.run(["pg_restore", *pg, "-d", new_db, str(a.state / f"{backup_id}.dump")], check=True)
else:
    sys.exit(f"unknown verb {a.verb}")
