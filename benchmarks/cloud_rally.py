"""``./run bench --only cloud``: the harness's VM batch timings beside Rally's ``NovaServers.boot_and_delete_server``
on the same embedded OpenStack (Debian's ``rally`` and ``python3-rally-openstack``), same image, flavour, count and
concurrency, same credentials, same poll interval.

After an unreported warm-up (one server per worker: a cloud just started boots its first servers slower), three
figures per round on one cloud, the harness and Rally taking turns to go first:

- **harness, per server** — the like-for-like peer of Rally's scenario: ``count`` iterations, ``concurrency`` at a
  time, each one create call, polled until ACTIVE, one delete call, polled until gone (the driver's calls, the batch
  module's poll interval).  Its wall time against Rally's ``load_duration`` is the harness's overhead (≤ 1.1 asked).
- **Rally** — ``rally task start`` with a constant runner (``times = count``, ``concurrency``), existing users (the
  cloud's admin, as the harness), poll interval and pre-poll delay set to the harness's; its ``load_duration`` (the
  runner's wall time, without Rally's context set-up and clean-up) and its iterations' mean boot and delete.
- **harness, as SX-ECS-6 runs it** — one multi-create call for the whole batch, then one delete round: the figure the
  case reports (not Rally's shape; shown for what a reader of the report sees).

Rally runs as the harness's own unprivileged user, with its database, home and configuration in a private folder.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from clauseproof.compute.base import FAILED, GONE, RUNNING
from clauseproof.compute.batch import create_batch, delete_batch
from clauseproof.targets.host.folders import make_private_folder
from clauseproof.targets.host.processes import own_code_user

RALLY = "/usr/bin/rally"
#: the longest one server may take to run or to go (the stand-in's slowest boot under load was ~41 s)
WAIT_S = 300.0


def _harness_per_server(driver: Any, run_id: str, count: int, concurrency: int, poll_s: float) -> dict[str, Any]:
    """``count`` boot-and-delete iterations, ``concurrency`` at a time (Rally's constant runner's shape)."""
    durations: dict[str, list[float]] = {"boot": [], "delete": []}
    errors: list[str] = []
    lock = threading.Lock()

    def state(vid: str) -> str:
        try:
            return str(driver.booted(vid).state)
        except Exception:  # 404: gone
            return GONE

    def until(vid: str, want: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while (now := state(vid)) != want:
            if now == FAILED or time.monotonic() > deadline:
                raise RuntimeError(f"{vid} is {now}, not {want} (waited up to {WAIT_S:g} s)")
            time.sleep(poll_s)

    def one(i: int) -> None:
        name = f"cp-{run_id}-rl{i:03d}"
        t0 = time.perf_counter()
        try:
            (_, vid, _), = driver.create_servers(run_id, [name])  # fmt: skip
            until(vid, RUNNING)
            t1 = time.perf_counter()
            driver.delete([vid])
            until(vid, GONE)
            t2 = time.perf_counter()
        except Exception as exc:
            with lock:
                errors.append(f"{name}: {exc}")
            return
        with lock:
            durations["boot"].append(t1 - t0)
            durations["delete"].append(t2 - t1)

    for _ in range(concurrency):  # logged-in connections for the create calls, outside the window
        driver.warm()
    with ThreadPoolExecutor(concurrency) as pool:
        # each worker thread's own connection (polls and deletes) logged in before the window: a barrier makes
        # every one of the pool's threads take one of these tasks
        barrier = threading.Barrier(concurrency)

        def prime(_: int) -> None:
            driver.conn.authorize()
            barrier.wait(timeout=120)

        list(pool.map(prime, range(concurrency)))
        t0, cpu0 = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
        list(pool.map(one, range(1, count + 1)))
        wall, cpu = time.perf_counter() - t0, _cpu(resource.RUSAGE_SELF) - cpu0
    return {"wall_s": wall, "boot_mean_s": _mean(durations["boot"]), "delete_mean_s": _mean(durations["delete"]),
            "errors": errors, "client_cpu_s": cpu}  # fmt: skip


def _cpu(who: int) -> float:
    """User + system CPU seconds of this process (RUSAGE_SELF) or of its finished children (RUSAGE_CHILDREN)."""
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _mean(xs: list[float]) -> float | None:
    return statistics.mean(xs) if xs else None


def _harness_batch(driver: Any, run_id: str, count: int, poll_s: float) -> dict[str, Any]:
    created = create_batch(driver, run_id, count, poll_s=poll_s, timeout_s=600, prefix="rb")
    ids = [t.id for t in created.vms if t.id]
    deleted = delete_batch(driver, run_id, ids, poll_s=poll_s, timeout_s=600)
    return {"create_s": created.seconds, "delete_s": deleted.seconds,
            "errors": [t.error for t in created.vms + deleted.vms if t.error]}  # fmt: skip


class Rally:
    """Rally with its state in a private folder, run as the harness's own user."""

    def __init__(self, auth: dict[str, Any], poll_s: float) -> None:
        self.folder = make_private_folder("rally")
        self.user = own_code_user()
        conf = self.folder / "rally.conf"
        conf.write_text(
            "[DEFAULT]\nuse_stderr = false\n"
            f"[database]\nconnection = sqlite:///{self.folder}/rally.sqlite\n"
            "[openstack]\n"
            "nova_server_boot_prepoll_delay = 0\n"
            f"nova_server_boot_poll_interval = {poll_s}\n"
            f"nova_server_delete_poll_interval = {poll_s}\n"
            "openstack_client_http_timeout = 120\n"
        )
        creds = {"username": auth["username"], "password": auth["password"], "project_name": auth["project_name"],
                 "user_domain_name": "Default", "project_domain_name": "Default"}  # fmt: skip
        spec = {"openstack": {"auth_url": auth["auth_url"], "region_name": auth["region_name"],
                              "endpoint_type": "public", "admin": creds, "users": [creds]}}  # fmt: skip
        (self.folder / "spec.json").write_text(json.dumps(spec))
        for f in self.folder.iterdir():
            f.chmod(0o600)
        self.user.give(self.folder)
        for f in self.folder.iterdir():
            if self.user.name:
                shutil.chown(f, user=self.user.uid, group=self.user.gid)
        self.run("db", "create")
        self.run("env", "create", "--name", "cp", "--spec", str(self.folder / "spec.json"), "--no-use")

    def run(self, *args: str, timeout: float = 900, ok: tuple[int, ...] = (0,)) -> str:
        """Rally's command line (exit 2 of ``task start``: an SLA failed, i.e. an iteration failed — its errors are
        read from the report)."""
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.folder), "LANG": "C.UTF-8"}
        r = subprocess.run([RALLY, "--config-file", str(self.folder / "rally.conf"), *args], env=env,
                           capture_output=True, text=True, timeout=timeout, cwd=self.folder,
                           **self.user.popen())  # fmt: skip
        if r.returncode not in ok:
            raise RuntimeError(f"rally {' '.join(args[:2])} failed ({r.returncode}): {(r.stderr or r.stdout)[-1500:]}")
        return r.stdout

    def boot_and_delete(self, image: str, flavour: str, count: int, concurrency: int) -> dict[str, Any]:
        task = {"NovaServers.boot_and_delete_server": [{
            "args": {"image": {"name": image}, "flavor": {"name": flavour}},
            "runner": {"type": "constant", "times": count, "concurrency": concurrency},
            "context": {},
            "sla": {"failure_rate": {"max": 0}},
        }]}  # fmt: skip
        tag = uuid.uuid4().hex[:8]
        path = self.folder / f"task-{tag}.json"
        path.write_text(json.dumps(task))
        if self.user.name:
            shutil.chown(path, user=self.user.uid, group=self.user.gid)
        cpu0 = _cpu(resource.RUSAGE_CHILDREN)
        out = self.run("task", "start", "--task", str(path), "--deployment", "cp", "--tag", tag, "--no-use", ok=(0, 2))
        cpu = _cpu(resource.RUSAGE_CHILDREN) - cpu0  # the whole command: start-up, context, load and clean-up
        found = re.search(r"rally task report ([0-9a-f-]{36})", out)  # Rally's own hint names the task
        if not found:
            raise RuntimeError(f"rally task start named no task: {out[-1500:]}")
        report = self.folder / f"report-{tag}.json"
        self.run("task", "report", "--uuid", found.group(1), "--json", "--out", str(report))
        doc = json.loads(report.read_text())
        w = doc["tasks"][0]["subtasks"][0]["workloads"][0]
        boots = [a["finished_at"] - a["started_at"] for it in w["data"] for a in it.get("atomic_actions", [])
                 if a["name"] == "nova.boot_server"]  # fmt: skip
        deletes = [a["finished_at"] - a["started_at"] for it in w["data"] for a in it.get("atomic_actions", [])
                   if a["name"] == "nova.delete_server"]  # fmt: skip
        errors = [str(it["error"])[:200] for it in w["data"] if it.get("error")]
        return {"load_duration_s": w["load_duration"], "full_duration_s": w["full_duration"],
                "boot_mean_s": _mean(boots), "delete_mean_s": _mean(deletes), "errors": errors,
                "iterations": len(w["data"]), "client_cpu_s": cpu}  # fmt: skip

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def bench_cloud(count: int, concurrency: int, rounds: int, poll_s: float = 0.5) -> None:
    from clauseproof.compute.openstack_driver import start_embedded_openstack

    if not os.path.exists(RALLY):
        raise SystemExit("bench cloud: Debian's rally is not installed (./run bench --only cloud installs it)")
    print(f"\n== VM batch: harness vs Rally NovaServers.boot_and_delete_server ({count} servers, concurrency "
          f"{concurrency}, poll {poll_s} s, embedded OpenStack, fake hypervisor) ==")  # fmt: skip
    t0 = time.perf_counter()
    driver: Any = start_embedded_openstack(None)
    print(f"  embedded OpenStack started in {time.perf_counter() - t0:.1f} s")
    rally: Rally | None = None
    try:
        driver.concurrency = concurrency
        rally = Rally(driver.cloud.auth(), poll_s)
        # a cloud just started boots its first servers slower (caches, each host's first instance): a warm-up of
        # one server per worker, not reported, so that the first figure measured is not the cloud's cold start
        _harness_per_server(driver, f"bench{uuid.uuid4().hex[:6]}", concurrency, concurrency, poll_s)
        for r in range(1, rounds + 1):
            run_id = f"bench{uuid.uuid4().hex[:6]}"
            if r % 2:  # who goes first alternates: neither always meets the cloud just after the other's deletes
                per = _harness_per_server(driver, run_id, count, concurrency, poll_s)
                ral = rally.boot_and_delete(driver.image_name, driver.flavour_name, count, concurrency)
            else:
                ral = rally.boot_and_delete(driver.image_name, driver.flavour_name, count, concurrency)
                per = _harness_per_server(driver, run_id, count, concurrency, poll_s)
            batch = _harness_batch(driver, run_id, count, poll_s)
            ratio = per["wall_s"] / ral["load_duration_s"]
            print(f"  round {r}: harness per server {per['wall_s']:.1f} s (boot {per['boot_mean_s']:.2f} s, delete "
                  f"{per['delete_mean_s']:.2f} s mean) | Rally load {ral['load_duration_s']:.1f} s (full "
                  f"{ral['full_duration_s']:.1f} s; boot {ral['boot_mean_s']:.2f} s, delete "
                  f"{ral['delete_mean_s']:.2f} s mean) | ratio {ratio:.2f}")  # fmt: skip
            print(f"           client CPU: harness {per['client_cpu_s']:.1f} s (the load only), Rally "
                  f"{ral['client_cpu_s']:.1f} s (the whole rally command)")  # fmt: skip
            print(f"           harness as SX-ECS-6 runs it (one multi-create call): create {batch['create_s']} s, "
                  f"delete {batch['delete_s']} s")  # fmt: skip
            for what, errs in (("harness", per["errors"] + batch["errors"]), ("Rally", ral["errors"])):
                if errs:
                    print(f"    {what} errors ({len(errs)}): {errs[0]}")
    finally:
        if rally is not None:
            rally.close()
        driver.close()
