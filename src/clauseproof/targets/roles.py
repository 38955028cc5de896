"""The roles a target plays: what the suites and capabilities may ask of it, declared once.

A role is a small :class:`typing.Protocol`. The embedded stand-ins (in ``targets/``) and the vendor adapters (in
``<capability>/vendor.py``) both implement them, and mypy checks that each implementation is complete
(``tests/targets/test_roles.py`` holds one typed assignment per implementation). A suite or a fixture asks a target what
it can do — ``isinstance(t, PhysicalBackups)``, or a field the role declares — never what class it is.

Like Jepsen's optional ``Primary`` / ``LogFiles`` protocols, most roles are optional capabilities a target may
have; a case that needs one the target lacks says so in a NOT SHOWN or skipped row naming what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from clauseproof.core.commands import Phase
from clauseproof.core.digest import Dialect
from clauseproof.core.i18n import Text

if TYPE_CHECKING:
    from clauseproof.targets.base import Endpoint
    from clauseproof.targets.external import Profile
    from clauseproof.targets.topology import Topology

__all__ = [
    "AuditTrail",
    "ClusterNode",
    "ColumnarEngine",
    "DataFiles",
    "Database",
    "Diagnosis",
    "HACluster",
    "Health",
    "HostFiles",
    "HttpGateway",
    "InstanceClasses",
    "ModelGateway",
    "NodeAddresses",
    "PhysicalBackups",
    "PointInTimeRecovery",
    "Replicated",
    "SlowQuery",
    "SyncSystem",
]


# -- a database the suites run against -------------------------------------------------------------
@runtime_checkable
class Database(Protocol):
    """A database server (or a cluster behind one address) the suites run against; ``targets.base.Target``
    implements it for every kind of target."""

    @property
    def label(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def dialect(self) -> Dialect: ...
    @property
    def namespace(self) -> str: ...
    @property
    def simulated(self) -> bool: ...
    @property
    def profile(self) -> Profile | None:
        """What a vendor's profile declares (None for a target the harness starts)."""
        ...

    def connect(self, *, in_namespace: bool = True) -> Any: ...
    def connect_database(self, database: str) -> Any: ...
    def address(self) -> Endpoint: ...
    def tool(self, name: str) -> str: ...
    def describe(self) -> dict[str, Any]: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...


# -- storage: data files, physical backups, point-in-time recovery ----------------------------------
@runtime_checkable
class DataFiles(Protocol):
    """A target whose data files the harness can read (in place, or copied out of a container)."""

    @property
    def files_from(self) -> str:
        """How the files are reached, for the evidence."""
        ...

    def data_files(self, work: Path) -> Path:
        """The folder holding the server's data directory as it is now (``work`` is where to copy it to, if a
        copy is needed; the data directory itself when it can be read in place)."""
        ...

    def storage_cipher(self) -> tuple[str, str | Text | None]:
        """(what the evidence says of the at-rest cipher, the cipher's name when the harness configured it
        itself — None when only the vendor knows)."""
        ...


@runtime_checkable
class PhysicalBackups(Protocol):
    """A target that takes a physical backup of itself and restores one into a new instance of itself."""

    @property
    def backup_method(self) -> str:
        """The method's name in the evidence."""
        ...

    @property
    def backup_windows(self) -> tuple[Text | str, Text | str]:
        """What each timed window holds, in words: (backup, restore)."""
        ...

    def take_physical_backup(self, out: Path) -> list[Phase]:
        """Back the server up into ``out``; the timed phases."""
        ...

    def restore_physical_backup(self, backup: Path, work: Path) -> tuple[list[Phase], Database]:
        """Restore ``backup`` into a new, started instance (the caller stops it); the timed phases."""
        ...


