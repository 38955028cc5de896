"""The Docker engine the container targets run on: found (``DOCKER_HOST`` respected), or, for root on Debian,
installed and started (``clauseproof engine start``, which ``./run engine`` calls).

Containers started by the harness carry the labels below; whatever outlives a run (SIGKILL) is found by them
and removed by ``clauseproof reap`` (:func:`reap_containers`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from clauseproof.core import masking
from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.host.processes import _pid_alive

#: Labels on every container the harness starts: the run's namespace, and the process that owns it.
LABEL_RUN = "org.clauseproof.run"
LABEL_OWNER = "org.clauseproof.owner-pid"
LABEL_HOST = "org.clauseproof.owner-host"
PING_TIMEOUT_S = 5
#: How long a started engine may take to answer (dockerd answers in < 1 s here).
ENGINE_START_TIMEOUT_S = 30
DOCKERD_LOG = Path("/var/log/clauseproof-dockerd.log")
#: Containers reach nothing outside (no forwarding, no masquerade); published ports still work on loopback.
DOCKERD_ARGS = ("--ip-forward=false", "--ip-masq=false")
ENGINE_FIX = "run `./run engine` (as root on Debian: installs docker.io and starts dockerd), or set DOCKER_HOST"


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST", "") or "unix:///var/run/docker.sock"


def is_local_engine() -> bool:
    """Whether the engine runs on this machine (a Unix socket): its published ports are on loopback here."""
    return engine_address().startswith("unix://")


def client(timeout: float = PING_TIMEOUT_S) -> Any:
    """A docker-py client of an engine that answered a ping; otherwise a clear error saying which engine was
    tried, what went wrong and how to get one."""
    try:
        import docker
    except ImportError:
        raise ClauseproofError(
            "the docker and testcontainers packages are not installed",
            fix="pip install 'clauseproof[containers]' (./run installs it)",
        ) from None
    address = engine_address()
    sock = address.removeprefix("unix://") if address.startswith("unix://") else None
    if sock is not None and not os.path.exists(sock):
        raise ClauseproofError(
            f"no Docker engine: {sock} does not exist"
            + ("" if os.environ.get("DOCKER_HOST") else " (DOCKER_HOST unset)"),
            checked=f"the engine's socket {sock}",
            fix=ENGINE_FIX,
        )
    if sock is not None and not os.access(
        sock, os.R_OK | os.W_OK, effective_ids=os.access in os.supports_effective_ids
    ):
        raise ClauseproofError(
            f"the Docker engine's socket {sock} is not open to this user (uid {os.geteuid()})",
            checked=f"read and write permission on {sock}",
            fix="add the user to the socket's group (usually docker) and log in again, or run as root",
        )
    try:
        c = docker.DockerClient(base_url=address, timeout=max(1, int(timeout)))
        c.ping()
    except Exception as exc:
        text = str(exc)
        if "Permission denied" in text or "403" in text:
            raise ClauseproofError(
                f"the Docker engine at {address} refused this user: {text.splitlines()[0][:200]}",
                checked="a ping of the engine's API",
                fix="add the user to the socket's group (usually docker), or run as root",
            ) from None
        raise ClauseproofError(
            f"no Docker engine answers at {address} within {timeout:g} s: {type(exc).__name__}",
            checked="a ping of the engine's API",
            fix=ENGINE_FIX,
        ) from None
    return c


def _debian_root() -> str:
    """'' when this is root on Debian (the engine can be installed and started here), else why not."""
    if os.geteuid() != 0:
        return "not root"
    if not Path("/etc/debian_version").exists():
        return "not Debian"
    return ""


POLICY = Path("/usr/sbin/policy-rc.d")
POLICY_MARK = "# clauseproof ./run: no service starts while it installs packages"  # the same mark as ./run's


def _apt_install_quietly(packages: list[str], services: list[str]) -> None:
    """``apt-get install`` with no service started meanwhile (a policy-rc.d of ours, removed whatever happens) and
    the packages' services not enabled at boot (on a systemd host docker.io would otherwise start dockerd with IP
    forwarding and enable it)."""
    env = masking.child_env({"DEBIAN_FRONTEND": "noninteractive"})
    ours = not POLICY.exists()
    if ours:
        POLICY.write_text(f"#!/bin/sh\n{POLICY_MARK}\nexit 101\n")
        POLICY.chmod(0o755)
    try:
        for args in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends",
                                                    *packages]):  # fmt: skip
            r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900, check=False)
            if r.returncode != 0:
                raise ClauseproofError(
                    f"{' '.join(args)} failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}",
                    fix="check the Debian mirror in /etc/apt/sources.list",
                )
    finally:
        if ours:
            POLICY.unlink(missing_ok=True)
    for svc in services:
        for args in (["deb-systemd-helper", "disable", f"{svc}.service"], ["update-rc.d", svc, "disable"]):
            if shutil.which(args[0]):
                subprocess.run(args, env=env, capture_output=True, timeout=60, check=False)


def start_engine(progress: Any = print) -> str:
    """Make sure a Docker engine answers: the running one, else (root on Debian) install ``docker.io`` and
    start ``dockerd`` in the background (it keeps running after this process, as a system service would).
    Returns what was done, in words."""
    with contextlib.suppress(ClauseproofError):
        client()
        return f"a Docker engine answers at {engine_address()}"
    if os.environ.get("DOCKER_HOST") and not is_local_engine():
        client()  # raises with the reason: a remote engine is not ours to start
    why = _debian_root()
    if why:
        raise ClauseproofError(
            f"no Docker engine answers and none can be started here ({why})",
            checked=f"a ping of {engine_address()}",
            fix="start one (as root on Debian: ./run engine), or set DOCKER_HOST to a running engine",
        )
    done = []
    if not shutil.which("dockerd"):
        progress("installing Debian's docker.io (the Docker engine; its service neither started nor enabled) ...")
        _apt_install_quietly(["docker.io"], services=["docker", "containerd"])
        done.append("installed docker.io")
    DOCKERD_LOG.parent.mkdir(parents=True, exist_ok=True)
    progress(f"starting dockerd {' '.join(DOCKERD_ARGS)} (log: {DOCKERD_LOG}) ...")
    with open(DOCKERD_LOG, "ab") as log:
        subprocess.Popen(
            ["dockerd", *DOCKERD_ARGS],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # outlives this process, like a service
            close_fds=True,
        )
    deadline = time.monotonic() + ENGINE_START_TIMEOUT_S
    while True:
        try:
            client(timeout=2)
            break
        except ClauseproofError:
            if time.monotonic() > deadline:
                tail = DOCKERD_LOG.read_text(errors="replace").splitlines()[-5:]
                raise ClauseproofError(
                    f"dockerd did not answer within {ENGINE_START_TIMEOUT_S} s; its log ends:\n    "
                    + "\n    ".join(tail),
                    checked=f"a ping of {engine_address()}",
                    fix=f"read {DOCKERD_LOG}",
                ) from None
            time.sleep(0.2)
    done.append(f"started dockerd {' '.join(DOCKERD_ARGS)} (log {DOCKERD_LOG})")
    return "; ".join(done)


def run_labels(namespace: str) -> dict[str, str]:
    """The labels a container of this run carries."""
    return {LABEL_RUN: namespace, LABEL_OWNER: str(os.getpid()), LABEL_HOST: os.uname().nodename}


def reap_containers(*, only_run: str | None = None) -> list[str]:
    """Remove (with their anonymous volumes) the harness's containers whose owning process is gone on this
    host, or every container of ``only_run``.  Returns what was removed; nothing when no engine answers."""
    try:
        c = client(timeout=2)
    except ClauseproofError:
        return []
    removed = []
    try:
        # a container removed while this lists (its run ended) is skipped: docker-py would raise its 404
        for ct in c.containers.list(all=True, filters={"label": LABEL_RUN}, ignore_removed=True):
            labels = ct.labels or {}
            if only_run is not None:
                if labels.get(LABEL_RUN) != only_run:
                    continue
            else:
                if labels.get(LABEL_HOST) != os.uname().nodename:
                    continue
                pid = int(labels.get(LABEL_OWNER, "0") or 0)
                if pid and _pid_alive(pid):
                    continue
            with contextlib.suppress(Exception):  # removed meanwhile
                ct.remove(force=True, v=True)
                removed.append(f"container {ct.name} ({labels.get(LABEL_RUN)})")
    finally:
        c.close()
    return removed
