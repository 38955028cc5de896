"""``embedded-mariadb``: a MariaDB server of the harness's own (see :mod:`clauseproof.targets.single.embedded`)."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from clauseproof.core.commands import Phase, timed
from clauseproof.core.errors import ClauseproofError
from clauseproof.core.i18n import Text, msg
from clauseproof.targets.base import Endpoint
from clauseproof.targets.host.folders import free_port
from clauseproof.targets.host.processes import _tail
from clauseproof.targets.single.embedded import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    EmbeddedServer,
    _find_binaries,
    _mysql_user,
)

log = logging.getLogger("clauseproof.embedded")


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

        from clauseproof.targets.pymysql_conn import connect as connect_mysql

        assert self.proc is not None and self.folder is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                connect_mysql(unix_socket=str(self.folder / "mariadbd.sock"), user="root", connect_timeout=1).close()
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

    # -- role: DataFiles -------------------------------------------------------------------------------
    def storage_cipher(self) -> tuple[str, str | Text | None]:
        if not self.encrypted:
            return super().storage_cipher()
        algorithm = self.settings["file_key_management_encryption_algorithm"]
        return (
            f"MariaDB data-at-rest encryption: file_key_management, {algorithm}, one generated key (never recorded)",
            msg("mariadb_cipher_aes"),
        )

    # -- role: PhysicalBackups (BZ-DB-4e/4f, SX-RDS-4) ---------------------------------------------------
    backup_method = "physical"
    backup_windows = (msg("window_mariadb_backup"), msg("window_mariadb_backup_restore"))

    def take_physical_backup(self, out: Path) -> list[Phase]:
        return [timed("mariadb-backup --backup", self.physical_backup_command(out))]

    def restore_physical_backup(self, backup: Path, work: Path) -> tuple[list[Phase], EmbeddedMariaDB]:
        phases = [_prepare(backup)]
        restored = EmbeddedMariaDB(
            "restored-physical", self.namespace, self.bindir_option, restore_from=backup, create_namespace=False
        )
        t0 = time.perf_counter()
        restored.start()  # a start that fails stops what it began
        what = "mariadb-backup --copy-back into an empty data directory and start mariadbd until it accepts connections"
        phases.append(Phase(what, round(time.perf_counter() - t0, 4), "mariadb-backup --copy-back; mariadbd"))
        return phases, restored

    # -- role: PointInTimeRecovery (SX-RDS-4) -------------------------------------------------------------
    pitr_method = "MariaDB: mariadb-backup + binary log (ROW) replayed by mariadb-binlog --stop-position=<GTID>"

    def pitr_base_backup(self, work: Path) -> str:
        timed("mariadb-backup --backup", self.physical_backup_command(work / "base"))
        _prepare(work / "base")
        return (work / "base" / "xtrabackup_binlog_info").read_text().split()[2]

    def pitr_point(self, cur: Any) -> tuple[str, str]:
        cur.execute("SELECT CAST(NOW(6) AS CHAR), @@gtid_binlog_pos")
        ts, pos = cur.fetchone()
        return str(ts), str(pos)

    def pitr_close_archive(self, conn: Any) -> None:
        with conn.cursor() as cur:
            cur.execute("FLUSH BINARY LOGS")

    def pitr_beyond(self, point: Mapping[str, Any]) -> dict[str, Any]:
        domain, server, seq = str(point["position"]).split("-")
        beyond = f"{domain}-{server}-{int(seq) + 1000}"
        return {**point, "position": beyond, "requested": beyond}

    def pitr_restore(self, work: Path, archive: Path | None, point: Mapping[str, Any], start: str) -> EmbeddedMariaDB:
        """A copy of the base backup, its binary log replayed from ``start`` up to the point's GTID; refused when
        the binary log does not reach it."""
        binlogs = sorted(str(p) for p in self.data_dir.glob("binlog.[0-9]*"))
        replay = work / "replay.sql"
        with open(replay, "wb") as out:
            args = ["mariadb-binlog", "--no-defaults", f"--start-position={start}",
                    f"--stop-position={point['position']}", *binlogs]  # fmt: skip
            proc = subprocess.run(args, stdout=out, stderr=subprocess.PIPE, check=False, timeout=600)
        err = proc.stderr.decode(errors="replace")
        if proc.returncode != 0 or "Did not reach stop position" in err:
            # what mysqlbinlog said, as PostgreSQL's refusal is its server's FATAL line (the note frames it)
            raise ClauseproofError(f"mysqlbinlog --stop-position={point['position']}: "
                                   f"{err.strip() or f'exit status {proc.returncode}'}")  # fmt: skip
        restored = EmbeddedMariaDB(
            "restored-pitr", self.namespace, self.bindir_option, restore_from=work / "base", create_namespace=False
        )
        try:
            restored.start()
            timed("mariadb < replay", ["mariadb", "--no-defaults", f"--socket={restored.socket_path}", "-u", "root"],
                  stdin=replay)  # fmt: skip
        except BaseException:
            restored.stop()
            raise
        return restored

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


def _prepare(backup: Path) -> Phase:
    """mariadb-backup --prepare of a backup folder, timed."""
    return timed("mariadb-backup --prepare", ["mariadb-backup", "--no-defaults", "--prepare", f"--target-dir={backup}"])
