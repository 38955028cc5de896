"""A vendor's sync software under the sync suite, through the profile's ``[sync]`` section.

```toml
[sync]
# the databases the tasks join, by the names the cases use: a is the source, b the target, c a third (one-to-many,
# many-to-one, cascade); each a URL (postgresql:// or mysql://) with its password in an environment variable
nodes = [
    { name = "a", url = "postgresql://sync@10.0.0.21:5432/app", password_env = "SYNC_A_PASSWORD" },
    { name = "b", url = "mysql://sync@10.0.0.31:3306/", password_env = "SYNC_B_PASSWORD" },
]
# a task: {name}; {source} and {target} (node names); {schema} (the harness's schema / database, the same name on
# every node); {tables} (comma-separated); {spec} (JSON: columns, row filters, copy_data, whether a change that
# came from elsewhere may be sent on: forward_origins).  create_task returns once the task runs.
create_task = "vendorctl create {name} --from {source} --to {target} -s {schema} -t {tables} --spec {spec}"
drop_task = "vendorctl task drop --name {name}"
# what the sync is declared to do (default all): capture, topologies, conversion, bidirectional, outage
supports = ["capture", "topologies", "conversion", "bidirectional", "outage"]
# faults on a task's target: {name}, {target}, {host}, {port} (the target node's); only with --cp-destructive=yes
cut_network = "vendorctl net cut --to {host}"
heal_network = "vendorctl net heal --to {host}"
stop_target_host = "ssh {host} sudo poweroff"
start_target_host = "ipmitool -H {host}-bmc power on"
stop_target_db = "ssh {host} sudo systemctl stop vendor-db"
start_target_db = "ssh {host} sudo systemctl start vendor-db"
# optional: prints the bytes the source keeps for the task (its log not yet confirmed)
retained_command = "vendorctl task lag --name {name}"
# optional (BZ-SYNC-3): the vendor's own consistency checker; prints JSON {"source_rows": n, "target_rows": m,
# "differences": [{"key": 17, "kind": "changed"}, ...]} (kinds: missing, extra, duplicated, changed, moved)
check_command = "vendorcheck --from {source} --to {target} -s {schema} {source_table} {target_table} --json"
command_timeout_s = 300
```

The harness makes and drops its tables only in its own schema on every node; a task the cases create is dropped
afterwards, even when a case fails.  A fault without its commands, or without the opt-in, is a NOT SHOWN row.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clauseproof.core.commands import fill_command, template_problem, timed
from clauseproof.core.errors import ClauseproofError
from clauseproof.core.i18n import Text, msg
from clauseproof.core.masking import from_env
from clauseproof.core.settings import URL_SCHEMES
from clauseproof.targets.base import Target
from clauseproof.targets.sections import Section
from clauseproof.targets.single.external import ExternalTarget, parse_url

FAULT_COMMANDS = {
    "network": ("cut_network", "heal_network"),
    "host": ("stop_target_host", "start_target_host"),
    "database": ("stop_target_db", "start_target_db"),
}
TASK_COMMANDS = ("create_task", "drop_task", "retained_command", "check_command")
COMMANDS = TASK_COMMANDS + tuple(c for pair in FAULT_COMMANDS.values() for c in pair)
SCENARIOS = ("capture", "topologies", "conversion", "bidirectional", "outage")
KEYS: dict[str, type | tuple[type, ...]] = {
    "nodes": list,
    "supports": list,
    "command_timeout_s": (int, float),
    **dict.fromkeys(COMMANDS, str),
}
PLACEHOLDERS = {
    "create_task": ("name", "source", "target", "schema", "tables", "spec"),
    "drop_task": ("name", "source", "target", "schema"),
    "retained_command": ("name", "source", "target", "schema"),
    "check_command": ("source", "target", "schema", "source_table", "target_table"),
}


@dataclass(frozen=True)
class SyncNode:
    name: str
    url: str
    password_env: str = ""


@dataclass(frozen=True)
class SyncSection:
    nodes: tuple[SyncNode, ...]
    commands: dict[str, str] = field(default_factory=dict)
    supports: frozenset[str] = frozenset(SCENARIOS)
    command_timeout_s: float = 300.0


def parse(body: dict[str, Any], err: Any) -> SyncSection | None:
    if not body:
        return None
    sec = "sync"
    example = '{ name = "a", url = "postgresql://sync@10.0.0.21:5432/app", password_env = "SYNC_A_PASSWORD" }'
    nodes = []
    for n in body.get("nodes", []):
        if not isinstance(n, dict) or not {"name", "url"} <= set(n) <= {"name", "url", "password_env"}:
            raise err(sec, "nodes", f"{n!r} is not a node", f"write each node as {example}")
        scheme = str(n["url"]).split("://", 1)[0].split("+", 1)[0]
        if scheme not in URL_SCHEMES:
            raise err(
                sec, "nodes", f"node {n['name']}: {scheme!r} is not a scheme it knows", "use postgresql:// or mysql://"
            )
        try:
            parse_url(str(n["url"]))
        except ClauseproofError as exc:
            raise err(sec, "nodes", exc.what, exc.fix) from None
        nodes.append(SyncNode(str(n["name"]), str(n["url"]), str(n.get("password_env", ""))))
    names = [n.name for n in nodes]
    if not {"a", "b"} <= set(names) or len(set(names)) != len(names):
        raise err(sec, "nodes", "the nodes must include a (source) and b (target), each once", f"e.g. {example}")
    for key in ("create_task", "drop_task"):
        if key not in body:
            raise err(sec, None, f"no {key} command", f'give {key} = "..." (see the [sync] example in docs/targets.md)')
    commands = {k: body[k] for k in COMMANDS if k in body}
    for name, template in commands.items():
        allowed = PLACEHOLDERS.get(name, ("name", "target", "host", "port"))
        problem = template_problem(template, allowed)
        if problem:
            raise err(sec, name, problem, f"write {', '.join('{' + a + '}' for a in allowed)} bare, without quotes")
    supports = body.get("supports", list(SCENARIOS))
    unknown = sorted(set(supports) - set(SCENARIOS))
    if unknown:
        raise err(sec, "supports", f"unknown {unknown}", f"choose from {', '.join(SCENARIOS)}")
    return SyncSection(
        nodes=tuple(nodes),
        commands=commands,
        supports=frozenset(supports),
        command_timeout_s=float(body.get("command_timeout_s", 300.0)),
    )


#: ``[sync]`` of a profile, registered in pyproject.toml (entry point group ``clauseproof.sections``).
SECTION = Section("sync", KEYS, parse)


class VendorSync:
    """The profile's sync software and its nodes, driven like the embedded stand-ins (``cases.SyncSystem``)."""

    kind = "external"

    def __init__(
        self, label: str, namespace: str, section: SyncSection, destructive: bool, shared: Target | None = None
    ) -> None:
        self.label = label
        self.namespace = namespace
        self.section = section
        self.destructive = destructive
        self.scenarios = section.supports
        self.nodes: dict[str, Target] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.commands: list[dict[str, Any]] = []  # every command run (the evidence)
        #: the profile's own target where a node is it (started and stopped by the run, not here)
        self.shared: set[str] = set()
        for n in section.nodes:
            t = ExternalTarget.from_url(n.url, namespace)
            if shared is not None and shared.endpoint is not None:
                mine, theirs = t._endpoint, shared.endpoint
                if (mine.host, mine.port, mine.database or "") == (theirs.host, theirs.port, theirs.database or ""):
                    self.nodes[n.name] = shared
                    self.shared.add(n.name)
                    continue
            if n.password_env:
                t._endpoint.password = from_env(n.password_env, f"[sync] node {n.name}'s password")
            self.nodes[n.name] = t

    def start(self) -> None:
        try:
            for n, t in self.nodes.items():
                if n not in self.shared:
                    t.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for name in list(self.tasks):
            with contextlib.suppress(Exception):
                self.drop_task(name)
        for n, t in self.nodes.items():
            if n not in self.shared:
                with contextlib.suppress(Exception):
                    t.stop()

    def describe(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "kind": self.kind,
            "nodes": {n: t.describe() for n, t in self.nodes.items()},
            "supports": sorted(self.scenarios),
            "commands": self.commands,
        }

    def node_connect(self, node: str) -> Any:
        return self.nodes[node].connect()

    def dialect_of(self, node: str) -> str:
        return self.nodes[node].dialect

    def _run(self, key: str, values: dict[str, str | int], on: str) -> str:
        """Run the profile's command ``key`` (the node ``on``'s password in the engine's variable); its output."""
        node = self.nodes[on]
        template = self.section.commands[key]
        with tempfile.NamedTemporaryFile(prefix="clauseproof-sync-") as out:
            env = node.address().client_env(node.dialect)
            phase = timed(
                key,
                [fill_command(template, **values)],
                shell=True,
                env=env,
                stdout=Path(out.name),
                timeout=self.section.command_timeout_s,
            )
            self.commands.append(phase.evidence())
            return Path(out.name).read_text(errors="replace")

    # -- tasks ------------------------------------------------------------------------------------
    def create_task(
        self,
        name: str,
        source: str,
        target: str,
        tables: list[str] | None = None,
        *,
        columns: dict[str, list[str]] | None = None,
        where: dict[str, str] | None = None,
        publish: str = "insert, update, delete",
        copy_data: bool = True,
        method: str = "builtin",
        insert_only: list[str] | None = None,
        forward_origins: bool = False,
    ) -> dict[str, Any]:
        for n in (source, target):
            if n not in self.nodes:
                raise ClauseproofError(f"the profile's [sync] has no node {n}", fix=f"add a node named {n}")
        spec = {
            "columns": columns or {},
            "row_filters": where or {},
            "operations": publish,
            "copy_data": copy_data,
            "insert_only": insert_only or [],
            "forward_origins": forward_origins,
        }
        tables_txt = ",".join(tables) if tables else "*"
        values: dict[str, str | int] = {
            "name": name,
            "source": source,
            "target": target,
            "schema": self.namespace,
            "tables": tables_txt,
            "spec": json.dumps(spec, sort_keys=True),
        }
        self._run("create_task", values, source)
        task = {"name": name, "source": source, "target": target, "tables": tables or [], "spec": spec}
        self.tasks[name] = task
        return task

    def drop_task(self, name: str) -> None:
        task = self.tasks.pop(name)
        values: dict[str, str | int] = {
            "name": name,
            "source": task["source"],
            "target": task["target"],
            "schema": self.namespace,
        }
        self._run("drop_task", values, task["source"])

    def slot(self, name: str) -> dict[str, Any]:
        if "retained_command" not in self.section.commands:
            return {"slot": name, "exists": False}
        task = self.tasks[name]
        values: dict[str, str | int] = {
            "name": name,
            "source": task["source"],
            "target": task["target"],
            "schema": self.namespace,
        }
        out = self._run("retained_command", values, task["source"]).strip()
        try:
            kept = int(out.split()[0])
        except (ValueError, IndexError):
            return {"slot": name, "exists": True, "kept_as": f"vendor: {out[:80]}"}
        return {"slot": name, "exists": True, "kept_as": "the vendor's retained log", "retained_bytes": kept}

    def run_checker(self, source: str, target: str, source_table: str, target_table: str) -> dict[str, Any]:
        """The vendor's checker on two tables (``check_command``); what it printed, as JSON."""
        values: dict[str, str | int] = {"source": source, "target": target, "schema": self.namespace,
                                        "source_table": source_table, "target_table": target_table}  # fmt: skip
        out = self._run("check_command", values, source)
        try:
            doc = json.loads(out)
        except json.JSONDecodeError as exc:
            shape = '{"source_rows": n, "target_rows": m, "differences": [...]}'
            raise ClauseproofError(f"[sync] check_command printed no JSON: {exc}", fix=f"print {shape}") from None
        if not isinstance(doc, dict):
            raise ClauseproofError("[sync] check_command printed no JSON object", fix="print {...}")
        return doc

    # -- faults -----------------------------------------------------------------------------------
    def why_not(self, scenario: str) -> Text | str:
        return msg("sync_not_declared", target=self.label, scenario=scenario)

    def fault_missing(self, kind: str) -> str:
        """Why the fault ``kind`` cannot run here ('' when it can)."""
        missing = [c for c in FAULT_COMMANDS[kind] if c not in self.section.commands]
        if missing:
            return f"the profile's [sync] has no {' / '.join(missing)}"
        if not self.destructive:
            return "faults on a profile target need the run's explicit opt-in: --cp-destructive=yes"
        return ""

    def _fault_values(self, task_name: str) -> tuple[dict[str, str | int], str]:
        task = self.tasks[task_name]
        ep = self.nodes[task["target"]].address()
        return {"name": task_name, "target": task["target"], "host": ep.host, "port": ep.port}, task["target"]

    def fault(self, kind: str, task_name: str) -> None:
        why = self.fault_missing(kind)
        if why:
            raise ClauseproofError(why)
        values, node = self._fault_values(task_name)
        self._run(FAULT_COMMANDS[kind][0], values, node)

    def heal(self, kind: str, task_name: str) -> None:
        values, node = self._fault_values(task_name)
        self._run(FAULT_COMMANDS[kind][1], values, node)
