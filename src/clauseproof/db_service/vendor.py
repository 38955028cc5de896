"""A vendor's database service under the db_service suite, through the profile's ``[service]`` section.

```toml
[service]
# SX-RDS-5: each prints JSON. slow_queries_command: [{"query": "...", "seconds": 1.52}, ...] listed since {since}
# (ISO 8601 UTC); health_command: {"healthy": false, "problems": ["lock wait: session 4711 ..."]}
slow_queries_command = "vendorctl slowlog --instance db1 --since {since} --json"
health_command = "vendorctl health --instance db1 --json"
slow_query_threshold_s = 1.0      # what the service counts as slow
report_delay_s = 60               # how long its analysis may take to list a statement
health_delay_s = 60               # how long its health status may take to show a fault, and its recovery
# BZ-DB-3: prints /proc/cpuinfo, then /etc/os-release, of the database host (the facts are read, never declared)
host_command = "ssh db1 'cat /proc/cpuinfo /etc/os-release'"
# BZ-SEC-1: the service refuses plaintext connections; audit_command prints the audit log since {since}
tls_required = true
audit_command = "vendorctl audit --instance db1 --since {since}"
audit_delay_s = 60                # how long the trail may take to show a change
command_timeout_s = 60
```

Every command runs with the target's password in ``PGPASSWORD`` / ``MYSQL_PWD`` and its output is read from a private
file; nothing a command prints is executed.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any

from clauseproof.core.commands import template_problem, vendor_output
from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.roles import AuditTrail, Database, Diagnosis, Health, SlowQuery
from clauseproof.targets.sections import Section

PLACEHOLDERS = {
    "slow_queries_command": ("since",),
    "health_command": (),
    "host_command": (),
    "audit_command": ("since",),
}
KEYS: dict[str, type | tuple[type, ...]] = {
    **dict.fromkeys(PLACEHOLDERS, str),
    "slow_query_threshold_s": (int, float),
    "report_delay_s": (int, float),
    "health_delay_s": (int, float),
    "audit_delay_s": (int, float),
    "tls_required": bool,
    "command_timeout_s": (int, float),
}


@dataclass(frozen=True)
class ServiceSection:
    commands: dict[str, str] = field(default_factory=dict)
    slow_query_threshold_s: float = 1.0
    report_delay_s: float = 60.0
    health_delay_s: float = 60.0
    audit_delay_s: float = 60.0
    tls_required: bool | None = None
    command_timeout_s: float = 60.0


def parse(body: dict[str, Any], err: Any) -> ServiceSection | None:
    if not body:
        return None
    commands = {k: str(body[k]) for k in PLACEHOLDERS if k in body}
    for name, template in commands.items():
        problem = template_problem(template, PLACEHOLDERS[name])
        if problem:
            allowed = ", ".join("{" + a + "}" for a in PLACEHOLDERS[name]) or "no placeholder"
            raise err("service", name, problem, f"use {allowed}, bare, without quotes")
    for key in ("slow_query_threshold_s", "report_delay_s", "health_delay_s", "audit_delay_s", "command_timeout_s"):
        if key in body and not 0 < float(body[key]) <= 3600:
            raise err("service", key, f"{body[key]!r} is not a number of seconds in (0, 3600]", "give e.g. 60")
    return ServiceSection(
        commands=commands,
        slow_query_threshold_s=float(body.get("slow_query_threshold_s", 1.0)),
        report_delay_s=float(body.get("report_delay_s", 60.0)),
        health_delay_s=float(body.get("health_delay_s", 60.0)),
        audit_delay_s=float(body.get("audit_delay_s", 60.0)),
        tls_required=body.get("tls_required"),
        command_timeout_s=float(body.get("command_timeout_s", 60.0)),
    )


#: ``[service]`` of a profile, registered in pyproject.toml (entry point group ``clauseproof.sections``).
SECTION = Section("service", KEYS, parse)


def section_of(target: Database) -> ServiceSection | None:
    return target.profile.section("service") if target.profile else None


def run_output(target: Database, section: ServiceSection, name: str, **values: str) -> str:
    """Run the profile's command ``name`` and return what it printed (a failure raises, naming the command)."""
    return vendor_output(f"[service] {name}", section.commands[name], target, dict(values), section.command_timeout_s)


