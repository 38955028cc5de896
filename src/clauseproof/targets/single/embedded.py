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

import contextlib
import glob
import json
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from clauseproof.core import masking, reaper
from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.base import CONNECT_TIMEOUT_S, Endpoint, Target

log = logging.getLogger("clauseproof.embedded")

START_TIMEOUT_S = 60
#: PostgreSQL's client authentication, written into the data directory at every start: the socket (in a 0700
#: folder) without a password, TCP only with the instance's password, replication included.
PG_HBA = """# written by clauseproof at every start
local all all trust
local replication all trust
host all all 127.0.0.1/32 {method}
host replication all 127.0.0.1/32 {method}
"""
STOP_TIMEOUT_S = 30
FOLDER_PREFIX = "clauseproof-"


#: ``CLAUSEPROOF_PORT_RANGE=low-high``: :func:`free_port` takes ports from this range only (the self-tests give each
#: parallel worker a range of its own, below the kernel's ephemeral range, so that no two workers — and no client
#: socket's source port — take a port between its choice and the server's bind)
PORT_RANGE_ENV = "CLAUSEPROOF_PORT_RANGE"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    span = os.environ.get(PORT_RANGE_ENV, "")
    if span:
        import random

        low, high = (int(x) for x in span.split("-"))
        for port in random.sample(range(low, high + 1), min(200, high - low + 1)):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
        raise ClauseproofError(f"no free TCP port on 127.0.0.1 in {span} ({PORT_RANGE_ENV})")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed and waiting for its parent to reap it, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n    ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _names(cmdline: str, folder: str) -> bool:
    """Whether a command line names ``folder`` or a path inside it (not merely a longer name it begins)."""
    return re.search(re.escape(folder) + r"(/|\s|$)", cmdline) is not None


