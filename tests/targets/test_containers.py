"""The containers target on a real Docker engine (started here if none runs: root on Debian), with the images
built here from the Debian mirror: start and stop leave nothing, the evidence names image and limits, the
harness's cleanup covers SIGTERM and (through ``reap``) SIGKILL, and bad images fail fast and clearly.  No mock
of the Docker API."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.containers import engine, images
from clauseproof.targets.containers.target import ContainerTarget
from tests.fix_targets import signals_as_in_a_terminal

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def docker() -> Iterator[Any]:
    """The engine (installed and started here when none answers) and this machine's images (built if missing)."""
    try:
        engine.start_engine(progress=lambda s: None)
    except ClauseproofError as exc:
        pytest.skip(f"no Docker engine can run here: {exc}")
    for name in images.ENGINES:
        images.ensure_image(name, progress=lambda s: None)
    cl = engine.client()
    try:
        yield cl
    finally:
        cl.close()


def _ours(cl: Any, namespace: str) -> list[Any]:
    return cl.containers.list(all=True, filters={"label": f"{engine.LABEL_RUN}={namespace}"}, ignore_removed=True)


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_a_container_starts_records_its_image_and_leaves_nothing(docker: Any, dialect: str) -> None:
    ns = f"clauseproof_ct{os.getpid()}{dialect[:2]}"
    t = ContainerTarget(f"containers-{dialect}", ns, dialect, cpus=1, memory="768m", progress=lambda s: None)
    t.start()
    try:
        info = t.describe()
        assert info["image"]["id"].startswith("sha256:") and info["image"]["name"] == t.image
        assert info["limits"] == {"cpus": 1.0, "memory_bytes": 768 << 20}
        assert info["ready_seconds"] < 10  # issue #18: container start to ready <= 10 s
        (ct,) = _ours(docker, ns)
        assert ct.labels[engine.LABEL_OWNER] == str(os.getpid())
        ports = ct.attrs["HostConfig"]["PortBindings"]
        assert all(b["HostIp"] == "127.0.0.1" for bs in ports.values() for b in bs)  # loopback only
        version = str(t.server_environment()["version"])
        assert ("PostgreSQL 15" if dialect == "postgresql" else "10.11") in version
        with t.connect() as conn, conn.cursor() as cur:  # inside the run's namespace
            cur.execute("CREATE TABLE t (i int)")
    finally:
        t.stop()
    assert _ours(docker, ns) == []
    assert not [v for v in docker.volumes.list() if v.attrs.get("Labels") and ns in json.dumps(v.attrs["Labels"])]


def test_physical_backup_restores_into_a_new_container(docker: Any, tmp_path: Path) -> None:
    """MariaDB's backup taken inside, prepared beside, restored into a new container: it holds the rows as of the
    backup, not the ones written after."""
    t = ContainerTarget("containers-mariadb", f"clauseproof_cb{os.getpid()}", "mysql", progress=lambda s: None)
    t.start()
    restored = None
    try:
        with t.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE t (i int primary key)")
            cur.execute("INSERT INTO t VALUES (1), (2), (3)")
        t.physical_backup(tmp_path / "b")
        with t.connect() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO t VALUES (4)")
        archive, _ = t.restore_archive(tmp_path / "b", tmp_path)
        restored = t.restored_copy(archive)
        with restored.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT i FROM t ORDER BY i")
            assert [r[0] for r in cur.fetchall()] == [1, 2, 3]
    finally:
        if restored is not None:
            restored.stop()
        t.stop()
    assert _ours(docker, t.namespace) == []


def _derived(cl: Any, tag: str, base: str, dockerfile: str, files: dict[str, str], tmp: Path) -> str:
    """A small image on top of ``base`` (a layer or two, built in a second)."""
    (tmp / "Dockerfile").write_text(f"FROM {base}\n{dockerfile}")
    for name, text in files.items():
        (tmp / name).write_text(text)
        (tmp / name).chmod(0o755)
    cl.images.build(path=str(tmp), tag=tag, rm=True, network_mode="none")
    return tag


def test_an_image_that_never_gets_ready_fails_within_its_timeout_with_its_log(docker: Any, tmp_path: Path) -> None:
    base = images.tags(images.host_mirror())["postgresql"]
    tag = _derived(
        docker,
        "clauseproof-test/never-ready:1",
        base,
        'ENTRYPOINT ["/bin/sh", "-c", "echo waiting for a licence server that never answers; sleep 600"]\n',
        {},
        tmp_path,
    )
    ns = f"clauseproof_cn{os.getpid()}"
    t = ContainerTarget("containers-postgresql", ns, "postgresql", image=tag, ready_timeout=4, progress=lambda s: None)
    started = time.monotonic()
    with pytest.raises(ClauseproofError) as exc:
        t.start()
    assert time.monotonic() - started < 15
    text = str(exc.value)
    assert tag in text and "within 4 s" in text and "select version()" in text
    assert "licence server that never answers" in text  # its last log lines
    assert _ours(docker, ns) == []


