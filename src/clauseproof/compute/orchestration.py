"""SX-ECS-5: resource orchestration — a template with a server, a volume and their attachment, with an explicit
``depends_on`` and ``get_resource`` / ``get_attr`` references, created as one stack.

Judged on what each service shows, not on the stack's word: the stack must reach CREATE_COMPLETE; its events must
respect every dependency (a resource starts only after everything it depends on completed); each resource must exist
in its own service's API — the server in the compute API, running, under the template's name; the volume in the
block-storage API with the template's type, attached to that server; and each output computed by ``get_attr`` must
equal what the service itself shows.  The cheapest cheat — a stack marked CREATE_COMPLETE with a resource missing or
never attached — is FAIL, naming it.  The stack is deleted when the case ends, and its resources must be gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import Text, joined, msg

CLAUSE = "SX-ECS-5"
#: resource -> the resources it depends on (explicitly, or through get_resource)
DEPENDS = {"app_server": ["data_volume"], "attachment": ["app_server", "data_volume"]}


def template(run_id: str, image: str, flavour: str, volume_type: str | None) -> dict[str, Any]:
    volume: dict[str, Any] = {"size": 1, "name": f"cp-{run_id}-stack-vol"}
    if volume_type:
        volume["volume_type"] = volume_type
    return {
        "heat_template_version": "2018-08-31",
        "description": "clauseproof SX-ECS-5: a server, a volume and their attachment",
        "resources": {
            "data_volume": {"type": "OS::Cinder::Volume", "properties": volume},
            "app_server": {
                "type": "OS::Nova::Server",
                "depends_on": "data_volume",
                "properties": {
                    "name": f"cp-{run_id}-stack-vm",
                    "image": image,
                    "flavor": flavour,
                    "networks": [{"allocate_network": "none"}],
                },
            },
            "attachment": {
                "type": "OS::Cinder::VolumeAttachment",
                "properties": {
                    "instance_uuid": {"get_resource": "app_server"},
                    "volume_id": {"get_resource": "data_volume"},
                },
            },
        },
        "outputs": {
            "server_name": {"value": {"get_attr": ["app_server", "name"]}},
            "volume_size": {"value": {"get_attr": ["data_volume", "size"]}},
        },
    }


@dataclass(frozen=True)
class Event:
    resource: str
    status: str  # CREATE_IN_PROGRESS, CREATE_COMPLETE, ...


@dataclass(frozen=True)
class StackView:
    """What the orchestration service and the other services showed after the create."""

    status: str
    reason: str
    events: list[Event]
    resources: dict[str, str]  # logical name -> physical id
    outputs: dict[str, Any]
    server: dict[str, Any] | None  # the compute API's view of the server (name, state), None when absent
    volume: dict[str, Any] | None  # the block-storage API's view (type, size, attached server ids), None when absent


def judge_order(events: list[Event]) -> tuple[bool, Text | str]:
    """Every resource starts after each resource it depends on completed (events in the service's order)."""
    first_start: dict[str, int] = {}
    completed: dict[str, int] = {}
    for i, e in enumerate(events):
        if e.status == "CREATE_IN_PROGRESS":
            first_start.setdefault(e.resource, i)
        elif e.status == "CREATE_COMPLETE":
            completed.setdefault(e.resource, i)
    wrong: list[Text | str] = []
    for resource, needs in DEPENDS.items():
        if resource not in first_start:
            wrong.append(msg("stack_never_started", resource=resource))
            continue
        for need in needs:
            if need not in completed or completed[need] > first_start[resource]:
                wrong.append(msg("stack_started_early", resource=resource, need=need))
    return not wrong, joined(wrong)


def judge_stack(view: StackView, run_id: str, volume_type: str | None) -> list[tuple[Text, bool, Text | str]]:
    rows: list[tuple[Text, bool, Text | str]] = []
    complete = view.status == "CREATE_COMPLETE"
    rows.append((msg("stack_created"), complete, "" if complete else f"{view.status}: {view.reason}"))
    ok, why = judge_order(view.events)
    rows.append((msg("stack_order"), ok, why))
    s = view.server
    name = f"cp-{run_id}-stack-vm"
    if s is None:
        rows.append((msg("stack_server_exists"), False, msg("stack_no_server")))
    else:
        good = s.get("name") == name and s.get("state") == "running"
        rows.append((msg("stack_server_exists"), good,
                     "" if good else msg("stack_server_is", name=s.get("name"), state=s.get("state"))))  # fmt: skip
    v = view.volume
    if v is None:
        rows.append((msg("stack_volume_exists"), False, msg("stack_no_volume")))
    else:
        problems: list[Text | str] = []
        if volume_type and v.get("type") != volume_type:
            problems.append(msg("stack_volume_type", type=v.get("type"), want=volume_type))
        server_id = view.resources.get("app_server")
        if not server_id or server_id not in v.get("attached_to", []):
            problems.append(msg("stack_volume_attached", to=", ".join(v.get("attached_to") or []) or "—",
                                server=server_id or "—"))  # fmt: skip
        rows.append((msg("stack_volume_exists"), not problems, joined(problems)))
    outs = view.outputs
    expect = {"server_name": s.get("name") if s else None, "volume_size": v.get("size") if v else None}
    # Heat renders some attributes as text (a size of "1"): compared as text
    bad: list[Text | str] = [
        msg("stack_output", output=k, value=repr(outs.get(k)), want=repr(want))
        for k, want in expect.items()
        if want is None or str(outs.get(k)) != str(want)
    ]
    rows.append((msg("stack_outputs"), not bad, joined(bad)))
    return rows


def check_stack(system: Any, run_id: str, evidence: CaseEvidence, *, timeout_s: float) -> None:
    """``system`` plays :class:`~clauseproof.compute.roles.Orchestration`."""
    tpl = template(run_id, system.image_name, system.flavour_name, system.volume_type())
    evidence.parameters(template=tpl)
    stack = system.create_stack(run_id, f"cp-{run_id}-stack", tpl, timeout_s)
    try:
        view = system.stack_view(stack)
        evidence.parameters(stack={"status": view.status, "reason": view.reason,
                                   "events": [vars(e) for e in view.events], "resources": view.resources,
                                   "outputs": view.outputs, "server": view.server, "volume": view.volume})  # fmt: skip
        for part, ok, why in judge_stack(view, run_id, system.volume_type()):
            evidence.part(CLAUSE, ok, statistic=msg("heat_stack_part", part=part), why=why)
    finally:
        left = system.delete_stack(stack, timeout_s)
        evidence.part(CLAUSE, not left, statistic=msg("stack_deleted"),
                      why=msg("still_there", left=", ".join(left)) if left else "")  # fmt: skip