def _working_in(folder: str) -> list[int]:
    """Live processes whose working folder lies in ``folder`` or whose command line names it."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            cwd = ""
        if cwd == folder or cwd.startswith(folder + "/") or _names(_cmdline(int(entry)), folder):
            if _pid_alive(int(entry)):
                out.append(int(entry))
    return out


def kill_processes(pids: set[int], wait_s: float = 5.0) -> None:
    """SIGKILL ``pids``, wait until they are gone, and remove the System V segments they made (PostgreSQL's
    outlives a SIGKILLed postmaster)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while any(_pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    reaper.remove_shm(pids)


def _stale_owner(folder: str) -> bool:
    """Whether ``folder`` is one this user's harness made (a real ``clauseproof-*`` folder whose ``owner.json`` this
    user wrote: no other local user can make one, whatever they put in a shared temp folder) and its run is gone."""
    if not reaper.is_own_folder(folder):
        return False
    owner_file = Path(folder) / "owner.json"
    try:
        st = os.lstat(owner_file)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return False
        owner = json.loads(owner_file.read_text())
        pid = int(owner.get("pid", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return False
    return pid > 1 and not _pid_alive(pid)


def reap_stale(tmp: str | None = None) -> list[str]:
    """Stop and remove embedded servers whose owning process is gone; return what was reaped."""
    reaped = []
    bases = [tmp] if tmp else list(dict.fromkeys([tempfile.gettempdir(), SHARED_TMP]))
    for folder in [f for b in bases for f in glob.glob(os.path.join(b, FOLDER_PREFIX + "*"))]:
        if not _stale_owner(folder):
            continue
        # servers (postmaster.pid, mariadbd.pid), helpers (pgpool.pid, haproxy.pid), and every process working in
        # the folder or naming it (initdb and its single-user postgres, pg_ctl, tar, cp of a data directory)
        pids = set(_working_in(folder))
        for pid_file in [Path(folder) / "data" / "postmaster.pid", *Path(folder).glob("*.pid")]:
            try:
                pid = int(pid_file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if _pid_alive(pid) and _names(_cmdline(pid), folder):
                pids.add(pid)
        kill_processes(pids)
        shutil.rmtree(folder, ignore_errors=True)
        reaped.append(folder)
    reaped += reaper.reap_registered()  # registered process groups: proxies, load generators, tools
    for f in reaped:
        log.warning("removed what a crashed run left: %s", f)
    return reaped


#: where server folders go when the caller's temp folder is private (a server user could not reach its folder there)
SHARED_TMP = "/tmp"


def _others_may_enter(path: str) -> bool:
    """Whether a user other than the owner can traverse every folder from / down to ``path``."""
    p = Path(path).resolve()
    return all(os.stat(q).st_mode & 0o001 for q in [p, *p.parents])


def server_folder_base(owner: str | None) -> str:
    """The temp folder to make a server's folder in: the caller's, unless the server runs as another user who could
    not reach it there (a private ``TMPDIR``, 0700, as CI runners and careful users set): then the machine's
    ``/tmp`` (the server's folder itself stays 0700, its user's)."""
    base = tempfile.gettempdir()
    if not owner or os.geteuid() != 0 or _others_may_enter(base):
        return base
    if os.path.isdir(SHARED_TMP) and _others_may_enter(SHARED_TMP):
        return SHARED_TMP
    raise ClauseproofError(
        f"the temp folder {base} is private and {SHARED_TMP} cannot be used: the server's user {owner} could not "
        "reach its folder",
        fix=f"point TMPDIR at a folder every user may traverse (mode 0711 or 1777), e.g. TMPDIR={SHARED_TMP}",
    )


def make_private_folder(engine: str, owner: str | None = None) -> Path:
    """A folder ``clauseproof-<engine>-*`` that only ``owner`` (the server's OS user, where the harness runs
    as root) and root may enter, with the ``owner.json`` that lets a later run reap it."""
    folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{engine}-", dir=server_folder_base(owner)))  # 0700
    (folder / "owner.json").write_text(json.dumps({"pid": os.getpid(), "engine": engine}))
    if owner and os.geteuid() == 0:
        shutil.chown(folder, user=owner)
    return folder


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


class EmbeddedServer(Target):
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

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["folder"] = str(self.folder) if self.folder else None
        d["server_host"] = "the client machine (embedded)"
        return d


class EmbeddedPostgres(EmbeddedServer):
    """PostgreSQL from the machine's binaries: initdb, then pg_ctl start -w."""

    dialect = "postgresql"

    def __init__(
        self,
        label: str,
        namespace: str,
        bindir: Path | None,
        *,
        standby: bool = False,
        tcp_auth: str = "scram-sha-256",
        **kwargs: Any,
    ) -> None:
        super().__init__(label, namespace, bindir, **kwargs)
        #: Start as a hot standby (standby.signal) of the server its ``primary_conninfo`` setting names.
        self.standby = standby
        #: How TCP clients prove the password: scram-sha-256, or md5 where a proxy opens a connection to every
        #: node per client session (SCRAM's 4096 PBKDF2 rounds per connection add up there).
        self.tcp_auth = tcp_auth

    def preflight(self) -> None:
        self.bindir()

    def bindir(self) -> Path:
        candidates = (
            [self.bindir_option]
            if self.bindir_option
            else sorted(
                (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
                key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                reverse=True,
            )
        )
        if not self.bindir_option:
            candidates += [Path(p).parent for p in filter(None, [shutil.which("pg_ctl")])]
        return _find_binaries(("initdb", "pg_ctl", "postgres"), candidates, "--cp-pg-bindir", "postgresql")

    def start(self) -> None:
        bindir = self.bindir()
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise ClauseproofError(
                    "running as root, and there is no 'postgres' user to run initdb as",
                    fix="install the Debian package postgresql, which creates it, or run as a normal user",
                ) from None
            self.run_as = self.server_user = "postgres"
        folder = self._make_folder("pg")
        data = folder / "data"
        try:
            if self.restore_from is not None:
                data.mkdir(mode=0o700)
                if self.run_as:
                    shutil.chown(data, user=self.run_as)
                self._run(["tar", "-xf", str(self.restore_from), "-C", str(data)], "extracting the base backup")
                if self.recovery:
                    self._private(data / "recovery.signal", "")
            elif self.data_source is not None:
                self._copy_data(data)
                if self.run_as:
                    self._run(["chown", "-R", self.run_as, str(data)], "chown of the data directory", as_owner=False)
                (data / "postmaster.pid").unlink(missing_ok=True)
                if self.standby:
                    self._private(data / "standby.signal", "")
            else:
                self._init_pg(bindir, data)
            self._private(data / "pg_hba.conf", PG_HBA.format(method=self.tcp_auth))  # whatever the copy came with
            if self.settings:
                with open(data / "postgresql.conf", "a") as conf:
                    conf.write("\n# clauseproof: settings of this instance\n")
                    for k, v in self.settings.items():
                        conf.write(f"{k} = '{v}'\n")
            self._start_pg(bindir, data, folder)
            if not self.standby:  # a standby is read-only: it has its primary's password
                from psycopg import sql

                if self.recovery:
                    self._wait_promoted()
                with self._admin() as conn:
                    conn.execute(sql.SQL("SET password_encryption = {}").format(sql.Literal(self.tcp_auth)))
                    conn.execute(sql.SQL("ALTER ROLE postgres PASSWORD {}").format(sql.Literal(self.password)))
            if self.with_namespace:
                self.create_namespace()
        except BaseException:
            self.stop()
            raise

    @property
    def port(self) -> int:
        return self._ep().port

    def socket_args(self) -> list[str]:
        """Client-tool arguments that reach the server through its Unix socket (no password: only the server's
        user and root can enter the folder that holds it)."""
        assert self.folder is not None
        return ["-h", str(self.folder), "-p", str(self.port), "-U", "postgres"]

    def _admin(self) -> Any:
        """A superuser session through the socket, for the harness's own set-up."""
        import psycopg

        assert self.folder is not None
        return psycopg.connect(
            host=str(self.folder),
            port=self.port,
            user="postgres",
            dbname="postgres",
            connect_timeout=CONNECT_TIMEOUT_S,
            autocommit=True,
        )

    def _init_pg(self, bindir: Path, data: Path) -> None:
        args = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust"]
        args += ["--auth-host=scram-sha-256", "-E", "UTF8"]
        self._run([*args, "--no-locale", "--no-sync"], "initdb")

    def _start_pg(self, bindir: Path, data: Path, folder: Path, want_port: int | None = None) -> None:
        last: ClauseproofError | None = None
        for attempt in range(3):  # a port taken between probing and binding: try another
            port = want_port if want_port and attempt == 0 else free_port()
            try:
                self._run(
                    [
                        str(bindir / "pg_ctl"),
                        "-D",
                        str(data),
                        "-l",
                        str(folder / "server.log"),
                        "-w",
                        "-t",
                        str(START_TIMEOUT_S),
                        "-o",
                        f"-p {port} -h 127.0.0.1 -k {folder}",
                        "start",
                    ],
                    "pg_ctl start",
                    timeout=START_TIMEOUT_S + 5,
                )
                break
            except ClauseproofError as exc:
                last = ClauseproofError(
                    f"{exc.what}; server log:\n    {_tail(folder / 'server.log')}", checked=exc.checked
                )
        else:
            assert last is not None
            raise last
        self.endpoint = Endpoint(
            host="127.0.0.1", port=port, user="postgres", database="postgres", password=self.password
        )

    def start_again(self) -> None:
        """Start the stopped (or killed) server again on its data directory, on its old port where that is free
        (whoever connects through a relay to it keeps reaching it)."""
        assert self.folder is not None, "start_again needs a server started once"
        self._start_pg(self.bindir(), self.data_dir, self.folder, self.endpoint.port if self.endpoint else None)

    def tool(self, name: str) -> str:
        """PostgreSQL's client tools of the same installation as the server."""
        return str(self.bindir() / name)

    def physical_backup_command(self, out: Path) -> list[str]:
        """pg_basebackup into ``out``: tar format with the WAL inside ``base.tar``, fast checkpoint."""
        return [
            self.tool("pg_basebackup"),
            *self.socket_args(),
            "-D",
            str(out),
            "-Ft",
            "-X",
            "fetch",
            "-c",
            "fast",
        ]

    def _wait_promoted(self) -> None:
        """Wait until targeted recovery ends in promotion; a recovery that fails raises with the log."""
        import psycopg

        assert self.folder is not None
        deadline = time.monotonic() + START_TIMEOUT_S * 5
        while time.monotonic() < deadline:
            try:
                with self._admin() as conn, conn.cursor() as cur:
                    cur.execute("SELECT pg_is_in_recovery()")
                    row = cur.fetchone()
                    if row is not None and not row[0]:
                        return
            except psycopg.OperationalError:
                if not (self.data_dir / "postmaster.pid").exists():
                    raise ClauseproofError(
                        "the restored server stopped during recovery; server log:\n    "
                        + _tail(self.folder / "server.log", 6)
                    ) from None
            time.sleep(0.1)
        raise ClauseproofError("recovery did not finish in time; server log:\n    " + _tail(self.folder / "server.log"))

    def stop_server(self) -> None:
        """Stop the server cleanly but keep its folder (to copy the data directory, say)."""
        if self.folder is None or not (self.data_dir / "postmaster.pid").exists():
            return
        bindir = self.bindir()
        for mode in ("fast", "immediate"):
            try:
                self._run(
                    [
                        str(bindir / "pg_ctl"),
                        "-D",
                        str(self.data_dir),
                        "-m",
                        mode,
                        "-w",
                        "-t",
                        str(STOP_TIMEOUT_S),
                        "stop",
                    ],
                    f"pg_ctl stop -m {mode}",
                    timeout=STOP_TIMEOUT_S + 5,
                )
                break
            except ClauseproofError as exc:
                log.warning("stopping embedded PostgreSQL: %s", exc)

    def stop(self) -> None:
        if self.folder is None:
            return
        self.stop_server()
        self._cleanup_folder()
        self.endpoint = None


class EmbeddedMariaDB(EmbeddedServer):
    """MariaDB from the machine's binaries: mariadb-install-db, then mariadbd in the background."""

    dialect = "mysql"

    #: Data-at-rest encryption of the ``embedded-mariadb-encrypted`` variant: the file key
    #: management plugin with a key generated per instance (AES: MariaDB offers no SM4).
    ENCRYPTION_SETTINGS: ClassVar[dict[str, str]] = {
        "plugin_load_add": "file_key_management",
        "file_key_management_encryption_algorithm": "AES_CTR",
        "innodb_encrypt_tables": "FORCE",
        "innodb_encrypt_log": "ON",
        "innodb_encrypt_temporary_tables": "ON",
        "innodb_encryption_threads": "4",
        "encrypt_tmp_disk_tables": "ON",
        "encrypt_tmp_files": "ON",
        "encrypt_binlog": "ON",
        "aria_encrypt_tables": "ON",
        "log_bin": "binlog",
        "server_id": "1",
    }

    def __init__(
        self, label: str, namespace: str, bindir: Path | None, *, encrypted: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(label, namespace, bindir, **kwargs)
        self.proc: subprocess.Popen[bytes] | None = None
        self.encrypted = encrypted
        self.server_user = _mysql_user() if os.geteuid() == 0 else None  # mariadbd as mysql, never as root
        if encrypted:
            self.settings = {**self.ENCRYPTION_SETTINGS, **self.settings}

    def binaries(self) -> tuple[Path, Path]:
        if self.bindir_option:
            d = _find_binaries(
                ("mariadbd", "mariadb-install-db"), [self.bindir_option], "--cp-mariadb-bindir", "mariadb-server"
            )
            return d / "mariadbd", d / "mariadb-install-db"
        server = _find_binaries(
            ("mariadbd",),
            [Path("/usr/sbin"), Path("/usr/local/sbin"), Path("/usr/bin")],
            "--cp-mariadb-bindir",
            "mariadb-server",
        )
        install = _find_binaries(
            ("mariadb-install-db",),
            [Path("/usr/bin"), Path("/usr/local/bin"), server],
            "--cp-mariadb-bindir",
            "mariadb-server",
        )
        return server / "mariadbd", install / "mariadb-install-db"

    def start(self) -> None:
        server, _ = self.binaries()
        folder = self._make_folder("mariadb")
        data = folder / "data"
        user = [f"--user={self.server_user}"] if self.server_user else []
        try:
            if self.data_source is not None:
                self._copy_data(data)
            elif self.restore_from is not None:
                self._run(
                    [
                        "mariadb-backup",
                        "--no-defaults",
                        "--copy-back",
                        f"--target-dir={self.restore_from}",
                        f"--datadir={data}",
                    ],
                    "mariadb-backup --copy-back",
                    timeout=3600,
                )
            else:
                self.install_db(data)
            if self.server_user and (self.data_source is not None or self.restore_from is not None):
                self._run(["chown", "-R", self.server_user, str(data)], "chown of the data directory")
            if self.encrypted:
                key_file = self._private(folder / "keys.txt", f"1;{os.urandom(32).hex()}\n")  # never in results
                self.settings["file_key_management_filename"] = str(key_file)
            init_file = self._private(folder / "init.sql", self._accounts_sql())
            extra = [f"--{k.replace('_', '-')}={v}" for k, v in self.settings.items()]
            last = ""
            for _ in range(3):
                port = free_port()
                log_path = folder / "server.log"
                self.proc = subprocess.Popen(
                    [
                        str(server),
                        "--no-defaults",
                        f"--datadir={data}",
                        f"--socket={folder / 'mariadbd.sock'}",
                        f"--port={port}",
                        "--bind-address=127.0.0.1",
                        f"--pid-file={folder / 'mariadbd.pid'}",
                        f"--log-error={log_path}",
                        "--local-infile=1",
                        "--skip-name-resolve",
                        f"--init-file={init_file}",
                        f"--tmpdir={folder}",  # its own, whatever the caller's TMPDIR
                        *user,
                        *extra,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                    cwd=folder,
                )
                if self._wait_ready(port):
                    break
                last = _tail(log_path)
                self._kill()
            else:
                raise ClauseproofError(
                    f"mariadbd did not accept connections within {START_TIMEOUT_S} s; server log:\n    {last}",
                    checked=f"{server} in {folder}",
                )
            init_file.unlink()  # it holds the password; read at start, before the first connection
            self.endpoint = Endpoint(host="127.0.0.1", port=port, user="root", database="", password=self.password)
            if self.with_namespace:
                self.create_namespace()
        except BaseException:
            self.stop()
            raise

    def install_db(self, data: Path) -> None:
        """A new data directory at ``data`` (system tables; the root accounts get their password at start)."""
        _, install = self.binaries()
        self._run(
            [
                str(install),
                "--no-defaults",
                f"--datadir={data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *([f"--user={self.server_user}"] if self.server_user else []),
            ],
            "mariadb-install-db",
        )

    def _accounts_sql(self) -> str:
        """The ``--init-file`` run before the server accepts connections: root over TCP only with this
        instance's password, root through the socket (in the 0700 folder) without one, no other root account.
        It runs outside the binary log, so replicas and point-in-time replays never see it."""
        pw = self.password.replace("\\", "\\\\").replace("'", "\\'")
        return (
            "SET SESSION sql_log_bin = 0;\n"
            "DELETE FROM mysql.global_priv WHERE User = 'root' AND Host NOT IN ('localhost', '127.0.0.1');\n"
            "FLUSH PRIVILEGES;\n"
            f"CREATE OR REPLACE USER 'root'@'127.0.0.1' IDENTIFIED BY '{pw}';\n"
            "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n"
        )

    def _wait_ready(self, port: int) -> bool:
        import pymysql

        assert self.proc is not None and self.folder is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                pymysql.connect(unix_socket=str(self.folder / "mariadbd.sock"), user="root", connect_timeout=1).close()
                return True
            except pymysql.err.OperationalError:
                time.sleep(0.05)
        return False

    def _kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("mariadbd did not stop within %s s of SIGTERM; killing it", STOP_TIMEOUT_S)
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def physical_backup_command(self, out: Path) -> list[str]:
        """mariadb-backup --backup into ``out`` (to be prepared before a restore)."""
        return [
            "mariadb-backup",
            "--no-defaults",
            "--backup",
            f"--target-dir={out}",
            f"--socket={self.socket_path}",
            "--user=root",
        ]

    def socket_args(self) -> list[str]:
        """Client-tool arguments through the Unix socket (no password: only the server's user and root can enter
        the folder that holds it)."""
        return ["--no-defaults", f"--socket={self.socket_path}", "-u", "root"]

    @property
    def socket_path(self) -> Path:
        assert self.folder is not None
        return self.folder / "mariadbd.sock"

    def stop_server(self) -> None:
        """Stop the server cleanly (SIGTERM) but keep its folder."""
        self._kill()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._kill()
        self._cleanup_folder()
        self.endpoint = None
