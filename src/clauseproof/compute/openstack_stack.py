"""SX-ECS-5 on an OpenStack cloud: a Heat stack created, read back through Heat, Nova and Cinder, and deleted
(:class:`~clauseproof.compute.roles.Orchestration`, judged in :mod:`clauseproof.compute.orchestration`)."""

from __future__ import annotations

import time
from typing import Any

from clauseproof.compute.orchestration import Event, StackView

DONE = ("CREATE_COMPLETE", "CREATE_FAILED")


class OpenStackStacks:
    """Mixed into the OpenStack driver (``conn``: the admin's connection)."""

    conn: Any
    image_name: str
    flavour_name: str

    def volume_type(self) -> str | None:
        """The volume type a stack's volume asks for: ``cp-ssd`` where the cloud has it (the embedded one does)."""
        try:
            names = {t.name for t in self.conn.block_storage.types()}
        except Exception:
            return None
        return "cp-ssd" if "cp-ssd" in names else None

    def create_stack(self, run_id: str, name: str, template: dict[str, Any], timeout_s: float) -> tuple[str, str]:
        r = self.conn.orchestration.post("/stacks", json={"stack_name": name, "template": template,
                                                           "timeout_mins": max(1, int(timeout_s // 60))})  # fmt: skip
        if r.status_code >= 300:
            raise RuntimeError(f"Heat refused the stack: HTTP {r.status_code} {r.text[:300]}")
        sid = r.json()["stack"]["id"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            st = self._stack(name, sid)
            if st.get("stack_status") in DONE:
                break
            time.sleep(1)
        return name, sid

    def _stack(self, name: str, sid: str) -> dict[str, Any]:
        r = self.conn.orchestration.get(f"/stacks/{name}/{sid}")
        return dict(r.json().get("stack", {})) if r.status_code == 200 else {"stack_status": f"HTTP {r.status_code}"}

    def _resources(self, name: str, sid: str) -> dict[str, str]:
        """The stack's resources as Heat lists them: name → physical id."""
        res = self.conn.orchestration.get(f"/stacks/{name}/{sid}/resources").json().get("resources", [])
        return {x["resource_name"]: x.get("physical_resource_id", "") for x in res}

    def stack_view(self, stack: tuple[str, str]) -> StackView:
        name, sid = stack
        st = self._stack(name, sid)
        ev = self.conn.orchestration.get(f"/stacks/{name}/{sid}/events?sort_dir=asc&sort_keys=event_time")
        events = [Event(e.get("resource_name", ""), e.get("resource_status", "") if "_" in
                        e.get("resource_status", "") else f"{e.get('resource_action')}_{e.get('resource_status')}")
                  for e in ev.json().get("events", [])]  # fmt: skip
        events = [e for e in events if e.resource != name]  # the stack's own events
        resources = self._resources(name, sid)
        outputs = {o["output_key"]: o.get("output_value") for o in st.get("outputs") or []}
        server = volume = None
        if resources.get("app_server"):
            r = self.conn.compute.get(f"/servers/{resources['app_server']}", microversion="2.79")
            if r.status_code == 200:
                s = r.json()["server"]
                server = {
                    "id": s["id"],
                    "name": s["name"],
                    "state": "running" if s["status"] == "ACTIVE" else s["status"],
                }
        if resources.get("data_volume"):
            try:
                v = self.conn.block_storage.get_volume(resources["data_volume"])
                volume = {"id": v.id, "type": v.volume_type, "size": v.size, "status": v.status,
                          "attached_to": [a.get("server_id") for a in v.attachments or []]}  # fmt: skip
            except Exception:
                volume = None
        return StackView(str(st.get("stack_status")), str(st.get("stack_status_reason", "")), events, resources,
                         outputs, server, volume)  # fmt: skip

    def delete_stack(self, stack: tuple[str, str], timeout_s: float) -> list[str]:
        name, sid = stack
        resources = self._resources(name, sid)
        self.conn.orchestration.delete(f"/stacks/{name}/{sid}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._stack(name, sid).get("stack_status") in ("DELETE_COMPLETE", "HTTP 404"):
                break
            time.sleep(1)
        left = []
        if resources.get("app_server"):
            r = self.conn.compute.get(f"/servers/{resources['app_server']}")
            if r.status_code == 200 and r.json()["server"].get("status") != "DELETED":
                left.append(f"server {resources['app_server']}")
        if resources.get("data_volume"):
            v = self.conn.block_storage.find_volume(resources["data_volume"], ignore_missing=True)
            if v is not None and v.status != "deleting":
                left.append(f"volume {resources['data_volume']} ({v.status})")
        st = self._stack(name, sid).get("stack_status")
        if st not in ("DELETE_COMPLETE", "HTTP 404"):
            left.append(f"stack {name} ({st})")
        return left
