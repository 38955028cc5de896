"""A fake cloud for the self-tests: latency and faults injected, state in a file (so another process can clean up).

Each VM is pending for ``boot_s`` after it was accepted, then running; a VM whose name ends
with an entry of ``never_running`` stays pending; deleting one whose name ends with an entry of
``fail_delete`` fails and it stays;
``hosts`` VMs share the host pool (1 host: anti-affinity impossible); ``quota`` caps the VMs
that may exist at once and a request beyond it is refused whole, with a provider-style message.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clauseproof.compute.base import GONE, PENDING, RUNNING, STOPPED, CloudError, ComputeDriver, Vm, name_prefix


def _ends(name: str, suffixes: set[str]) -> bool:
    return any(name.endswith(s) for s in suffixes)


class FakeDriver(ComputeDriver):
    name = "fake cloud (simulated)"
    #: The self-tests' fake: wherever a profile selects it, its results are not evidence.
    simulated = True

    def __init__(
        self,
        state_file: Path,
        *,
        boot_s: float = 0.05,
        api_latency_s: float = 0.0,
        never_running: tuple[str, ...] = (),
        fail_delete: tuple[str, ...] = (),
        hosts: int = 100,
        quota: int = 1000,
        groups: bool = True,
    ) -> None:
        self.state_file = Path(state_file)
        self.boot_s, self.api_latency_s = boot_s, api_latency_s
        self.never_running, self.fail_delete = set(never_running), set(fail_delete)
        self.hosts, self.quota, self.groups = hosts, quota, groups

    @contextlib.contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        # A lock file serialises the writers; the state is replaced whole (write, then rename), so a reader
        # without the lock, or a process killed mid-write, never sees a half-written state.
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.state_file.with_name(self.state_file.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            text = self.state_file.read_text() if self.state_file.exists() else ""
            state = json.loads(text) if text.strip() else {"vms": {}, "groups": {}}
            yield state
            tmp = self.state_file.with_name(f"{self.state_file.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self.state_file)

    def _api(self) -> None:
        if self.api_latency_s:
            time.sleep(self.api_latency_s)

    def create(self, run_id: str, names: list[str], group: str | None = None) -> list[tuple[str, str, float]]:
        self._api()
        out = []
        with self._state() as st:
            alive = [v for v in st["vms"].values() if v["state"] != GONE]
            if len(alive) + len(names) > self.quota:
                raise CloudError(
                    f"QuotaExceeded: Quota exceeded for instances: Requested {len(names)}, but already used "
                    f"{len(alive)} of {self.quota} instances"
                )
            used = {v["host"] for v in alive if v.get("group") == group and group}
            for i, name in enumerate(names):
                vid = "i-" + secrets.token_hex(6)
                free = [f"host{h}" for h in range(self.hosts) if f"host{h}" not in used] or ["host0"]
                host = free[0] if group else f"host{(len(alive) + i) % self.hosts}"
                used.add(host)
                st["vms"][vid] = {
                    "name": name,
                    "run": run_id,
                    "state": PENDING,
                    "since": time.time(),
                    "host": host,
                    "group": group,
                }
                out.append((name, vid, time.perf_counter()))
        return out

    def list_vms(self, run_id: str) -> list[Vm]:
        self._api()
        now = time.time()
        out = []
        with self._state() as st:
            for vid, v in st["vms"].items():
                if not v["name"].startswith(name_prefix(run_id)):
                    continue
                booted = now - v["since"] >= self.boot_s
                if v["state"] == PENDING and booted and not _ends(v["name"], self.never_running):
                    v["state"] = RUNNING
                out.append(Vm(vid, v["name"], v["state"], host=v["host"]))
        return out

    def act(self, ids: list[str], action: str) -> dict[str, str]:
        self._api()
        errors = {}
        with self._state() as st:
            for vid in ids:
                v = st["vms"].get(vid)
                if v is None or v["state"] == GONE:
                    errors[vid] = "InvalidInstanceID.NotFound"
                    continue
                v["state"] = {"start": PENDING, "reboot": PENDING, "stop": STOPPED}[action]
                v["since"] = time.time()
        return errors

    def delete(self, ids: list[str]) -> dict[str, str]:
        self._api()
        errors = {}
        with self._state() as st:
            for vid in ids:
                v = st["vms"].get(vid)
                if v is None:
                    continue
                if _ends(v["name"], self.fail_delete):
                    errors[vid] = "InternalError: the host did not answer (injected fault)"
                    continue
                v["state"] = GONE
        return errors

    def leftovers(self, run_id: str, ids: list[str]) -> dict[str, list[str]]:
        return {"vms": [v.name for v in self.list_vms(run_id) if v.state != GONE]}

    def create_group(self, run_id: str, policy: str) -> str:
        if not self.groups:
            return super().create_group(run_id, policy)
        gid = f"sg-{run_id}"
        with self._state() as st:
            st["groups"][gid] = policy
        return gid

    def delete_group(self, group: str) -> None:
        with self._state() as st:
            st["groups"].pop(group, None)