@pytest.mark.parametrize("dialect", ["postgresql", "postgresql-trust", "mysql"])
def test_an_entrypoint_that_ignores_the_password_is_refused(docker: Any, tmp_path: Path, dialect: str) -> None:
    """The cheapest images that "work": one starts without the password it was given (trust / empty root); one
    sets it but lets any password in (trust in pg_hba)."""
    mirror = images.host_mirror()
    engine_name = "mariadb" if dialect == "mysql" else "postgresql"
    wrapper = (
        "#!/bin/sh\nunset POSTGRES_PASSWORD\nexport POSTGRES_HOST_AUTH_METHOD=trust\n"
        'exec /usr/local/bin/docker-entrypoint.sh "$@"\n'
        if dialect == "postgresql"
        else '#!/bin/sh\nexport POSTGRES_HOST_AUTH_METHOD=trust\nexec /usr/local/bin/docker-entrypoint.sh "$@"\n'
        if dialect == "postgresql-trust"
        else "#!/bin/sh\nunset MYSQL_ROOT_PASSWORD MYSQL_PASSWORD MARIADB_ROOT_PASSWORD\n"
        'export MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1\nexec /usr/local/bin/docker-entrypoint.sh "$@"\n'
    )
    tag = _derived(
        docker,
        f"clauseproof-test/no-password-{dialect}:1",
        images.tags(mirror)[engine_name],
        'COPY lax.sh /usr/local/bin/lax.sh\nENTRYPOINT ["/usr/local/bin/lax.sh"]\n'
        f'CMD ["{"mariadbd" if dialect == "mysql" else "postgres"}"]\n',
        {"lax.sh": wrapper},
        tmp_path,
    )
    ns = f"clauseproof_cp{os.getpid()}{dialect[:2]}{len(dialect)}"
    d = "mysql" if dialect == "mysql" else "postgresql"
    t = ContainerTarget(f"containers-{d}", ns, d, image=tag, ready_timeout=30, progress=lambda s: None)
    with pytest.raises(ClauseproofError) as exc:
        t.start()
    text = str(exc.value)
    assert tag in text and "did not become ready" not in text  # up, and refused for its password handling
    if dialect == "mysql":
        assert "refuses the password the harness set through MYSQL_ROOT_PASSWORD" in text
    else:
        assert "lets a login with a wrong password in" in text
    assert _ours(docker, ns) == []


@pytest.mark.timing  # refused within 1 s (no engine: nothing to wait for)
def test_no_engine_is_a_clear_error_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    t = ContainerTarget("containers-postgresql", "clauseproof_c", "postgresql")
    started = time.monotonic()
    with pytest.raises(ClauseproofError) as exc:
        t.start()
    assert time.monotonic() - started < 1
    assert "no Docker engine" in str(exc.value) and "./run engine" in str(exc.value)


def test_an_engine_that_does_not_answer_fails_within_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")  # discard port: refused at once
    started = time.monotonic()
    with pytest.raises(ClauseproofError) as exc:
        engine.client(timeout=2)
    assert time.monotonic() - started < 5
    assert "no Docker engine answers at tcp://127.0.0.1:9" in str(exc.value)


@pytest.mark.timing  # within 1 s: three image look-ups on the engine
def test_cached_images_are_found_within_a_second(docker: Any) -> None:
    started = time.monotonic()
    for name in images.ENGINES:
        _, how = images.ensure_image(name, progress=lambda s: None)
        assert how == "cached"
    assert time.monotonic() - started < 1


def _run_in_child(ns_file: Path) -> subprocess.Popen:
    """A child process that starts a container of its own and then waits (to be signalled)."""
    code = (
        "import sys, time, signal\n"
        "from clauseproof.targets.containers.target import ContainerTarget\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n"
        "t = ContainerTarget('containers-postgresql', sys.argv[1], 'postgresql', progress=lambda s: None)\n"
        "t.start()\n"
        "open(sys.argv[2], 'w').write('up')\n"
        "try:\n    time.sleep(120)\nfinally:\n    t.stop()\n"
    )
    ns = ns_file.stem
    return subprocess.Popen([sys.executable, "-c", code, ns, str(ns_file)], cwd=ROOT)


