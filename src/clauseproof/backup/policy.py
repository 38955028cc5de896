"""SX-RDS-4's automatic backups and 730-day retention, measured through the service's own backup policy.

```toml
[backup_policy]
show = "vendorctl backup-policy show --instance db1 --json"     # {"retention_days": 7, "interval_s": 86400, ...}
set = "vendorctl backup-policy set --instance db1 --retention {retention_days} --interval {interval_s}"
list = "vendorctl backup list --instance db1 --json"            # [{"id": "b-17", "taken_at": "2026-12-07T01:50:00Z"}]
restore = "vendorctl backup restore --id {id} --to {new_database}"
interval_s = 300     # the schedule the case sets: the shortest the service allows
wait_s = 900         # how long the case waits for a backup it did not ask for
```

The case sets the policy (730 days, the interval), reads it back (retention is what the service *keeps*, not what
it was told), writes a marked table, and never asks for a backup: a new backup taken after the table was written
must appear within ``wait_s``, and restore — into a new database of the harness's — with the marked table equal to
what was written. The policy found is set back afterwards, the restored database dropped.

The embedded engines have no backup scheduler of their own (one the harness ran would be the harness asking): on
them both parts are NOT SHOWN, naming why.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from clauseproof.core.commands import template_problem, vendor_output
from clauseproof.core.errors import ClauseproofError, first_line
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import msg
from clauseproof.targets.roles import Database
from clauseproof.targets.sections import Section

CLAUSE = "SX-RDS-4"
RETENTION_DAYS = 730
PLACEHOLDERS = {
    "show": (),
    "set": ("retention_days", "interval_s"),
    "list": (),
    "restore": ("id", "new_database"),
}
KEYS: dict[str, type | tuple[type, ...]] = {
    **dict.fromkeys(PLACEHOLDERS, str),
    "interval_s": (int, float),
    "wait_s": (int, float),
    "command_timeout_s": (int, float),
}
ROWS = 100


@dataclass(frozen=True)
class PolicySection:
    commands: dict[str, str] = field(default_factory=dict)
    interval_s: float = 300.0
    wait_s: float = 900.0
    command_timeout_s: float = 600.0


def parse(body: dict[str, Any], err: Any) -> PolicySection | None:
    if not body:
        return None
    missing = [k for k in PLACEHOLDERS if k not in body]
    if missing:
        raise err("backup_policy", None, f"no {', '.join(missing)} command", "give show, set, list and restore")
    for name in PLACEHOLDERS:
        problem = template_problem(body[name], PLACEHOLDERS[name])
        if problem:
            allowed = ", ".join("{" + a + "}" for a in PLACEHOLDERS[name]) or "no placeholder"
            raise err("backup_policy", name, problem, f"use {allowed}, bare, without quotes")
    for key in ("interval_s", "wait_s", "command_timeout_s"):
        if key in body and not 0 < float(body[key]) <= 7 * 86400:
            raise err("backup_policy", key, f"{body[key]!r} is not a number of seconds in (0, 604800]", "e.g. 300")
    return PolicySection(
        commands={k: str(body[k]) for k in PLACEHOLDERS},
        interval_s=float(body.get("interval_s", 300)),
        wait_s=float(body.get("wait_s", 900)),
        command_timeout_s=float(body.get("command_timeout_s", 600)),
    )


#: ``[backup_policy]`` of a profile, registered in pyproject.toml (entry point group ``clauseproof.sections``).
SECTION = Section("backup_policy", KEYS, parse)


def _run(target: Database, sec: PolicySection, name: str, **values: str | int) -> str:
    return vendor_output(f"[backup_policy] {name}", sec.commands[name], target, values, sec.command_timeout_s)


def _json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClauseproofError(f"[backup_policy] {name} printed no JSON: {exc}", fix="make it print JSON") from None


def _when(value: Any) -> datetime.datetime | None:
    try:
        t = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=datetime.UTC)


def _table_digest(conn: Any, table: str) -> tuple[int, str]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, note FROM {table} ORDER BY id")
        rows = cur.fetchall()
    return len(rows), "|".join(f"{i}:{n}" for i, n in rows)


def check_automatic_backups(target: Database, evidence: CaseEvidence) -> None:
    sec: PolicySection | None = target.profile.section("backup_policy") if target.profile else None
    statistic_auto = msg("part_automatic_backup")
    statistic_keep = msg("part_retention", days=RETENTION_DAYS)
    if sec is None:
        none = msg("no_backup_scheduler" if target.profile is None else "no_backup_policy_section")
        evidence.part(CLAUSE, None, statistic=statistic_auto, not_shown=none)
        evidence.part(CLAUSE, None, statistic=statistic_keep, not_shown=none)
        return
    before = _json(_run(target, sec, "show"), "show")
    table = f"cp_autobackup_{secrets.token_hex(4)}"
    marker = secrets.token_hex(8)
    new_db = f"{target.namespace}_restored"
    conn = target.connect()
    log: dict[str, Any] = {"policy_before": before}
    try:
        _run(target, sec, "set", retention_days=RETENTION_DAYS, interval_s=int(sec.interval_s))
        after = _json(_run(target, sec, "show"), "show")
        log["policy_after_set"] = after
        kept = after.get("retention_days") if isinstance(after, dict) else None
        evidence.part(CLAUSE, kept == RETENTION_DAYS, statistic=msg("part_retention_read", days=RETENTION_DAYS,
                      kept=str(kept)), why=msg("retention_read_back", kept=repr(kept)))  # fmt: skip
        listed_before = {str(b.get("id")) for b in _json(_run(target, sec, "list"), "list") if isinstance(b, dict)}
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, note VARCHAR(40))")
            for i in range(ROWS):
                cur.execute(f"INSERT INTO {table} VALUES ({i}, '{marker}-{i}')")
        written_at = datetime.datetime.now(datetime.UTC)
        source = _table_digest(conn, table)
        evidence.progress(f"{target.label}: waiting up to {sec.wait_s:g} s for an automatic backup")
        deadline, found = time.monotonic() + sec.wait_s, None
        while found is None and time.monotonic() < deadline:
            time.sleep(min(5.0, max(0.5, sec.interval_s / 4)))
            for b in _json(_run(target, sec, "list"), "list"):
                taken = _when(b.get("taken_at")) if isinstance(b, dict) else None
                if taken and str(b.get("id")) not in listed_before and taken > written_at:
                    found = b
                    break
        waited = round(sec.wait_s - max(0.0, deadline - time.monotonic()), 1)
        log.update(backup_found=found, waited_s=waited, table=table)
        if found is None:
            evidence.part(CLAUSE, False, statistic=statistic_auto,
                          why=msg("no_new_backup", wait=f"{sec.wait_s:g}", interval=f"{sec.interval_s:g}"))  # fmt: skip
            return
        try:
            _run(target, sec, "restore", id=str(found.get("id")), new_database=new_db)
            restored = target.connect_database(new_db)
            try:
                where = table if target.dialect != "postgresql" else f"{target.namespace}.{table}"
                copy = _table_digest(restored, where)
            finally:
                restored.close()
            why = "" if copy == source else f"the restored table holds {copy[0]} rows, not the {source[0]} written"
        except Exception as exc:
            copy, why = (0, ""), f"the restore failed: {first_line(exc)}"
        log["restored_rows"] = copy[0]
        evidence.part(CLAUSE, not why,
                      statistic=msg("part_automatic_backup_found", id=str(found.get("id")),
                                    taken=str(found.get("taken_at")), waited=f"{waited:g}", rows=ROWS),
                      why=why)  # fmt: skip
    finally:
        evidence.parameters(backup_policy=log)
        with contextlib.suppress(Exception), conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()
        with contextlib.suppress(Exception), target.connect(in_namespace=False) as admin, admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {new_db}")
        if isinstance(before, dict) and "retention_days" in before:  # the policy found, set back
            with contextlib.suppress(Exception):
                _run(target, sec, "set", retention_days=int(before["retention_days"]),
                     interval_s=int(before.get("interval_s", sec.interval_s)))  # fmt: skip
