"""BZ-DB-3: recorded Kunpeng/Kylin and Hygon/UOS hosts are recognised (the positive controls: no such machine is
here), this x86 Debian host is NOT SHOWN with its facts, and a profile that declares Kunpeng on it is FAIL."""

from __future__ import annotations

from pathlib import Path

from clauseproof.core.catalog import load_catalog
from clauseproof.core.evidence import CaseEvidence, CaseRecord
from clauseproof.db_service.platform import check_platform, parse_facts
from clauseproof.targets.single.external import ExternalTarget
from clauseproof.targets.single.postgres import EmbeddedPostgres
from tests.fix_targets import CATALOG, vendor_profile

KUNPENG_920 = """processor\t: 0
BogoMIPS\t: 200.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma dcpop asimddp
CPU implementer\t: 0x48
CPU architecture: 8
CPU variant\t: 0x1
CPU part\t: 0xd01
CPU revision\t: 0
"""
KYLIN_V10 = 'NAME="Kylin Linux Advanced Server"\nVERSION="V10 (Lance)"\nID="kylin"\nVERSION_ID="V10"\n'
HYGON_C86 = (
    "processor\t: 0\nvendor_id\t: HygonGenuine\ncpu family\t: 24\nmodel name\t: Hygon C86 7285 32-core Processor\n"
)
UOS_20 = 'PRETTY_NAME="UnionTech OS Server 20"\nNAME="UnionTech OS Server 20"\nID="uos"\nVERSION_ID="20"\n'


def _evidence() -> CaseEvidence:
    return CaseEvidence(CaseRecord("suites/db_service/t.py::t[x]", ["BZ-DB-3"], "selftest"), load_catalog(CATALOG), 1)


def test_recorded_domestic_hosts_are_recognised() -> None:
    kunpeng = parse_facts(KUNPENG_920, KYLIN_V10, "aarch64", "a recording")
    assert (kunpeng.arch, kunpeng.domestic_cpu, kunpeng.domestic_os) == ("aarch64", "Kunpeng (HiSilicon)", "Kylin")
    hygon = parse_facts(HYGON_C86, UOS_20, "x86_64", "a recording")
    assert (hygon.arch, hygon.domestic_cpu, hygon.domestic_os) == ("x86_64", "Hygon", "UOS")


def test_this_host_is_not_shown_with_its_facts(pg_server: EmbeddedPostgres) -> None:
    ev = _evidence()
    facts = check_platform(pg_server, ev)
    assert str(facts.read_by) == "SQL on the server (pg_read_file)" and facts.os_id == "debian"
    assert [m.verdict for m in ev.record.measurements] == ["NOT SHOWN", "NOT SHOWN"]
    assert "none of the clause's CPUs is here" in ev.record.measurements[0].reason


def test_a_profile_declaring_kunpeng_on_an_x86_host_fails(pg_server: EmbeddedPostgres, tmp_path: Path) -> None:
    """The cheat: the [server] block says Kunpeng and Kylin; the host says otherwise."""
    profile = vendor_profile(tmp_path / "v.toml", pg_server,
                             '[server]\ncpu = "Kunpeng 920"\narch = "arm64"\nos = "Kylin V10"\n')  # fmt: skip
    target = ExternalTarget.from_profile(profile, "clauseproof_selftest_platform")
    target.start()
    try:
        ev = _evidence()
        check_platform(target, ev)
    finally:
        target.stop()
    verdicts = [(m.verdict, m.reason) for m in ev.record.measurements]
    assert [v for v, _ in verdicts] == ["NOT SHOWN", "NOT SHOWN", "FAIL"]
    reason = verdicts[2][1]
    assert "cpu = 'Kunpeng 920'" in reason and "arch = 'arm64'" in reason and "os = 'Kylin V10'" in reason