def _wait_up(flag: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the child's container did not start"
        time.sleep(0.2)


def test_sigkill_leaves_a_labelled_container_that_reap_removes(docker: Any, tmp_path: Path) -> None:
    flag = tmp_path / f"clauseproof_ck{os.getpid()}.up"
    proc = _run_in_child(flag)
    try:
        _wait_up(flag, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    ns = flag.stem
    assert len(_ours(docker, ns)) == 1  # SIGKILL: nothing of ours ran
    r = subprocess.run(
        [sys.executable, "-m", "clauseproof.cli", "reap"], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 0 and f"({ns})" in r.stdout, r.stdout + r.stderr
    assert _ours(docker, ns) == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signalled_run_removes_its_containers(docker: Any, tmp_path: Path, sig: signal.Signals) -> None:
    """``pytest suites/bulk_load --cp-target=containers-postgresql`` signalled once its container is up."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "suites/bulk_load", "--cp-target=containers-postgresql", "--cp-scale=0.01",
         f"--cp-results={tmp_path}", "-p", "no:randomly", "-q"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=signals_as_in_a_terminal,
    )  # fmt: skip
    mine: list[Any] = []
    try:
        deadline = time.monotonic() + 90
        while not mine:
            assert proc.poll() is None and time.monotonic() < deadline, "the run's container never appeared"
            mine = [
                c
                for c in docker.containers.list(all=True, filters={"label": engine.LABEL_RUN}, ignore_removed=True)
                if c.labels.get(engine.LABEL_OWNER) == str(proc.pid)
            ]
            time.sleep(0.2)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ns = mine[0].labels[engine.LABEL_RUN]
    assert _ours(docker, ns) == [], f"left after {sig.name}"


def test_reap_leaves_the_containers_of_a_live_run(docker: Any) -> None:
    ns = f"clauseproof_cl{os.getpid()}"
    t = ContainerTarget("containers-postgresql", ns, "postgresql", progress=lambda s: None)
    t.start()
    try:
        assert engine.reap_containers() == [] or all(ns not in r for r in engine.reap_containers())
        assert len(_ours(docker, ns)) == 1
    finally:
        t.stop()


def test_an_engine_refusing_this_user_is_a_clear_error(docker: Any) -> None:
    """The socket is root's and the docker group's: another user is told so, not handed a traceback."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    groups = os.getgroups()
    os.setgroups([])
    os.setegid(65534)
    os.seteuid(65534)
    try:
        with pytest.raises(ClauseproofError) as exc:
            engine.client()
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)
    assert "is not open to this user (uid 65534)" in str(exc.value) and "docker" in str(exc.value)


def test_the_suites_give_verdicts_on_containers(docker: Any, tmp_path: Path) -> None:
    """``pytest suites/bulk_load suites/online_ddl --cp-target=containers``: verdicts, no skip; the evidence names
    the image, its limits and the machine."""
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "suites/bulk_load", "--cp-target=containers", "--cp-scale=0.01",
         "--cp-repeats=1", f"--cp-results={tmp_path}", "--cp-formats=html", "-p", "no:randomly", "-q", "-rs"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "4 passed" in r.stdout and "skipped" not in r.stdout
    (bundle,) = [b for b in tmp_path.glob("*/evidence.json") if b.parent.name != "latest"]
    doc = json.loads(bundle.read_text())
    facts = {t["label"]: t for t in doc["targets"]}
    for label in ("containers-postgresql", "containers-mariadb"):
        t = facts[label]
        assert t["image"]["id"].startswith("sha256:") and "limits" in t
        assert t["server_machine"]["source"].startswith("measured: the container runs on the client machine")
    verdicts = {r["verdict"] for r in doc["clause_rows"] if r["id"] in ("BZ-DB-4a", "BZ-DB-4c")}
    assert verdicts == {"NOT EVIDENCE"}  # measured at 1 % scale: verdicts, not skips


def test_a_limit_the_engine_refuses_is_named(docker: Any) -> None:
    ns = f"clauseproof_cm{os.getpid()}"
    t = ContainerTarget("containers-postgresql", ns, "postgresql", memory="1m", progress=lambda s: None)
    with pytest.raises(ClauseproofError) as exc:
        t.start()
    assert "would not create or start a container" in str(exc.value) and "memory=1m" in str(exc.value)
    assert _ours(docker, ns) == []


@pytest.mark.parametrize(("dialect", "buffer_gib"), [("postgresql", 2.0), ("mysql", 6.0)])
def test_an_instance_class_is_a_container_with_its_limits_and_buffer(
    docker: Any, dialect: str, buffer_gib: float
) -> None:
    """SX-RDS-S2 on the containers stand-in: a class of 2 vCPUs and 8 GB is a container with those limits whose
    engine's buffer is sized to it (a quarter for PostgreSQL, three quarters for MariaDB); a class bigger than the
    engine's host is refused with the reason; nothing is left."""
    from clauseproof.db_service.classes import buffer_bytes

    ns = f"clauseproof_cc{os.getpid()}{dialect[:2]}"
    stand_in = ContainerTarget(f"containers-{dialect}", ns, dialect, progress=lambda s: None)
    stand_in.image, _ = images.ensure_image("postgresql" if dialect == "postgresql" else "mariadb",
                                            progress=lambda s: None)  # fmt: skip
    assert "cannot be made here" in stand_in.class_missing(64, 512)
    assert stand_in.class_missing(2, 8) == ""
    instance = stand_in.create_class("class-2c8g250", 2, 8)
    try:
        assert instance.describe()["limits"] == {"cpus": 2.0, "memory_bytes": 8 << 30}
        with contextlib.closing(instance.connect(in_namespace=False)) as conn:
            assert buffer_bytes(conn, dialect) == int(buffer_gib * 2**30)
    finally:
        instance.stop()
    assert _ours(docker, ns) == []
