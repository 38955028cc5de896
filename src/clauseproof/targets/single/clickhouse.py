"""An embedded ClickHouse server (Debian's ``clickhouse-server``, 18.16 on Debian 12): the columnar / MPP-style
engine BZ-SYNC-3's checker is shown on beside PostgreSQL and MariaDB.

Started from the machine's binary in a private ``clauseproof-clickhouse-*`` folder (data, logs, its own config
and users files), listening on a free loopback port (native protocol only), timezone UTC; registered with the
reaper, stopped by :meth:`stop`, on Ctrl-C/SIGTERM and by ``clauseproof reap``.  No other local user gets in:
the one user has a random password made at start (stored as its SHA-256 only), and where the harness runs as
root the server runs as Debian's ``clickhouse`` user, never as root (its ``url()`` and ``file()`` reach only what
that user may).  Clients connect through
``clickhouse-driver``'s DB-API (PyPI; it speaks the native protocol of old servers as of new ones).

What Debian's 18.16 lacks and the checker works around: ``DateTime`` holds whole seconds (a mapping into it states
precision 0), ``sum`` of ``UInt64`` wraps at 2^64 (the checker compares every side's checksum sums modulo 2^64),
``GROUP BY``/``ORDER BY`` take no column positions.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
from pathlib import Path
from typing import Any

from clauseproof.core import masking
from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.host.folders import free_port, make_private_folder
from clauseproof.targets.host.processes import OwnProcesses, wait_port

SERVER = "/usr/sbin/clickhouse-server"

CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{folder}/server.log</log><errorlog>{folder}/error.log</errorlog>
        <console>0</console></logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{port}</tcp_port>
    <path>{folder}/data/</path>
    <tmp_path>{folder}/tmp/</tmp_path>
    <user_files_path>{folder}/user_files/</user_files_path>
    <format_schema_path>{folder}/format_schemas/</format_schema_path>
    <users_config>{folder}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>53687091</mark_cache_size>
    <max_concurrent_queries>20</max_concurrent_queries>
</yandex>
"""

USERS = """<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>4000000000</max_memory_usage><max_threads>2</max_threads></default>
    </profiles>
    <users><default><password_sha256_hex>{password_sha256}</password_sha256_hex>
        <networks><ip>127.0.0.1</ip></networks><profile>default</profile>
        <quota>default</quota></default></users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default>
    </quotas>
</yandex>
"""


class EmbeddedClickHouse(OwnProcesses):
    label = "embedded-clickhouse"
    dialect = "clickhouse"

    def __init__(self) -> None:
        super().__init__()
        self.port = 0
        self.password = masking.new_secret()
        self.server_user: str | None = None

    def start(self) -> None:
        server = shutil.which("clickhouse-server") or SERVER
        if not Path(server).exists():
            raise ClauseproofError(
                "clickhouse-server is not installed: the columnar engine of BZ-SYNC-3 is Debian's ClickHouse",
                fix="apt-get install clickhouse-server (./run installs it; its own service is not started)",
            )
        try:
            import clickhouse_driver  # noqa: F401
        except ImportError:
            raise ClauseproofError(
                "clickhouse-driver is not installed", fix="pip install 'clauseproof[sync]' (./run installs it)"
            ) from None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("clickhouse")
            except KeyError:
                raise ClauseproofError(
                    "running as root, and there is no 'clickhouse' user to run the ClickHouse server as (it never "
                    "runs as root here)",
                    fix="install the Debian package clickhouse-server, which creates it, or run as a normal user",
                ) from None
            self.server_user = "clickhouse"
        self.folder = make_private_folder("clickhouse", self.server_user)
        try:
            self.port = free_port()
            (self.folder / "config.xml").write_text(CONFIG.format(folder=self.folder, port=self.port))
            digest = hashlib.sha256(self.password.encode()).hexdigest()
            (self.folder / "users.xml").write_text(USERS.format(password_sha256=digest))
            proc = self._spawn(
                "clickhouse", [server, f"--config-file={self.folder / 'config.xml'}"], self.folder / "out.log",
                pdeathsig=True, user=self.server_user,
            )  # fmt: skip
            wait_port(self.port, proc, "ClickHouse", self.folder / "error.log")
        except BaseException:
            self.stop()
            raise

    def connect(self) -> Any:
        from clickhouse_driver import dbapi

        return dbapi.connect(host="127.0.0.1", port=self.port, database="default", user="default",
                             password=self.password, connect_timeout=10, send_receive_timeout=300)  # fmt: skip

    def version(self) -> str:
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute("SELECT version()")
            return f"ClickHouse {cur.fetchall()[0][0]}"
        finally:
            conn.close()
