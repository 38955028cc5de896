"""SX-ECS-S3: every flavour the clause lists exists and boots, and the booted server reports it.

The list is read from the clause's own text (``1核1G、1核2G、…``: vCPUs and GiB).  A flavour matches when its vCPUs
are equal and its memory is the GiB in MiB (×1024; ×1000 is accepted and said).  One server per matching flavour is
booted and must run, reporting that flavour's vCPUs and memory; a flavour listed but refused
at boot (the cheapest cheat: a catalogue entry no host can place) is FAIL, naming it.  What the guest itself sees is
a separate row, NOT SHOWN where the cloud boots no guest.
"""

from __future__ import annotations

import re
import time

from clauseproof.compute.base import FAILED, RUNNING, ComputeDriver
from clauseproof.compute.batch import VmTiming, _poll, delete_prefixed
from clauseproof.compute.roles import Flavour, Flavours
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import Text, msg

CLAUSE = "SX-ECS-S3"
SPEC = re.compile(r"(\d+)\s*核\s*(\d+)\s*G")


def listed(text: str) -> list[tuple[int, int]]:
    """(vCPUs, GiB) of each flavour the clause text names, in its order."""
    return [(int(v), int(g)) for v, g in SPEC.findall(text)]


def match(spec: tuple[int, int], flavours: list[Flavour]) -> tuple[Flavour | None, Text | str]:
    vcpus, gib = spec
    for f in sorted(flavours, key=lambda f: f.name):
        if f.vcpus == vcpus and f.ram_mb == gib * 1024:
            return f, ""
    for f in sorted(flavours, key=lambda f: f.name):
        if f.vcpus == vcpus and f.ram_mb == gib * 1000:
            return f, msg("flavour_gb_of_1000", name=f.name, mb=f.ram_mb)
    return None, ""


def check_flavours(
    driver: ComputeDriver, run_id: str, clause_text: str, evidence: CaseEvidence, *, poll_s: float, timeout_s: float
) -> None:
    assert isinstance(driver, Flavours)
    specs = listed(clause_text)
    have = driver.flavours()
    evidence.parameters(listed=[f"{v}c{g}g" for v, g in specs], flavours={f.name: (f.vcpus, f.ram_mb) for f in have})
    chosen: dict[tuple[int, int], Flavour] = {}
    for spec in specs:
        f, note = match(spec, have)
        if f is None:
            evidence.part(
                CLAUSE,
                False,
                statistic=msg("flavour_exists", vcpus=spec[0], gib=spec[1]),
                why=msg("no_flavour", vcpus=spec[0], mib=spec[1] * 1024),
            )
        else:
            chosen[spec] = f
            if note:
                evidence.note(note)
    # boot one server per flavour (one create call each), then wait for all of them
    names = {spec: f"cp-{run_id}-fl{spec[0]}c{spec[1]}g" for spec in chosen}
    booted: dict[tuple[int, int], str] = {}
    refused: dict[tuple[int, int], str] = {}
    try:
        for spec, f in chosen.items():
            try:
                booted[spec] = driver.create_servers(run_id, [names[spec]], flavour=f.id)[0][1]
            except Exception as exc:
                refused[spec] = str(exc)
        timings = {vid: VmTiming(names[spec], vid) for spec, vid in booted.items()}
        settled = (RUNNING, FAILED)
        _poll(driver, run_id, timings, lambda vm: vm is not None and vm.state in settled, time.perf_counter(), poll_s,
              timeout_s)  # fmt: skip
        for spec, f in chosen.items():
            label = msg("flavour_boots", vcpus=spec[0], gib=spec[1], name=f.name)
            if spec in refused:
                evidence.part(CLAUSE, False, statistic=label, why=msg("refused_at_boot", error=refused[spec]))
                continue
            b = driver.booted(booted[spec])
            if b.state != RUNNING:
                state = b.fault or f"state {b.state}"
                evidence.part(CLAUSE, False, statistic=label, why=msg("listed_not_bootable", state=state))
            elif (b.vcpus, b.ram_mb) != (f.vcpus, f.ram_mb):
                evidence.part(
                    CLAUSE,
                    False,
                    statistic=label,
                    why=msg("reports_other", vcpus=b.vcpus, mib=b.ram_mb, want_vcpus=f.vcpus, want_mib=f.ram_mb),
                )
            else:
                evidence.part(CLAUSE, True, statistic=msg("flavour_boots_on", what=label, host=b.host))
        evidence.part(
            CLAUSE,
            None,
            statistic=msg("inside_guest"),
            not_shown=msg("no_guest_fake") if not driver.boots_guests else msg("no_way_into_guest"),
        )
    finally:
        delete_prefixed(driver, run_id, "fl", poll_s=poll_s, timeout_s=timeout_s)