@runtime_checkable
class PointInTimeRecovery(Protocol):
    """A target whose archive can be restored to a recorded point, into a new instance (SX-RDS-4)."""

    @property
    def pitr_method(self) -> str:
        """The procedure, in words, for the evidence."""
        ...

    def pitr_base_backup(self, work: Path) -> str:
        """Take the base backup the restores start from, into ``work / "base"``; the archive position it starts at
        ("" where the archive needs none)."""
        ...

    def pitr_point(self, cur: Any) -> tuple[str, str]:
        """(the server's clock, its archive position) now, read through ``cur``."""
        ...

    def pitr_close_archive(self, conn: Any) -> None:
        """Make the archive cover what was written so far (switch and wait, or flush)."""
        ...

    def pitr_beyond(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """A point past the end of the archive (its restore must be refused); ``requested`` says which, in words."""
        ...

    def pitr_restore(self, work: Path, archive: Path | None, point: Mapping[str, Any], start: str) -> Database:
        """A new, started instance restored to ``point`` (the caller stops it); a refusal raises
        :class:`~clauseproof.core.errors.ClauseproofError` whose text says so."""
        ...


# -- the service's own diagnosis: slow-query analysis and health status (SX-RDS-5) --------------------
@dataclass(frozen=True)
class SlowQuery:
    """One statement the slow-query analysis lists, with the time it lists for it."""

    text: str
    seconds: float


@dataclass(frozen=True)
class Health:
    """The health status as the service reports it: healthy or not, and each problem it names."""

    healthy: bool
    problems: tuple[str, ...] = ()


@runtime_checkable
class Diagnosis(Protocol):
    """A service that analyses its slow queries and reports its health (the embedded stand-ins from their own slow
    logs and catalogs; a vendor's through the commands of its profile's ``[diagnosis]``)."""

    @property
    def diagnosis_source(self) -> str:
        """Where the slow queries and the health status come from, in words, for the evidence."""
        ...

    def slow_query_start(self) -> float:
        """Get the slow-query analysis ready (on the harness's own server only); the threshold it counts as slow,
        in seconds. What it lists from now on is what :meth:`slow_queries` returns."""
        ...

    def slow_queries(self) -> list[SlowQuery]:
        """What the analysis lists since :meth:`slow_query_start`."""
        ...

    def health(self) -> Health:
        """The health status now (it must answer while the server's connections are all taken)."""
        ...

    def diagnosis_stop(self) -> None:
        """Undo what :meth:`slow_query_start` changed and close what the health status held open. Never raises."""
        ...


@runtime_checkable
class AuditTrail(Protocol):
    """A service that writes an audit trail of data changes (BZ-SEC-1): each entry a line of text naming user, time
    and statement (the embedded stand-ins through their engines' audit plugins; a vendor's through
    ``[service] audit_command``)."""

    @property
    def audit_source(self) -> str: ...

    def audit_start(self) -> None:
        """Turn the audit on (on the harness's own server only; a vendor's is on already); entries from now on."""
        ...

    def audit_entries(self) -> list[str]:
        """The audit trail's lines since :meth:`audit_start`."""
        ...

    def audit_stop(self) -> None:
        """Undo what :meth:`audit_start` changed. Never raises."""
        ...


@runtime_checkable
class InstanceClasses(Protocol):
    """A target that makes new instances of a given size (SX-RDS-S2): the containers stand-in, each instance a
    container with the class's CPU and memory limits and its engine's buffer sized to the class."""

    def class_missing(self, vcpus: int, memory_gb: int) -> str:
        """ "" when an instance of this size can be made here, otherwise why not."""
        ...

    def create_class(self, name: str, vcpus: int, memory_gb: int) -> Database:
        """A new, started instance of the class (the caller stops it)."""
        ...


@runtime_checkable
class HostFiles(Protocol):
    """A server that runs on this machine (the harness started it here): the files of its host are this machine's
    (BZ-DB-3 reads the CPU and OS facts from them)."""

    def host_file(self, path: str) -> str: ...


# -- topologies -------------------------------------------------------------------------------------
@runtime_checkable
class Replicated(Protocol):
    """A primary with read-only replicas behind a read endpoint (SX-RDS-2)."""

    def topology(self) -> Topology | None: ...


class ClusterNode(Protocol):
    """One node of a cluster, as its cluster names it."""

    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=ClusterNode)


class NodeAddresses(Protocol[N]):
    """Nodes each reached at an address of its own (what proving each node a distinct server needs)."""

    @property
    def dialect(self) -> str: ...
    @property
    def nodes(self) -> Sequence[N]: ...

    def connect_node(self, node: N | None, timeout: float = 2.0) -> Any: ...


