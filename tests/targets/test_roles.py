"""The roles of ``targets/roles.py``: every implementation is complete (mypy checks the typed functions below, which
are never called), and the runtime role queries the suites and fixtures make answer as the implementations say."""

from __future__ import annotations

from pathlib import Path

import pytest

from clauseproof.db_service.vendor import VendorDiagnosis
from clauseproof.failover.vendor import VendorCluster, VendorNode
from clauseproof.gateway.vendor import VendorGateway
from clauseproof.sync.vendor import VendorSync
from clauseproof.targets.clusters.galera import GaleraCluster, GaleraNode
from clauseproof.targets.clusters.patroni import Node, PatroniCluster
from clauseproof.targets.clusters.replicated import ReplicatedMariaDB, ReplicatedPostgres
from clauseproof.targets.containers.target import ContainerTarget
from clauseproof.targets.gateways.litellm import ModelGateway as EmbeddedModelGateway
from clauseproof.targets.gateways.nginx import EmbeddedGateway
from clauseproof.targets.roles import (
    ColumnarEngine,
    Database,
    DataFiles,
    Diagnosis,
    HACluster,
    HttpGateway,
    InstanceClasses,
    ModelGateway,
    PhysicalBackups,
    PointInTimeRecovery,
    Replicated,
    SyncSystem,
)
from clauseproof.targets.single.clickhouse import EmbeddedClickHouse
from clauseproof.targets.single.external import ExternalTarget
from clauseproof.targets.single.mariadb import EmbeddedMariaDB
from clauseproof.targets.single.postgres import EmbeddedPostgres
from clauseproof.targets.sync.binlog import BinlogSyncLab
from clauseproof.targets.sync.logical import LogicalSyncLab


# -- static: mypy fails here when an implementation lacks a member of its role or has it with another type --------
def _databases(a: EmbeddedPostgres, b: EmbeddedMariaDB, c: ContainerTarget, d: ExternalTarget) -> list[Database]:
    return [a, b, c, d]


def _files(a: EmbeddedPostgres, b: EmbeddedMariaDB, c: ContainerTarget) -> list[DataFiles]:
    return [a, b, c]


def _backups(a: EmbeddedPostgres, b: EmbeddedMariaDB, c: ContainerTarget) -> list[PhysicalBackups]:
    return [a, b, c]


def _pitr(a: EmbeddedPostgres, b: EmbeddedMariaDB) -> list[PointInTimeRecovery]:
    return [a, b]


def _diagnosis(a: EmbeddedPostgres, b: EmbeddedMariaDB, c: VendorDiagnosis) -> list[Diagnosis]:
    return [a, b, c]


def _classes(a: ContainerTarget) -> list[InstanceClasses]:
    return [a]


def _replicated(a: ReplicatedPostgres, b: ReplicatedMariaDB, c: ExternalTarget) -> list[Replicated]:
    return [a, b, c]


def _patroni(c: PatroniCluster) -> HACluster[Node]:
    return c


def _galera(c: GaleraCluster) -> HACluster[GaleraNode]:
    return c


def _vendor_cluster(c: VendorCluster) -> HACluster[VendorNode]:
    return c


def _sync(a: LogicalSyncLab, b: BinlogSyncLab, c: VendorSync) -> list[SyncSystem]:
    return [a, b, c]


def _columnar(c: EmbeddedClickHouse) -> ColumnarEngine:
    return c


def _http(a: EmbeddedGateway, b: VendorGateway) -> list[HttpGateway]:
    return [a, b]


def _models(a: EmbeddedModelGateway, b: VendorGateway) -> list[ModelGateway]:
    return [a, b]


# -- runtime: the queries the suites make ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "roles"),
    [
        (lambda: EmbeddedPostgres("p", "ns", None), {DataFiles, PhysicalBackups, PointInTimeRecovery, Diagnosis}),
        (lambda: EmbeddedMariaDB("m", "ns", None), {DataFiles, PhysicalBackups, PointInTimeRecovery, Diagnosis}),
        (lambda: ExternalTarget.from_url("postgresql://u@127.0.0.1:1/db", "ns"), {Replicated}),
        (lambda: ReplicatedPostgres("r", "ns", None), {Replicated}),
        (lambda: PatroniCluster("h", "ns", None), {HACluster}),
        (lambda: GaleraCluster("g", "ns", None), {HACluster}),
        (lambda: LogicalSyncLab("l", "ns", None), {SyncSystem}),
        (lambda: BinlogSyncLab("b", "ns", None, None), {SyncSystem}),
    ],
)
def test_a_target_answers_the_role_queries_its_class_implements(make: object, roles: set[type]) -> None:
    """Built, not started: a role query is about what a target can do, and needs nothing running."""
    assert callable(make)
    target = make()
    queried = {DataFiles, PhysicalBackups, PointInTimeRecovery, Replicated, HACluster, SyncSystem, Diagnosis}
    assert {r for r in queried if isinstance(target, r)} == roles
    assert isinstance(target, Database)


def test_a_target_the_harness_starts_declares_no_profile(tmp_path: Path) -> None:
    assert EmbeddedPostgres("p", "ns", None).profile is None
    profile = tmp_path / "v.toml"
    profile.write_text('[target]\nname = "v"\ndialect = "postgresql"\nhost = "127.0.0.1"\nuser = "u"\n'
                       '[sm4]\nencrypt_sql = "SELECT 1"\n')  # fmt: skip
    t = ExternalTarget.from_profile(profile, "ns")
    assert t.profile is not None and t.profile.sm4 == {"encrypt_sql": "SELECT 1"}
