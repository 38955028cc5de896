"""SX-ECS-2's change of operating system: a server rebuilt in place to a second image of the cloud.

Judged on the server as the API shows it before and after, read by its id: it must still exist under the same id
(a delete-and-recreate under the same name — the cheapest cheat — leaves the old id gone), keep its creation time
and its addresses, and report the new image.  A server without an address (the embedded cloud has no network
service) makes that part NOT SHOWN.
"""

from __future__ import annotations

import time

from clauseproof.compute.base import GONE, RUNNING, ComputeDriver
from clauseproof.compute.batch import create_batch, delete_prefixed
from clauseproof.compute.roles import Booted, Rebuild
from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import Text, msg

CLAUSE = "SX-ECS-2"


def judge_rebuild(
    before: Booted, after: Booted | None, new_image: str, same_name: list[str]
) -> list[tuple[Text, bool | None, Text | str]]:
    """(part, verdict, why) rows; ``after`` is the server read by ``before.id`` (None: gone); ``same_name`` the ids
    of every server of the run with ``before.name``."""
    if after is None or after.state == GONE:
        others = [i for i in same_name if i != before.id]
        gone = (
            msg("rebuild_recreated", id=before.id, others=", ".join(others))
            if others
            else msg("rebuild_gone", id=before.id)
        )
        return [(msg("rebuild_keeps_id"), False, gone)]
    rows: list[tuple[Text, bool | None, Text | str]] = [(msg("rebuild_keeps_id"), True, "")]
    new = after.image == new_image
    rows.append(
        (msg("rebuild_new_image"), new, "" if new else msg("rebuild_old_image", image=after.image, want=new_image))
    )
    same_time = after.created == before.created
    rows.append((msg("rebuild_keeps_created"), same_time,
                 "" if same_time else msg("rebuild_created", before=before.created, after=after.created)))  # fmt: skip
    if not before.addresses:
        rows.append((msg("rebuild_keeps_addresses"), None, msg("rebuild_no_address")))
    else:
        kept = after.addresses == before.addresses
        rows.append((msg("rebuild_keeps_addresses"), kept, "" if kept else msg(
            "rebuild_addresses", before=", ".join(before.addresses), after=", ".join(after.addresses))))  # fmt: skip
    runs = after.state == RUNNING
    rows.append((msg("rebuild_runs"), runs, "" if runs else msg("rebuild_state", state=after.state)))
    return rows


def check_rebuild(
    driver: ComputeDriver, run_id: str, evidence: CaseEvidence, *, poll_s: float, timeout_s: float
) -> None:
    assert isinstance(driver, Rebuild)
    if not driver.second_image:
        evidence.part(
            CLAUSE,
            None,
            statistic=msg("os_change_short"),
            not_shown=msg("no_second_image"),
        )
        return
    created = create_batch(driver, run_id, 1, poll_s=poll_s, timeout_s=timeout_s, prefix="os")
    ids = [t.id for t in created.vms if t.id]
    try:
        if created.failures or not ids:
            evidence.part(
                CLAUSE,
                False,
                statistic=msg("os_change_server"),
                why="; ".join(created.failures) or msg("not_created"),
            )
            return
        before = driver.booted(ids[0])
        new_image = driver.image_id(driver.second_image)
        t0 = time.perf_counter()
        driver.rebuild(before.id, driver.second_image)
        after: Booted | None = None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                after = driver.booted(before.id)
            except Exception:
                after = None
                break
            if (after.state in (RUNNING, GONE) and after.image == new_image) or after.state == "failed":
                break
            time.sleep(poll_s)
        took = round(time.perf_counter() - t0, 2)
        same_name = [v.id for v in driver.list_vms(run_id) if v.name == before.name and v.state != GONE]
        evidence.parameters(
            rebuild={
                "before": vars(before),
                "after": vars(after) if after else None,
                "new_image": new_image,
                "seconds": took,
            }
        )
        for part, ok, why in judge_rebuild(before, after, new_image, same_name):
            evidence.part(
                CLAUSE,
                ok,
                statistic=msg("os_change_by_rebuild", took=took, part=part),
                why=why,
                not_shown=why if ok is None else "",
            )
    finally:
        delete_prefixed(driver, run_id, "os", poll_s=poll_s, timeout_s=timeout_s)
