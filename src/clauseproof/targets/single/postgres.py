"""``embedded-postgresql``: a PostgreSQL server of the harness's own (see
:mod:`clauseproof.targets.single.embedded`)."""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clauseproof.core.commands import Phase, timed
from clauseproof.core.errors import ClauseproofError
from clauseproof.core.i18n import msg
from clauseproof.targets.base import CONNECT_TIMEOUT_S, Endpoint
from clauseproof.targets.host.folders import free_port, open_for
from clauseproof.targets.host.processes import _tail
from clauseproof.targets.single.embedded import START_TIMEOUT_S, STOP_TIMEOUT_S, EmbeddedServer, _find_binaries

PG_HBA = """# written by clauseproof at every start
local all all trust
local replication all trust
host all all 127.0.0.1/32 {method}
host replication all 127.0.0.1/32 {method}
"""

log = logging.getLogger("clauseproof.embedded")


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
        tls: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(label, namespace, bindir, **kwargs)
        #: Require TLS of every TCP client (a certificate of a CA of this instance; plaintext refused by pg_hba).
        self.tls = tls
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
            hba = PG_HBA.format(method=self.tcp_auth)
            if self.tls:
                hba = hba.replace("\nhost ", "\nhostssl ")
                self._tls_settings(folder)
            self._private(data / "pg_hba.conf", hba)  # whatever the copy came with
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

    def _tls_settings(self, folder: Path) -> None:
        from clauseproof.targets.clusters.tls import RunCA

        ca = RunCA(self.label)
        issued = ca.issue(folder, "server", ["127.0.0.1"], owner=self.server_user)
        self.tls_ca = ca.write_ca(folder, owner=self.server_user)
        self.settings.update(ssl="on", ssl_cert_file=str(issued.cert), ssl_key_file=str(issued.key),
                             ssl_min_protocol_version="TLSv1.2")  # fmt: skip

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

    # -- role: PhysicalBackups (BZ-DB-4e/4f, SX-RDS-4) ---------------------------------------------------
    backup_method = "physical"
    backup_windows = (msg("window_pg_basebackup"), msg("window_pg_basebackup_restore"))

    def take_physical_backup(self, out: Path) -> list[Phase]:
        phase = timed("pg_basebackup -Ft -X fetch -c fast", self.physical_backup_command(out))
        open_for(out, self.run_as)  # the restored server's user reads it (outside the window)
        return [phase]

    def restore_physical_backup(self, backup: Path, work: Path) -> tuple[list[Phase], EmbeddedPostgres]:
        restored = EmbeddedPostgres("restored-physical", self.namespace, self.bindir_option,
                                    restore_from=backup / "base.tar", settings={"archive_mode": "off"},
                                    create_namespace=False)  # fmt: skip
        t0 = time.perf_counter()
        restored.start()  # a start that fails stops what it began
        took = round(time.perf_counter() - t0, 4)
        what = (
            "extract base.tar into a new data directory and start the server until it accepts connections "
            "(pg_ctl start -w)"
        )
        return [Phase(what, took, f"tar -xf base.tar; pg_ctl start -w (port {restored.address().port})")], restored

    # -- role: PointInTimeRecovery (SX-RDS-4) -------------------------------------------------------------
    pitr_method = "PostgreSQL: base backup + WAL archive, recovery_target_time"

    def pitr_base_backup(self, work: Path) -> str:
        timed("pg_basebackup", self.physical_backup_command(work / "base"))
        open_for(work, self.run_as)
        return ""

    def pitr_point(self, cur: Any) -> tuple[str, str]:
        cur.execute("SELECT clock_timestamp()::text, pg_current_wal_lsn()::text")
        ts, pos = cur.fetchone()
        return str(ts), str(pos)

    def pitr_close_archive(self, conn: Any) -> None:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_walfile_name(pg_switch_wal())")
            (last_wal,) = cur.fetchone()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with conn.cursor() as cur:
                cur.execute("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
                (last,) = cur.fetchone()
            if last >= last_wal:
                return
            time.sleep(0.1)
        raise ClauseproofError(f"WAL segment {last_wal} was not archived within 60 s")

    def pitr_beyond(self, point: Mapping[str, Any]) -> dict[str, Any]:
        return {**point, "server_time": "2999-01-01 00:00:00+00", "requested": "2999-01-01 00:00:00+00"}

    def pitr_restore(self, work: Path, archive: Path | None, point: Mapping[str, Any], start: str) -> EmbeddedPostgres:
        assert archive is not None, "the WAL archive"
        restored = EmbeddedPostgres(
            "restored-pitr",
            self.namespace,
            self.bindir_option,
            restore_from=work / "base" / "base.tar",
            recovery=True,
            create_namespace=False,
            settings={
                "archive_mode": "off",
                "restore_command": f"cp {archive}/%f %p",
                "recovery_target_time": str(point["server_time"]),
                "recovery_target_action": "promote",
            },
        )
        restored.start()  # a start that fails stops what it began
        return restored

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
