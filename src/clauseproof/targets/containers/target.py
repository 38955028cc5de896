"""PostgreSQL or MariaDB in a container started by testcontainers, on a running Docker engine.

The image is, in this order: the one ``--cp-image-postgresql`` / ``--cp-image-mariadb`` names (a vendor's image,
say); the official image where a registry answers; else one built here from the Debian mirror
(:mod:`clauseproof.targets.containers.images`, on first use, with progress).  testcontainers' own cleanup
container (Ryuk)
would have to be pulled, so it is off: every container carries the run's labels and is removed by ``stop()``,
on Ctrl-C/SIGTERM through the session's teardown, and by ``clauseproof reap`` after a SIGKILL.

The engine's own tools run inside the container (``docker exec``): the physical backup (pg_basebackup /
mariadb-backup), whose files are copied out; the data directory is copied out for the at-rest scan.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import tarfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from clauseproof.core import archive, masking
from clauseproof.core.commands import Phase
from clauseproof.core.errors import ClauseproofError
from clauseproof.core.i18n import Text, msg
from clauseproof.targets.base import Endpoint, Target, open_endpoint
from clauseproof.targets.containers import engine, images

#: Container start to ready must take ≤ 10 s (issue #18); a first start initialises the data directory.
READY_TIMEOUT_S = 60
PORTS = {"postgresql": 5432, "mysql": 3306}
DATA_DIRS = {"postgresql": "/var/lib/postgresql/data", "mysql": "/var/lib/mysql"}


def _configure_testcontainers(ready_timeout: float) -> None:
    """Ryuk off (it is pulled from a registry); connect to published ports on loopback when the engine is
    local (this machine has a /.dockerenv, from which testcontainers would guess the bridge gateway); wait
    for readiness at most ``ready_timeout`` seconds, polling every 0.25 s."""
    from testcontainers.core.config import ConnectionMode
    from testcontainers.core.config import testcontainers_config as tc

    tc.ryuk_disabled = True
    tc.sleep_time = 0.25
    tc.max_tries = max(1, int(ready_timeout / tc.sleep_time))
    if engine.is_local_engine() and not os.environ.get("TC_HOST"):
        tc.tc_host_override = "127.0.0.1"
        tc.connection_mode_override = ConnectionMode.docker_host


class _Chunks(io.RawIOBase):
    """A readable file over an iterator of byte chunks (the engine's archive stream)."""

    def __init__(self, chunks: Any) -> None:
        self._it = iter(chunks)
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._left:
            try:
                self._left = next(self._it)
            except StopIteration:
                return 0
        n = min(len(b), len(self._left))
        b[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def _restoring(cls: Any) -> Any:
    """``cls`` whose files given to ``with_copy_into_container`` are tar archives, extracted into the container
    (after it is created, before it starts): how a restored data directory gets into its volume."""

    class Restoring(cls):
        def _transfer_into_container(self, transferable: Any, destination: str, mode: int) -> None:
            with open(transferable, "rb") as f:
                self._container.put_archive(destination, f)

    return Restoring


#: What :meth:`ContainerTarget.physical_backup` runs, in words.
BACKUP_WORDS = {
    "postgresql": "pg_basebackup -Ft -X fetch -c fast inside the container, then its files copied out",
    "mysql": "mariadb-backup --backup inside the container, then its files copied out",
}


class ContainerTarget(Target):
    """PostgreSQL or MariaDB in a throw-away container."""

    kind = "containers"

    def __init__(
        self,
        label: str,
        namespace: str,
        dialect: str,
        *,
        image: str = "",
        cpus: float = 0.0,
        memory: str = "",
        ready_timeout: float = READY_TIMEOUT_S,
        progress: Any = print,
        restore_from: Path | None = None,
        password: str = "",
        server_args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(label, namespace)
        #: Arguments given to the server after the image's own (an instance class's buffer size, say).
        self.server_args = server_args
        self.dialect = "postgresql" if dialect == "postgresql" else "mysql"
        self.engine_name = "postgresql" if self.dialect == "postgresql" else "mariadb"
        self.image_asked = image
        self.image = image
        self.image_source = ""
        self.cpus = cpus
        self.memory = memory
        self.ready_timeout = ready_timeout
        self.progress = progress
        self.container: Any = None
        self.facts: dict[str, Any] = {}
        #: A tar of the data directory (made by :meth:`restore_archive`) put into the volume before the start.
        self.restore_from = restore_from
        #: Whether start() makes the run's namespace (a restored copy holds the source's).
        self.create_on_start = restore_from is None
        self.password = password or masking.new_secret(12)

    # -- life cycle ---------------------------------------------------------------------------------------
    def _choose_image(self, cl: Any) -> None:
        import docker

        if self.image_asked:
            try:
                cl.images.get(self.image_asked)
                self.image_source = "named by --cp-image, present in the engine"
            except docker.errors.ImageNotFound:
                try:
                    cl.images.pull(self.image_asked)
                    self.image_source = "named by --cp-image, pulled"
                except Exception as exc:
                    raise ClauseproofError(
                        f"the image {self.image_asked} is not in the engine and cannot be pulled: "
                        f"{str(exc).splitlines()[0][:200]}",
                        checked="the engine's images, then a pull from its registry",
                        fix=f"docker load -i <the image's .tar>, or correct --cp-image-{self.engine_name}",
                    ) from None
            return
        official = images.OFFICIAL[self.engine_name]
        try:
            cl.images.get(official)
            self.image, self.image_source = official, "the official image, present in the engine"
            return
        except docker.errors.ImageNotFound:
            pass
        try:
            cl.images.pull(official)
            self.image, self.image_source = official, "the official image, pulled from the registry"
            return
        except Exception as exc:
            text = str(exc).splitlines()[0]
            unreachable = (re.findall(r'\("(.*)"\)', text) or [text])[0][:160]
        self.image, how = images.ensure_image(self.engine_name, self.progress)
        self.image_source = f"built here from the Debian mirror ({how}); no registry answered ({unreachable})"

    def start(self) -> None:
        cl = engine.client()
        try:
            self._choose_image(cl)
            self.facts = {"image": images.image_facts(cl, self.image), "image_source": self.image_source}
        finally:
            cl.close()
        _configure_testcontainers(self.ready_timeout)
        password = self.password
        c: Any
        if self.dialect == "postgresql":
            from testcontainers.community.postgres import PostgresContainer

            cls: Any = PostgresContainer
            c = _restoring(cls)(self.image, username="postgres", password=password, dbname="postgres", driver=None)
        else:
            from testcontainers.community.mysql import MySqlContainer

            cls = MySqlContainer
            c = _restoring(cls)(self.image, username="root", root_password=password, password=password, dbname="mysql")
            if self.restore_from is not None:  # the restored server says "ready" once: there is no init server
                c.wait_strategy_check_string = r".*: ready for connections.*"
        if self.restore_from is not None:
            c.with_copy_into_container(str(self.restore_from), DATA_DIRS[self.dialect])
        port = PORTS[self.dialect]
        c.ports = {str(port): ("127.0.0.1", None)}  # published on loopback only
        kwargs: dict[str, Any] = {"labels": engine.run_labels(self.namespace)}
        if self.cpus:
            kwargs["nano_cpus"] = int(self.cpus * 1e9)
        if self.memory:
            kwargs["mem_limit"] = self.memory
        c.with_kwargs(**kwargs)
        if self.server_args:
            c.with_command(["postgres" if self.dialect == "postgresql" else "mariadbd", *self.server_args])
        c.with_name(f"{self.namespace}-{self.engine_name}-{secrets.token_hex(3)}")
        self.container = c
        t0 = time.perf_counter()
        try:
            c.start()
        except BaseException as exc:
            created = getattr(c, "_container", None) is not None
            logs = self._last_logs()
            self.stop()
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            if not created or "APIError" in type(exc).__name__:
                raise ClauseproofError(
                    f"the engine would not create or start a container of {self.image}: "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}",
                    checked=f"docker create/start with labels, loopback port, limits cpus={self.cpus or 'none'} "
                    f"memory={self.memory or 'none'}",
                    fix="check the limits and the image",
                ) from None
            waited = (
                "psql -c 'select version();' over TCP inside the container"
                if self.dialect == "postgresql"
                else "the log line 'ready for connections' twice (init server, then server)"
            )
            raise ClauseproofError(
                f"the container of {self.image} did not become ready within {self.ready_timeout:g} s "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}); its log ends:\n    "
                + "\n    ".join(logs),
                checked=f"testcontainers waited for {waited}",
                fix="check that the image keeps the official image's contract (POSTGRES_* / MYSQL_* variables)",
            ) from None
        self.facts["ready_seconds"] = round(time.perf_counter() - t0, 2)
        self.endpoint = Endpoint(
            host=c.get_container_host_ip(),
            port=int(c.get_exposed_port(port)),
            user="postgres" if self.dialect == "postgresql" else "root",
            database="postgres" if self.dialect == "postgresql" else "",
            password=password,
        )
        try:
            self._check_password()
            self.facts.update(self._limits())
            if self.create_on_start:
                self.create_namespace()
        except BaseException:
            self.stop()
            raise

    def _check_password(self) -> None:
        """An image whose entrypoint ignores the password variables is refused, by name."""
        assert self.endpoint is not None
        ep = self.endpoint
        for attempt in range(20):  # the server may restart once after its initialisation
            try:
                self.connect(in_namespace=False).close()
                break
            except Exception as exc:
                text = str(exc)
                if any(w in text.lower() for w in ("password", "access denied", "authentication")):
                    raise ClauseproofError(
                        f"the container of {self.image} is up, but refuses the password the harness set through "
                        f"{'POSTGRES_PASSWORD' if self.dialect == 'postgresql' else 'MYSQL_ROOT_PASSWORD'}: "
                        f"{text.splitlines()[0][:160]}",
                        checked=f"a login as {ep.user} at {ep.host}:{ep.port}",
                        fix="use an image whose entrypoint honours the official image's password variables",
                    ) from None
                if attempt == 19:
                    raise ClauseproofError(
                        f"the container of {self.image} is ready for testcontainers but takes no connection at "
                        f"{ep.host}:{ep.port}: {text.splitlines()[0][:160] if text else type(exc).__name__}",
                        checked="20 connection attempts, 0.25 s apart",
                    ) from None
                time.sleep(0.25)
        try:  # the password must be what lets the harness in: a wrong one must be refused
            open_endpoint(self.dialect, replace(ep, password=(ep.password or "") + "-wrong"), None).close()
        except Exception:
            return
        raise ClauseproofError(
            f"the container of {self.image} lets a login with a wrong password in: its entrypoint ignored "
            f"{'POSTGRES_PASSWORD' if self.dialect == 'postgresql' else 'MYSQL_ROOT_PASSWORD'} (trust, or no "
            "password checking)",
            checked=f"a login as {ep.user} at {ep.host}:{ep.port} with a password other than the one set",
            fix="use an image whose entrypoint honours the official image's password variables",
        )

    def _wrapped(self) -> Any:
        return self.container.get_wrapped_container() if self.container is not None else None

    def _last_logs(self, lines: int = 12) -> list[str]:
        with contextlib.suppress(Exception):
            ct = self._wrapped()
            if ct is not None:
                return ct.logs(tail=lines).decode(errors="replace").rstrip().splitlines()
        return ["(no log: the container was not created)"]

    def _limits(self) -> dict[str, Any]:
        ct = self._wrapped()
        ct.reload()
        host = ct.attrs.get("HostConfig") or {}
        cpus = (host.get("NanoCpus") or 0) / 1e9
        mem = host.get("Memory") or 0
        return {
            "container": {"id": ct.id, "name": ct.name, "labels": ct.labels},
            "limits": {
                "cpus": cpus or "none (every CPU of the engine's host)",
                "memory_bytes": mem or "none (all memory of the engine's host)",
            },
        }

    def stop(self) -> None:
        """Remove the container with its anonymous data volume (the namespace goes with it: nothing else lives
        there).  If the engine does not answer now, the container's labels let ``clauseproof reap`` remove it."""
        c, self.container = self.container, None
        if c is not None:
            try:
                c.stop()  # docker rm -f -v
            except Exception:
                with contextlib.suppress(Exception):
                    c.get_wrapped_container().remove(force=True, v=True)
        self.endpoint = None
        self._namespace_created = False

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self.facts}

    # -- the engine's own tools, inside the container ------------------------------------------------------
    def exec(self, args: list[str], *, user: str | None = None) -> str:
        """Run ``args`` inside the container; its output, or a clear error with it."""
        ct = self._wrapped()
        env = self.endpoint.client_env(self.dialect) if self.endpoint else None
        r = ct.exec_run(args, user=user or "", environment=env or {}, demux=False)
        out = (r.output or b"").decode(errors="replace")
        if r.exit_code != 0:
            raise ClauseproofError(
                f"{' '.join(args[:3])} … in the container exited with {r.exit_code}: {out.strip()[-400:]}",
                checked=f"docker exec in {ct.name}",
            )
        return out

    def copy_out(self, path: str, dest: Path) -> int:
        """Copy ``path`` of the container (a folder's content) into ``dest``; bytes copied."""
        ct = self._wrapped()
        stream, _ = ct.get_archive(path.rstrip("/") + "/.")
        dest.mkdir(parents=True, exist_ok=True)
        total = 0
        with tarfile.open(fileobj=_Chunks(stream), mode="r|") as tar:  # streamed: never all in memory

            def members() -> Iterator[tarfile.TarInfo]:
                nonlocal total
                for m in tar:
                    name = re.sub(r"^\./?", "", m.name)
                    if not name or m.issym() or m.islnk() or m.isdev() or m.isfifo():
                        continue  # the scan reads files: links and special files are not copied out
                    m.name = name
                    total += m.size if m.isfile() else 0
                    yield m

            archive.extract(tar, dest, members())
        return total

    def data_directory(self) -> str:
        return DATA_DIRS[self.dialect]

    def _ids(self, user: str) -> tuple[int, int]:
        out = self.exec(["id", "-u", user]).strip(), self.exec(["id", "-g", user]).strip()
        return int(out[0]), int(out[1])

    def copy_files(self, dest: Path) -> int:
        """The data directory's files, copied out of the container (the at-rest scan reads them)."""
        return self.copy_out(self.data_directory(), dest)

    def physical_backup(self, out: Path) -> str:
        """A physical backup with the engine's own tool inside the container, its files then copied out into
        ``out``; returns what ran, in words (no password)."""
        inside = "/tmp/clauseproof-backup"
        if self.dialect == "postgresql":
            self.exec(["rm", "-rf", inside])
            cmd = ["pg_basebackup", "-h", "/var/run/postgresql", "-U", "postgres", "-D", inside]
            self.exec([*cmd, "-Ft", "-X", "fetch", "-c", "fast"], user="postgres")
            what = BACKUP_WORDS["postgresql"]
        else:
            self.exec(["rm", "-rf", inside])
            self.exec(  # the password in MYSQL_PWD (exec's environment), never on a command line others can read
                ["mariadb-backup", "--backup", f"--target-dir={inside}", "--user=root",
                 "--socket=/run/mysqld/mysqld.sock"],
                user="mysql",
            )  # fmt: skip
            what = BACKUP_WORDS["mysql"]
        try:
            self.copy_out(inside, out)
        finally:
            with contextlib.suppress(Exception):
                self.exec(["rm", "-rf", inside])
        return what

    def restore_archive(self, backup: Path, work: Path) -> tuple[Path, str]:
        """The tar to put into a new container's data directory from a :meth:`physical_backup`: PostgreSQL's
        base.tar as it is; MariaDB's backup prepared beside the container (mariadb-backup --prepare) and archived
        under the image's mysql user.  Returns the tar and what was done, in words."""
        if self.dialect == "postgresql":
            return backup / "base.tar", "base.tar as taken"
        import subprocess

        r = subprocess.run(
            ["mariadb-backup", "--no-defaults", "--prepare", f"--target-dir={backup}"],
            capture_output=True, text=True, timeout=3600, check=False,
        )  # fmt: skip
        if r.returncode != 0:
            raise ClauseproofError(
                "mariadb-backup --prepare failed: " + " / ".join(r.stderr.strip().splitlines()[-3:]),
                checked=f"mariadb-backup --prepare --target-dir={backup}",
            )
        uid, gid = self._ids("mysql")
        tar_path = work / "restore.tar"

        def owned(ti: tarfile.TarInfo) -> tarfile.TarInfo:
            ti.uid, ti.gid, ti.uname, ti.gname = uid, gid, "", ""
            return ti

        with tarfile.open(tar_path, "w") as tar:
            for p in sorted(backup.iterdir()):
                tar.add(str(p), arcname=p.name, filter=owned)
        return tar_path, "mariadb-backup --prepare beside the container, the prepared files archived"

    def restored_copy(self, archive: Path, label: str = "restored-physical") -> ContainerTarget:
        """A new container of the same image whose data directory is ``archive``, started; it keeps the source's
        accounts (and password)."""
        t = ContainerTarget(
            label,
            self.namespace,
            self.dialect,
            image=self.image,
            cpus=self.cpus,
            memory=self.memory,
            ready_timeout=self.ready_timeout,
            progress=self.progress,
            restore_from=archive,
            password=self._ep().password or "",
        )
        t.create_on_start = False
        t.start()
        return t

    # -- role: InstanceClasses (SX-RDS-S2) ------------------------------------------------------------------
    #: The engine's buffer as a share of the class's memory, as managed services size it (MySQL's InnoDB buffer
    #: pool about three quarters, PostgreSQL's shared_buffers a quarter).
    BUFFER_SHARE: ClassVar[dict[str, float]] = {"postgresql": 0.25, "mysql": 0.75}

    def class_missing(self, vcpus: int, memory_gb: int) -> str:
        cl = engine.client()
        try:
            info = cl.info()
        finally:
            cl.close()
        cpus, mem = int(info.get("NCPU", 0)), int(info.get("MemTotal", 0))
        if vcpus > cpus or memory_gb * 2**30 > mem:
            return (f"the Docker engine's host has {cpus} CPUs and {mem / 2**30:.0f} GiB: a class of {vcpus} vCPUs "
                    f"and {memory_gb} GB cannot be made here")  # fmt: skip
        return ""

    def create_class(self, name: str, vcpus: int, memory_gb: int) -> ContainerTarget:
        buffer_mb = int(memory_gb * 1024 * self.BUFFER_SHARE[self.dialect])
        args = (("-c", f"shared_buffers={buffer_mb}MB") if self.dialect == "postgresql"
                else (f"--innodb-buffer-pool-size={buffer_mb}M",))  # fmt: skip
        t = ContainerTarget(name, self.namespace, self.dialect, image=self.image, cpus=float(vcpus),
                            memory=f"{memory_gb}g", ready_timeout=self.ready_timeout, progress=self.progress,
                            server_args=args)  # fmt: skip
        t.create_on_start = False
        t.start()
        return t

    # -- role: DataFiles ----------------------------------------------------------------------------------
    files_from = "the container's data directory, copied out through the engine's API"

    def data_files(self, work: Path) -> Path:
        root = work / "files"
        root.mkdir(parents=True, exist_ok=True)
        self.progress(f"{self.label}: copying the container's data directory out")
        self.copy_files(root)
        return root

    def storage_cipher(self) -> tuple[str, str | None]:
        return f"as the image {self.image} configures it", None

    # -- role: PhysicalBackups ------------------------------------------------------------------------------
    backup_method = "physical, inside the container"

    @property
    def backup_windows(self) -> tuple[Text | str, Text | str]:
        return (
            msg("window_container_backup", backup=BACKUP_WORDS[self.dialect]),
            msg("window_container_restore"),
        )

    def take_physical_backup(self, out: Path) -> list[Phase]:
        t0 = time.perf_counter()
        what = self.physical_backup(out)
        return [Phase(what, round(time.perf_counter() - t0, 4), what)]

    def restore_physical_backup(self, backup: Path, work: Path) -> tuple[list[Phase], ContainerTarget]:
        t0 = time.perf_counter()
        archive, how = self.restore_archive(backup, work)
        phases = [Phase(how, round(time.perf_counter() - t0, 4), how)]
        t0 = time.perf_counter()
        restored = self.restored_copy(archive)
        started = "a new container of the same image started on the restored data directory, until ready"
        how = f"testcontainers start of {self.image} with the archive put into its data volume"
        phases.append(Phase(started, round(time.perf_counter() - t0, 4), how))
        return phases, restored
