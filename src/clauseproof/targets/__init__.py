"""Targets: what the suites run against, made from a ``--cp-target`` entry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from clauseproof.core.settings import Settings
from clauseproof.targets.base import Target
from clauseproof.targets.clusters.galera import GaleraCluster
from clauseproof.targets.clusters.patroni import PatroniCluster
from clauseproof.targets.clusters.replicated import ReplicatedMariaDB, ReplicatedPostgres
from clauseproof.targets.containers.target import ContainerTarget
from clauseproof.targets.single.external import ExternalTarget
from clauseproof.targets.single.mariadb import EmbeddedMariaDB
from clauseproof.targets.single.postgres import EmbeddedPostgres
from clauseproof.targets.sync.binlog import BinlogSyncLab
from clauseproof.targets.sync.logical import LogicalSyncLab

__all__ = ["Target", "make_target"]


def make_target(spec: str, settings: Settings, namespace: str, progress: Callable[[str], None] = print) -> Target:
    """Build (not start) the target an entry of ``--cp-target`` names; ``progress`` hears of long set-ups (an
    image built on first use)."""
    if spec == "embedded-postgresql":
        return EmbeddedPostgres(spec, namespace, settings.pg_bindir)
    if spec == "embedded-mariadb":
        return EmbeddedMariaDB(spec, namespace, settings.mariadb_bindir)
    if spec == "embedded-mariadb-encrypted":
        return EmbeddedMariaDB(spec, namespace, settings.mariadb_bindir, encrypted=True)
    if spec == "embedded-postgresql-replicated":
        return ReplicatedPostgres(spec, namespace, settings.pg_bindir)
    if spec == "embedded-mariadb-replicated":
        return ReplicatedMariaDB(spec, namespace, settings.mariadb_bindir)
    if spec == "embedded-postgresql-ha":
        return PatroniCluster(spec, namespace, settings.pg_bindir)
    if spec == "embedded-mariadb-galera":
        return GaleraCluster(spec, namespace, settings.mariadb_bindir)
    if spec == "embedded-postgresql-sync":
        return LogicalSyncLab(spec, namespace, settings.pg_bindir)
    if spec == "embedded-mariadb-pg-sync":
        return BinlogSyncLab(spec, namespace, settings.pg_bindir, settings.mariadb_bindir)
    if spec.startswith("containers-"):
        postgres = spec.endswith("postgresql")
        return ContainerTarget(
            spec,
            namespace,
            "postgresql" if postgres else "mysql",
            image=settings.image_postgresql if postgres else settings.image_mariadb,
            cpus=settings.container_cpus,
            memory=settings.container_memory,
            progress=progress,
        )
    if "://" in spec:
        return ExternalTarget.from_url(spec, namespace)
    return ExternalTarget.from_profile(Path(spec), namespace)
