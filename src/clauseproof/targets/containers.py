"""Targets in containers, through testcontainers, where a Docker engine answers.

Where none does, ``start()`` raises :class:`TargetUnavailable` within a second and the
cases on this target are skipped with that reason.
"""

from __future__ import annotations

import os
from typing import Any

from clauseproof.core.errors import TargetUnavailable
from clauseproof.targets.base import Endpoint, Target

IMAGES = {"postgresql": "postgres:15-bookworm", "mysql": "mariadb:10.11"}


def docker_unavailable_reason(timeout: float = 1.0) -> str | None:
    """Why no Docker engine can be used here, or None if one answers."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not os.path.exists("/var/run/docker.sock"):
        return "no Docker engine: DOCKER_HOST is not set and /var/run/docker.sock does not exist"
    try:
        import docker
    except ImportError:
        return "the docker and testcontainers packages are not installed (pip install 'clauseproof[containers]')"
    try:
        docker.from_env(timeout=max(1, int(timeout))).ping()
    except Exception as exc:
        return f"no Docker engine answers at {host or 'unix:///var/run/docker.sock'}: {type(exc).__name__}"
    return None


class ContainerTarget(Target):
    """PostgreSQL or MariaDB in a throw-away container."""

    kind = "containers"

    def __init__(self, label: str, namespace: str, dialect: str) -> None:
        super().__init__(label, namespace)
        self.dialect = "postgresql" if dialect == "postgresql" else "mysql"
        self.container: Any = None

    def start(self) -> None:
        reason = docker_unavailable_reason()
        if reason:
            raise TargetUnavailable(reason, fix="run where a Docker engine answers, or choose --cp-target=embedded")
        c: Any
        if self.dialect == "postgresql":
            from testcontainers.postgres import PostgresContainer

            c = PostgresContainer(IMAGES["postgresql"], username="postgres", password="clauseproof", dbname="postgres")
            port = 5432
        else:
            from testcontainers.mysql import MySqlContainer

            c = MySqlContainer(
                IMAGES["mysql"],
                username="root",
                root_password="clauseproof",
                password="clauseproof",
                dbname="clauseproof",
            )
            port = 3306
        self.container = c.start()
        self.endpoint = Endpoint(
            host=c.get_container_host_ip(),
            port=int(c.get_exposed_port(port)),
            user="postgres" if self.dialect == "postgresql" else "root",
            database="postgres" if self.dialect == "postgresql" else "",
            password="clauseproof",
        )
        self.create_namespace()

    def stop(self) -> None:
        if self.container is not None:
            try:
                self.container.stop()
            finally:
                self.container = None
        self.endpoint = None
