"""SX-EDAS-1 on an OpenStack cloud: the subjects as Keystone users (one role in one project each, made for the run),
each operation tried through Nova's API as that user (:class:`~clauseproof.compute.roles.AccessControl`).

Subjects are named ``<role>-<project>``: ``reader-a``, ``member-b``, ``admin-a`` — a Keystone role (reader, member,
admin) in the run's project ``a`` or ``b``.  Each project holds a resident server (made as its member, outside the
matrix) that the other project's subjects try to see, list and delete; project ``a`` also holds a victim server its own
subjects try to delete.  What an operation did is read back as the admin: a delete is allowed when the server is gone or
going, whatever the status code said.
"""

from __future__ import annotations

import time
from typing import Any

from clauseproof.compute.roles import Outcome
from clauseproof.core import masking

ROLES = {"reader": "reader", "member": "member", "admin": "admin"}
OPERATIONS = (
    "list servers of its project",
    "view its project's usage",
    "create a server",
    "delete a server of its project",
    "change its project's quota",
    "see a server of the other project",
    "delete a server of the other project",
    "list every project's servers",
)
MICRO = "2.79"


def _allowed(status: int) -> bool | None:
    if 200 <= status < 300:
        return True
    if status in (401, 403, 404):
        return False
    return None


class OpenStackAccess:
    """Mixed into the OpenStack driver: ``conn`` is the admin's connection, ``_connect(**over)`` makes another."""

    conn: Any
    _connect: Any
    _image_id: str
    _flavour_id: str

    def access_operations(self) -> tuple[str, ...]:
        return OPERATIONS

    def access_subjects(self, run_id: str, subjects: list[str]) -> dict[str, str]:
        ident = self.conn.identity
        self._acl: dict[str, Any] = {"projects": {}, "users": {}, "conns": {}, "servers": {}}
        made: dict[str, str] = {}
        wanted = sorted(set(subjects) | {"member-a", "member-b"})  # the residents' makers
        for subject in wanted:
            role, _, project = subject.partition("-")
            if role not in ROLES or not project:
                raise ValueError(f"subject {subject!r}: name it <role>-<project> with a role of {sorted(ROLES)}")
            pname = f"cp-{run_id}-p{project}"
            proj = self._acl["projects"].get(project)
            if proj is None:
                proj = ident.create_project(name=pname, domain_id="default", description="clauseproof SX-EDAS-1")
                self._acl["projects"][project] = proj
            password = masking.new_secret()  # masked wherever it could be printed
            user = ident.create_user(name=f"cp-{run_id}-{subject}", domain_id="default", password=password,
                                     default_project_id=proj.id)  # fmt: skip
            self._acl["users"][subject] = user
            ident.assign_project_role_to_user(proj, user, ident.find_role(ROLES[role]))
            c = self._connect(username=user.name, password=password, project_name=pname,
                              user_domain_name="Default", project_domain_name="Default")  # fmt: skip
            c.compute.default_microversion = MICRO
            self._acl["conns"][subject] = c
            made[subject] = f"{ROLES[role]} of project {pname}"
        # the residents (and project a's victim), made as each project's member, outside the matrix
        for key, subject in (("resident-a", "member-a"), ("victim-a", "member-a"), ("resident-b", "member-b")):
            self._acl["servers"][key] = self._create_as(subject, f"cp-{run_id}-rbac-{key}")
        self._wait_active(list(self._acl["servers"].values()))
        return {s: made[s] for s in subjects}

    def _create_as(self, subject: str, name: str) -> tuple[int, str]:
        c = self._acl["conns"][subject]
        r = c.compute.post("/servers", json={"server": {"name": name, "imageRef": self._image_id,
                           "flavorRef": self._flavour_id, "networks": "none"}}, microversion=MICRO)  # fmt: skip
        if r.status_code >= 300:
            return r.status_code, ""
        return r.status_code, str(r.json()["server"]["id"])

    def _wait_active(self, made: list[tuple[int, str]], timeout_s: float = 120) -> None:
        ids = [i for _, i in made if i]
        deadline = time.monotonic() + timeout_s
        while ids and time.monotonic() < deadline:
            states = {i: self._admin_state(i) for i in ids}
            if all(s in ("ACTIVE", "ERROR", "gone") for s in states.values()):
                return
            time.sleep(0.5)

    def _admin_state(self, vid: str) -> str:
        r = self.conn.compute.get(f"/servers/{vid}", microversion=MICRO)
        if r.status_code == 404:
            return "gone"
        server = r.json().get("server", {})
        if server.get("OS-EXT-STS:task_state") == "deleting" or server.get("status") == "DELETED":
            return "gone"
        return str(server.get("status", "?"))

    def access_try(self, run_id: str, subject: str, operation: str) -> Outcome:
        c = self._acl["conns"].get(subject)
        if c is None:
            return Outcome(None, f"no subject {subject}")
        own = subject.partition("-")[2]
        other = "b" if own == "a" else "a"
        project = self._acl["projects"][own]
        mine = self._acl["servers"].get(f"victim-{own}", (0, ""))[1]
        theirs = self._acl["servers"].get(f"resident-{other}", (0, ""))[1]
        try:
            if operation == "list servers of its project":
                r = c.compute.get("/servers", microversion=MICRO)
                return Outcome(_allowed(r.status_code), f"GET /servers: HTTP {r.status_code}")
            if operation == "view its project's usage":
                r = c.compute.get(f"/os-simple-tenant-usage/{project.id}", microversion=MICRO)
                return Outcome(_allowed(r.status_code), f"GET /os-simple-tenant-usage/<project>: HTTP {r.status_code}")
            if operation == "create a server":
                status, vid = self._create_as(subject, f"cp-{run_id}-rbac-by-{subject}")
                allowed = _allowed(status)
                return Outcome(allowed, f"POST /servers: HTTP {status}" + (f" (server {vid})" if vid else ""))
            if operation == "change its project's quota":
                r = c.compute.put(f"/os-quota-sets/{project.id}", json={"quota_set": {"instances": 77}},
                                  microversion=MICRO)  # fmt: skip
                return Outcome(_allowed(r.status_code), f"PUT /os-quota-sets/<project>: HTTP {r.status_code}")
            if operation in ("delete a server of its project", "delete a server of the other project"):
                target = mine if operation.endswith("its project") else theirs
                if not target:
                    return Outcome(None, "no server to delete (it could not be made)")
                if self._admin_state(target) == "gone":
                    return Outcome(None, f"server {target} was already deleted by an earlier cell")
                r = c.compute.delete(f"/servers/{target}", microversion=MICRO)
                time.sleep(0.5)
                state = self._admin_state(target)
                seen = state == "gone"
                said = f"DELETE /servers/<id>: HTTP {r.status_code}; the admin then sees it {state}"
                if seen != bool(_allowed(r.status_code)):
                    said += " (the status code and what happened disagree: judged by what happened)"
                return Outcome(seen, said)
            if operation == "see a server of the other project":
                if not theirs:
                    return Outcome(None, "the other project's server could not be made")
                r = c.compute.get(f"/servers/{theirs}", microversion=MICRO)
                shown = r.status_code == 200 and r.json().get("server", {}).get("id") == theirs
                return Outcome(shown, f"GET /servers/<the other project's id>: HTTP {r.status_code}")
            if operation == "list every project's servers":
                r = c.compute.get("/servers?all_tenants=1", microversion=MICRO)
                if r.status_code != 200:
                    return Outcome(_allowed(r.status_code), f"GET /servers?all_tenants=1: HTTP {r.status_code}")
                ids = {s.get("id") for s in r.json().get("servers", [])}
                return Outcome(theirs in ids, "GET /servers?all_tenants=1: HTTP 200, the other project's server "
                               + ("listed" if theirs in ids else "not listed"))  # fmt: skip
        except Exception as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}")
        return Outcome(None, f"unknown operation {operation!r}")

    def access_cleanup(self, run_id: str) -> list[str]:
        left: list[str] = []
        acl = getattr(self, "_acl", None)
        prefix = f"cp-{run_id}-"
        servers = [s for s in self.conn.compute.servers(all_projects=True, name=f"^{prefix}rbac")
                   if s.name.startswith(prefix)]  # fmt: skip
        for s in servers:
            self.conn.compute.delete_server(s.id, ignore_missing=True)
        deadline = time.monotonic() + 120
        while servers and time.monotonic() < deadline:
            servers = [s for s in servers if self._admin_state(s.id) != "gone"]
            time.sleep(0.5)
        left += [f"server {s.name}" for s in servers]
        ident = self.conn.identity
        for c in (acl or {}).get("conns", {}).values():
            c.close()
        for u in list(ident.users(domain_id="default")):
            if u.name.startswith(prefix):
                ident.delete_user(u, ignore_missing=True)
        for p in list(ident.projects(domain_id="default")):
            if p.name.startswith(prefix):
                ident.delete_project(p, ignore_missing=True)
        return left
