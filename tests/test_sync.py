"""The sync cases against cheating syncs, each judged FAIL (or NOT SHOWN where the cheat hides the property):
inserts only (updates and deletes lost), changes made during an outage dropped, a bidirectional setup that echoes,
a conversion that truncates a decimal, a target with an extra column or with rows outside the filter, a fault
command that does nothing.  The honest stand-in passes the same cases in the suite (``./run accept``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from clauseproof.core import reaper
from clauseproof.sync import cases
from clauseproof.targets.binlogsync import BinlogSyncLab
from clauseproof.targets.logical import LogicalSyncLab

QUICK = {"markers_per_s": 20, "window_s": 2, "load_per_s": 100, "plan_p99_s": 1.0, "plan_max_s": 3.0}
OUTAGE = {"hold_s": 4, "catch_up_s": 30, "load_per_s": 100}


@pytest.fixture(scope="module")
def lab() -> Iterator[LogicalSyncLab]:
    t = LogicalSyncLab("selftest-sync", "clauseproof_selftest", None)
    t.start()
    yield t
    t.stop()


def part(parts: list[cases.Part], name: str) -> cases.Part:
    return next(p for p in parts if p.name == name)


def test_inserts_only_sync_fails_capture(lab: LogicalSyncLab) -> None:
    parts = cases.capture_online(lab, QUICK, before_s=1.0, publish="insert")
    p = part(parts, "snapshot + incremental capture complete")
    assert p.ok is False and "changed" in p.why, p.why  # updates lost (and deleted rows still there)
    assert part(parts, "source never stopped").ok  # the source itself was fine


def test_truncating_decimal_fails_conversion(lab: LogicalSyncLab) -> None:
    ddl = cases.CONVERTED.replace("amount numeric(14,4)", "amount numeric(14,0)")
    parts = cases.conversion(lab, target_ddl=ddl, seconds=1.0)
    p = part(parts, "type and column-order conversion")
    assert p.ok is False and "changed amount" in p.why, p.why


def test_extra_column_fails_column_selection(lab: LogicalSyncLab) -> None:
    ddl = cases.CONVERTED.replace("status varchar(20),", "status varchar(20), note text,")
    p = part(cases.conversion(lab, target_ddl=ddl, seconds=1.0), "column selection")
    assert p.ok is False and "note" in p.why, p.why


def test_rows_outside_the_filter_fail_row_selection(lab: LogicalSyncLab) -> None:
    p = part(cases.conversion(lab, where="", seconds=1.0), "row selection")
    assert p.ok is False and "extra" in p.why, p.why


def test_echoing_bidirectional_sync_fails(lab: LogicalSyncLab) -> None:
    if not lab.pglogical:
        pytest.skip("pglogical is not installed (./run installs postgresql-15-pglogical)")
    p = cases.bidirectional(lab, forward_origins=True, seconds=1.5)  # every change sent back where it came from
    assert p.ok is False and "came back to its origin" in p.why, p.why


class DropsDuringOutage:
    """A sync that, on recovery, starts afresh from the source's current position: what changed during the
    outage never arrives (no buffering)."""

    def __init__(self, lab: LogicalSyncLab) -> None:
        self.lab = lab
        self.label = lab.label

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lab, name)

    def heal(self, kind: str, task_name: str) -> None:
        task = self.lab.tasks[task_name]
        self.lab.heal(kind, task_name)
        self.lab.drop_task(task_name)
        self.lab.create_task(task_name, task.source, task.target, task.tables, copy_data=False)


class FaultDoesNothing(DropsDuringOutage):
    """A vendor's fault command that reports success and cuts nothing."""

    def fault(self, kind: str, task_name: str) -> None:
        return None

    def heal(self, kind: str, task_name: str) -> None:
        return None


@pytest.mark.slow
def test_sync_that_drops_changes_during_an_outage_fails(lab: LogicalSyncLab) -> None:
    p = cases.outage(DropsDuringOutage(lab), "network", OUTAGE)
    assert p.ok is False and "never arrived" in p.why, p.why


@pytest.mark.slow
def test_fault_that_cuts_nothing_is_not_shown(lab: LogicalSyncLab) -> None:
    p = cases.outage(FaultDoesNothing(lab), "network", OUTAGE)
    assert p.ok is None and "arrived before it ended" in p.why, p.why


def test_lab_leaves_nothing_behind() -> None:
    t = LogicalSyncLab("selftest-sync-once", "clauseproof_selftest", None, nodes=2)
    t.start()
    folders = [n.folder for n in t.nodes.values()]
    with contextlib.closing(t.node_connect("a")) as conn:
        conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY)")
    with contextlib.closing(t.node_connect("b")) as conn:
        conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY)")
    task = t.create_task("cp_leave", "a", "b", ["orders"])
    port = task.relay.port
    t.stop()
    assert all(f is not None and not f.exists() for f in folders)
    with pytest.raises(OSError):  # the relay's port is closed
        import socket

        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert not [e for e in reaper.reap_registered() if "selftest-sync-once" in e]


@pytest.fixture(scope="module")
def hetero() -> Iterator[BinlogSyncLab]:
    t = BinlogSyncLab("selftest-binlog-sync", "clauseproof_selftest")
    t.start()
    yield t
    t.stop()


def test_binlog_sync_captures_mariadb_into_postgresql(hetero: BinlogSyncLab) -> None:
    parts = cases.capture_online(hetero, QUICK, before_s=1.0)
    assert all(p.ok for p in parts), [(p.name, p.why) for p in parts]
    checks = part(parts, "snapshot + incremental capture complete").data["checks"]
    assert checks[0]["source_rows"] > cases.FIRST_ROWS  # the snapshot and what the load added, across engines


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(cases.OUTAGES))
def test_binlog_sync_buffers_through_outages(hetero: BinlogSyncLab, fault: str) -> None:
    p = cases.outage(hetero, fault, OUTAGE)
    assert p.ok, p.why


def test_binlog_sync_refuses_what_it_cannot_do(hetero: BinlogSyncLab) -> None:
    from clauseproof.core.errors import ClauseproofError

    with pytest.raises(ClauseproofError, match="cannot make task"):
        hetero.create_task("cp_nope", "a", "b", ["orders"], where={"orders": "id > 0"})