@runtime_checkable
class HACluster(NodeAddresses[N], Protocol[N]):
    """A cluster the harness may break: a leader (or, multi-writer, the node a fault hits), faults applied to
    a node and healed, nodes added and removed (BZ-DB-1, SX-RDS-3)."""

    @property
    def label(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def threshold_source(self) -> Text | str:
        """Where the fault thresholds come from, for the evidence (in the report's language where a Text)."""
        ...

    def connect(self) -> Any: ...
    def leader(self) -> N | None: ...
    def sync_standby(self) -> N | None: ...
    def wait_ready(self, timeout: float = ...) -> float: ...
    def wait_rejoin(self, node: N, timeout: float = ..., since: float | None = None) -> float: ...
    def faults(self) -> dict[str, Text | str]:
        """Each fault → "" when it can be applied, otherwise why not."""
        ...

    def thresholds(self) -> dict[str, float]: ...
    def kill_node(self, node: N) -> float: ...
    def start_node(self, node: N) -> float: ...
    def freeze_node(self, node: N) -> float: ...
    def thaw_node(self, node: N) -> None: ...
    def isolate_node(self, node: N) -> float: ...
    def heal_node(self, node: N) -> None: ...
    def switchover(self, node: N) -> float: ...
    def add_node(self) -> N: ...
    def remove_node(self, node: N) -> None: ...
    def describe(self) -> dict[str, Any]: ...


# -- sync systems -----------------------------------------------------------------------------------
@runtime_checkable
class SyncSystem(Protocol):
    """A data-sync system: nodes of several engines, tasks that copy tables between them, faults on a task
    (the embedded stand-ins, or a vendor's through its profile)."""

    label: str
    #: The scenarios it can run (``capture``, ``topologies``, ``conversion``, ``outage``, ``bidirectional`` ...).
    scenarios: frozenset[str]

    @property
    def tasks(self) -> Mapping[str, Any]: ...

    def why_not(self, scenario: str) -> Text | str:
        """Why a scenario it cannot run is not shown on it."""
        ...

    def node_connect(self, node: str) -> Any: ...
    def dialect_of(self, node: str) -> str: ...
    def create_task(
        self,
        name: str,
        source: str,
        target: str,
        tables: list[str] | None = None,
        *,
        columns: dict[str, list[str]] | None = None,
        where: dict[str, str] | None = None,
        publish: str = "insert, update, delete",
        copy_data: bool = True,
        method: str = "builtin",
        insert_only: list[str] | None = None,
        forward_origins: bool = False,
    ) -> Any: ...
    def drop_task(self, name: str) -> None: ...
    def slot(self, name: str) -> dict[str, Any]: ...
    def fault(self, kind: str, task_name: str) -> None: ...
    def heal(self, kind: str, task_name: str) -> None: ...
    def fault_missing(self, kind: str) -> str:
        """ "" when the fault can be applied, otherwise why not."""
        ...

    def describe(self) -> dict[str, Any]: ...


class ColumnarEngine(Protocol):
    """A columnar engine a sync checker compares against (BZ-SYNC-3 across engines)."""

    def connect(self) -> Any: ...
    def version(self) -> str: ...


# -- gateways ---------------------------------------------------------------------------------------
class HttpGateway(Protocol):
    """An API gateway in front of the harness's streaming upstream (SX-EDAS-2/4/5)."""

    label: str

    @property
    def base_url(self) -> str: ...
    @property
    def stream_url(self) -> str: ...
    @property
    def direct_url(self) -> str: ...
    @property
    def limits_reach_upstream(self) -> bool: ...

    def limit_rules(self) -> list[dict[str, Any]]: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def describe(self) -> dict[str, Any]: ...


class ModelGateway(Protocol):
    """An OpenAI-compatible gateway in front of the harness's fake model vendors (SX-EDAS-3, token quotas)."""

    label: str
    api_key: str

    @property
    def openai_url(self) -> str: ...
    @property
    def vendors_url(self) -> str: ...

    def models(self) -> dict[str, str]: ...
    def limit_rules(self) -> list[dict[str, Any]]: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def describe(self) -> dict[str, Any]: ...
