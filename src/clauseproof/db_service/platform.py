"""BZ-DB-3: the domestic CPU and operating system, read from the database host itself, never from a declaration.

The facts: ``/proc/cpuinfo`` (x86 ``vendor_id``: Hygon's ``HygonGenuine``; ARM ``CPU implementer``: HiSilicon's
Kunpeng ``0x48``, Phytium ``0x70``) and ``/etc/os-release`` (``ID``: Kylin ``kylin``, UOS ``uos``), read through SQL
where the engine lets the harness read a server file (PostgreSQL's ``pg_read_file``), through the profile's
``[service] host_command`` otherwise, or from this machine for a server the harness started here; and the engine's
own compile target (``version()``, ``@@version_compile_machine``). A ``[server]`` declaration is compared with the
facts: a profile that says Kunpeng on an x86 server is FAIL, naming the contradiction. Stable operation there is
what the bulk-load and failover suites show when run against the same target; this case says which host they ran on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from clauseproof.core.errors import ClauseproofError, first_line
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import Text, joined, msg
from clauseproof.db_service.vendor import run_output, section_of
from clauseproof.targets.roles import Database, HostFiles

CLAUSE = "BZ-DB-3"
#: ARM implementer codes and x86 vendor ids of the clause's CPU routes.
ARM_IMPLEMENTERS = {"0x48": "Kunpeng (HiSilicon)", "0x70": "Phytium"}
X86_VENDORS = {"HygonGenuine": "Hygon"}
#: os-release IDs of the clause's operating systems (and the names they go by).
OS_IDS = {"kylin": "Kylin", "neokylin": "Kylin", "uos": "UOS", "uniontech": "UOS"}
DOMESTIC_CPU_WORDS = ("kunpeng", "phytium", "hygon", "鲲鹏", "飞腾", "海光")


@dataclass(frozen=True)
class HostFacts:
    arch: str  # from the CPU's own fields: x86_64 or aarch64 (or what the engine was compiled for, when unread)
    cpu_vendor: str  # HygonGenuine, GenuineIntel, 0x48, ...
    cpu_model: str
    os_id: str
    os_name: str
    compiled_for: str
    read_by: str | Text

    @property
    def domestic_cpu(self) -> str:
        return ARM_IMPLEMENTERS.get(self.cpu_vendor) or X86_VENDORS.get(self.cpu_vendor, "")

    @property
    def domestic_os(self) -> str:
        return OS_IDS.get(self.os_id.lower(), "")


def parse_facts(cpuinfo: str, os_release: str, compiled_for: str, read_by: str | Text) -> HostFacts:
    def field(name: str, text: str) -> str:
        m = re.search(rf"^{name}\s*:\s*(.+)$", text, re.MULTILINE)
        return m.group(1).strip() if m else ""

    def osr(name: str) -> str:
        m = re.search(rf"^{name}=(.*)$", os_release, re.MULTILINE)
        return m.group(1).strip().strip('"') if m else ""

    vendor = field("vendor_id", cpuinfo)
    implementer = field("CPU implementer", cpuinfo)
    arch = "x86_64" if vendor else ("aarch64" if implementer else "")
    model = field("model name", cpuinfo) or (f"CPU part {field('CPU part', cpuinfo)}" if implementer else "")
    return HostFacts(arch, vendor or implementer, model, osr("ID"), osr("PRETTY_NAME") or osr("NAME"), compiled_for,
                     read_by)  # fmt: skip


def _sql(conn: Any, sql: str) -> str:
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
    return str(row[0]) if row and row[0] is not None else ""


def read_facts(target: Database) -> tuple[HostFacts | None, str]:
    """The facts, or None and why they could not be read."""
    conn = target.connect(in_namespace=False)
    why = []
    try:
        if target.dialect == "postgresql":
            compiled = _sql(conn, "SELECT version()")
            try:
                cpuinfo = _sql(conn, "SELECT pg_read_file('/proc/cpuinfo')")
                os_release = _sql(conn, "SELECT pg_read_file('/etc/os-release')")
                if cpuinfo:
                    return parse_facts(cpuinfo, os_release, compiled, msg("read_by_pg_read_file")), ""
            except Exception as exc:
                why.append(f"pg_read_file refused: {first_line(exc)}")
        else:
            compiled = _sql(conn, "SELECT CONCAT(@@version_compile_machine, ' / ', @@version_compile_os)")
    finally:
        conn.close()
    section = section_of(target)
    if section and "host_command" in section.commands:
        text = run_output(target, section, "host_command")
        by = msg("read_by_host_command", command=section.commands["host_command"])
        return parse_facts(text, text, compiled, by), ""
    if target.profile is None and isinstance(target, HostFiles):
        return parse_facts(target.host_file("/proc/cpuinfo"), target.host_file("/etc/os-release"), compiled,
                           msg("read_by_local_files")), ""  # fmt: skip
    why.append("no [service] host_command in the profile")
    return HostFacts("", "", "", "", "", compiled, ""), "; ".join(why)


def check_platform(target: Database, evidence: CaseEvidence) -> HostFacts:
    try:
        facts, why = read_facts(target)
    except ClauseproofError as exc:
        facts, why = None, exc.what
    assert facts is not None or why
    declared = dict(target.profile.server) if target.profile else {}
    evidence.parameters(host_facts=facts.__dict__ if facts else None, declared_server=declared or None)
    evidence.window(msg("win_facts_once"))
    if facts is None or not facts.cpu_vendor:
        for part in (msg("host_cpu_domestic_short"), msg("host_os_domestic_short")):
            evidence.part(CLAUSE, None, statistic=part, not_shown=msg("host_facts_unread", why=why))
    else:
        shown = msg("host_cpu_read", cpu=f"{facts.cpu_vendor} {facts.cpu_model} ({facts.arch})", by=facts.read_by)
        cpu = msg("host_cpu_domestic", cpu=facts.domestic_cpu or shown)
        evidence.part(CLAUSE, True if facts.domestic_cpu else None, statistic=cpu,
                      not_shown=msg("host_cpu_other", cpu=shown))  # fmt: skip
        os_seen = msg("host_os_domestic", os=facts.domestic_os or facts.os_name)
        os_other = msg("host_os_other", os=facts.os_name or facts.os_id or msg("unnamed_os"), id=repr(facts.os_id))
        evidence.part(CLAUSE, True if facts.domestic_os else None, statistic=os_seen, not_shown=os_other)
    contradictions = contradicts(declared, facts)
    if declared:
        evidence.part(CLAUSE, not contradictions if facts and facts.cpu_vendor else None,
                      statistic=msg("declaration_agrees"), why=joined(contradictions),
                      not_shown=msg("no_facts_to_compare"))  # fmt: skip
    return facts or HostFacts("", "", "", "", "", "", "")


def contradicts(declared: dict[str, Any], facts: HostFacts | None) -> list[Text]:
    """What a ``[server]`` declaration says that the facts deny."""
    if not facts or not facts.cpu_vendor:
        return []
    out = []
    cpu = str(declared.get("cpu", "")).lower()
    if cpu and any(w in cpu for w in DOMESTIC_CPU_WORDS) and not facts.domestic_cpu:
        out.append(msg("declared_cpu_denied", declared=repr(declared["cpu"]),
                       seen=f"{facts.cpu_vendor} {facts.cpu_model} ({facts.arch})"))  # fmt: skip
    arch = str(declared.get("arch", "")).lower().replace("arm64", "aarch64").replace("amd64", "x86_64")
    if arch and facts.arch and arch != facts.arch:
        out.append(msg("declared_arch_denied", declared=repr(declared["arch"]), seen=facts.arch))
    os_decl = str(declared.get("os", "")).lower()
    if os_decl and any(w in os_decl for w in ("kylin", "uos", "麒麟", "统信")) and not facts.domestic_os:
        out.append(msg("declared_os_denied", declared=repr(declared["os"]), seen=repr(facts.os_name)))
    return out