def _json(text: str, name: str, shape: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClauseproofError(f"[service] {name} printed no JSON ({exc})", fix=f"make it print {shape}") from None


class VendorDiagnosis:
    """The service's slow-query analysis and health status, through its commands (role ``Diagnosis``)."""

    def __init__(self, target: Database, section: ServiceSection) -> None:
        self.target, self.section = target, section
        self._since = ""

    @property
    def diagnosis_source(self) -> str:
        c = self.section.commands
        return f"the vendor's commands: {c.get('slow_queries_command')!r} and {c.get('health_command')!r}"

    def slow_query_start(self) -> float:
        self._since = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        return self.section.slow_query_threshold_s

    def slow_queries(self) -> list[SlowQuery]:
        shape = '[{"query": "...", "seconds": 1.5}, ...]'
        rows = _json(run_output(self.target, self.section, "slow_queries_command", since=self._since),
                     "slow_queries_command", shape)  # fmt: skip
        if not isinstance(rows, list):
            raise ClauseproofError("[service] slow_queries_command printed no JSON list", fix=f"print {shape}")
        return [SlowQuery(str(r.get("query", "")), float(r.get("seconds", 0))) for r in rows if isinstance(r, dict)]

    def health(self) -> Health:
        shape = '{"healthy": true, "problems": []}'
        doc = _json(run_output(self.target, self.section, "health_command"), "health_command", shape)
        if not isinstance(doc, dict) or not isinstance(doc.get("healthy"), bool):
            raise ClauseproofError('[service] health_command printed no {"healthy": ...}', fix=f"print {shape}")
        return Health(doc["healthy"], tuple(str(p) for p in doc.get("problems", [])))

    def diagnosis_stop(self) -> None:
        return None


#: How long the embedded stand-ins' slow log and health status may take (they answer at once).
EMBEDDED_DELAYS = (10.0, 15.0)


def diagnosis_of(target: Database) -> tuple[Diagnosis | None, tuple[float, float], str]:
    """(the target's diagnosis, how long its analysis may take to list a statement and its health status to show a
    fault, why there is none)."""
    section = section_of(target)
    if section and {"slow_queries_command", "health_command"} <= set(section.commands):
        return VendorDiagnosis(target, section), (section.report_delay_s, section.health_delay_s), ""
    if target.profile is None and isinstance(target, Diagnosis):
        return target, EMBEDDED_DELAYS, ""
    why = (
        f"{target.label} declares no slow-query analysis or health status: a profile gives them as [service] "
        "slow_queries_command and health_command (the harness changes no setting of a server it did not start)"
    )
    return None, (0.0, 0.0), why


class VendorAudit:
    """The service's audit trail, through ``[service] audit_command`` (role ``AuditTrail``)."""

    def __init__(self, target: Database, section: ServiceSection) -> None:
        self.target, self.section = target, section
        self._since = ""

    @property
    def audit_source(self) -> str:
        return f"the vendor's command {self.section.commands.get('audit_command')!r}"

    def audit_start(self) -> None:
        self._since = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")

    def audit_entries(self) -> list[str]:
        return run_output(self.target, self.section, "audit_command", since=self._since).splitlines()

    def audit_stop(self) -> None:
        return None


def audit_of(target: Database) -> tuple[AuditTrail | None, float, str]:
    """(the target's audit trail, how long it may take to show a change, why there is none)."""
    section = section_of(target)
    if section and "audit_command" in section.commands:
        return VendorAudit(target, section), section.audit_delay_s, ""
    if target.profile is None and isinstance(target, AuditTrail):
        return target, 15.0, ""
    return (
        None,
        0.0,
        (
            f"{target.label} declares no audit trail: a profile gives it as [service] audit_command (the harness turns "
            "no audit on for a server it did not start)"
        ),
    )
