"""Embedded PostgreSQL and MariaDB, started from the machine's binaries on free loopback ports.

Each server lives in its own temporary folder ``clauseproof-<engine>-*`` holding the data
directory, socket, log and an ``owner.json`` naming the process that started it.  A later run
stops and removes any such folder whose owner is gone, so a crashed run never blocks the next.
Servers run with stock settings; only paths, ports and (for MariaDB) ``local_infile`` are set.

No other local user gets in.  The folder is 0700, owned by the server's OS user (``postgres`` and
``mysql`` where the harness runs as root, else the harness's own user), so only that user and
root reach the Unix socket inside it; the socket needs no password.  TCP (127.0.0.1) needs the
instance's own random password, made at start and never written to results: PostgreSQL's
``pg_hba.conf`` is written at every start (scram-sha-256 on TCP, including replication; md5 for the
nodes behind pgpool-II, see :mod:`clauseproof.targets.clusters.replicated`),
MariaDB's ``root@127.0.0.1`` gets the password through ``--init-file`` (removed once the server
is up) and every other root account but the socket's ``root@localhost`` is dropped.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Any

from clauseproof.core import masking
from clauseproof.core.errors import ClauseproofError
from clauseproof.core.i18n import Text
from clauseproof.targets.base import Target
from clauseproof.targets.host.folders import make_private_folder
from clauseproof.targets.single.audit import EngineAudit
from clauseproof.targets.single.diagnosis import EngineDiagnosis

log = logging.getLogger("clauseproof.embedded")

START_TIMEOUT_S = 60
#: PostgreSQL's client authentication, written into the data directory at every start: the socket (in a 0700
#: folder) without a password, TCP only with the instance's password, replication included.
STOP_TIMEOUT_S = 30


def _mysql_user() -> str:
    try:
        pwd.getpwnam("mysql")
    except KeyError:
        raise ClauseproofError(
            "running as root, and there is no 'mysql' user to run mariadbd as (it never runs as root here)",
            fix="install the Debian package mariadb-server, which creates it, or run as a normal user",
        ) from None
    return "mysql"


def _find_binaries(names: tuple[str, ...], candidates: list[Path], option: str, package: str) -> Path:
    for d in candidates:
        if all((d / n).is_file() and os.access(d / n, os.X_OK) for n in names):
            return d
    raise ClauseproofError(
        f"{' and '.join(names)} not found",
        checked="these folders: " + ", ".join(str(c) for c in candidates),
        fix=f"install the Debian package {package} (apt-get install {package}), or set {option} "
        "to the folder that holds them",
    )


class EmbeddedServer(EngineDiagnosis, EngineAudit, Target):
    """Shared life cycle of an embedded server in a temporary folder."""

    kind = "embedded"

    def __init__(
        self,
        label: str,
        namespace: str,
        bindir: Path | None,
        *,
        settings: dict[str, str] | None = None,
        data_source: Path | None = None,
        create_namespace: bool = True,
        restore_from: Path | None = None,
        recovery: bool = False,
        password: str | None = None,
    ) -> None:
        super().__init__(label, namespace)
        #: This instance's password over TCP (a replica takes its primary's); never written to results.
        self.password = password or masking.new_secret()
        self.bindir_option = bindir
        self.folder: Path | None = None
        #: The OS user client tools run as (PostgreSQL's, where the harness runs as root).
        self.run_as: str | None = None
        #: The OS user the server runs as and owns its files, where the harness runs as root (never root itself).
        self.server_user: str | None = None
        #: Server settings beyond the stock ones (recorded in the evidence by the caller).
        self.settings = dict(settings or {})
        #: A data directory to start from (copied first) instead of initialising a new one.
        self.data_source = data_source
        self.with_namespace = create_namespace
        #: A physical backup to restore and start from: ``base.tar`` (PostgreSQL) or a prepared
        #: mariadb-backup folder (MariaDB).
        self.restore_from = restore_from
        #: PostgreSQL: start in targeted archive recovery (recovery.signal) and wait for promotion.
        self.recovery = recovery

    @property
    def data_dir(self) -> Path:
        assert self.folder is not None
        return self.folder / "data"

    def local_nodes(self) -> list[tuple[str, int, Path]]:
        if self.folder is None:
            return []
        pid_file = self.data_dir / "postmaster.pid" if self.dialect == "postgresql" else self.folder / "mariadbd.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return []
        return [(self.label, pid, self.data_dir)]

    def _copy_data(self, dest: Path) -> None:
        """Copy ``data_source`` to ``dest`` keeping owners and modes (cp -a, reflinks where possible)."""
        assert self.data_source is not None
        if not self.data_source.is_dir():
            raise ClauseproofError(f"the data directory to start from does not exist: {self.data_source}")
        self._run(
            ["cp", "-a", "--reflink=auto", str(self.data_source), str(dest)],
            "copying the data directory",
            as_owner=False,
        )

    def _make_folder(self, engine: str) -> Path:
        """The instance's folder: 0700 (as made by mkdtemp), owned by the server's OS user."""
        folder = make_private_folder(engine, self.server_user)
        self.folder = folder
        return folder

    def _private(self, path: Path, text: str) -> Path:
        """A file only the server's OS user (and root) may read."""
        path.write_text(text)
        path.chmod(0o600)
        if self.server_user:
            shutil.chown(path, user=self.server_user)
        return path

    def _run(self, args: list[str], what: str, timeout: float = START_TIMEOUT_S, *, as_owner: bool = True) -> None:
        kwargs: dict[str, Any] = {}
        if self.folder is not None:  # its own temp folder, whatever the caller's TMPDIR (a private one its user
            kwargs["env"] = masking.child_env({"TMPDIR": str(self.folder)})  # cannot enter)
        if self.run_as and as_owner:
            kwargs["user"] = self.run_as
            kwargs["group"] = pwd.getpwnam(self.run_as).pw_gid
        try:
            proc = subprocess.run(
                args, capture_output=True, text=True, timeout=timeout, cwd=self.folder, check=False, **kwargs
            )
        except subprocess.TimeoutExpired:
            raise ClauseproofError(f"{what} did not finish within {timeout:g} s", checked=" ".join(args)) from None
        if proc.returncode != 0:
            out = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
            raise ClauseproofError(
                f"{what} failed (exit {proc.returncode}): " + " / ".join(out), checked=" ".join(args)
            )

    def stop_server(self) -> None:
        """Stop the server but keep its folder (to copy the data directory, say)."""
        raise NotImplementedError

    def _cleanup_folder(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    # -- role: HostFiles (the server runs on this machine) ----------------------------------------------------
    def host_file(self, path: str) -> str:
        return Path(path).read_text(encoding="utf-8", errors="replace")

    # -- role: DataFiles (the at-rest scan reads the data directory in place) ------------------------------
    files_from = "the data directory in place"

    def data_files(self, work: Path) -> Path:
        return self.data_dir

    def storage_cipher(self) -> tuple[str, str | Text | None]:
        return "none: a plain server (the positive control that shows the scan finds plaintext)", "none"

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["folder"] = str(self.folder) if self.folder else None
        d["server_host"] = "the client machine (embedded)"
        return d
