"""What a cloud can do beyond the batch operations every :class:`~clauseproof.compute.base.ComputeDriver` has, declared
once: the VM cases ask ``isinstance(driver, Placement)``, never what class a driver is.  A case that needs a role the
cloud lacks says so in a NOT SHOWN or skipped row naming it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Where:
    """Where a server runs, as the admin API shows it: its host, the zone and rack of that host (from the host's
    aggregates), and the zone the server itself reports."""

    host: str | None
    zone: str | None
    rack: str | None
    reported_zone: str | None = None
    state: str = ""
    fault: str = ""


@dataclass(frozen=True)
class Flavour:
    name: str
    id: str
    vcpus: int
    ram_mb: int


@dataclass(frozen=True)
class Booted:
    """One server as the API shows it after a boot or a rebuild."""

    id: str
    name: str
    state: str
    image: str | None
    vcpus: int | None
    ram_mb: int | None
    flavour: str | None
    addresses: list[str] = field(default_factory=list)
    created: str | None = None
    host: str | None = None
    fault: str = ""


@runtime_checkable
class Placement(Protocol):
    """Server groups (``anti-affinity``, ``soft-anti-affinity``) and where each server landed."""

    def hosts(self) -> list[str]: ...
    def create_group(self, run_id: str, policy: str) -> str: ...
    def delete_group(self, group: str) -> None: ...
    def create_servers(
        self, run_id: str, names: list[str], *, group: str | None = None, flavour: str | None = None,
        zone: str | None = None, image: str | None = None,
    ) -> list[tuple[str, str, float]]: ...  # fmt: skip
    def where(self, ids: list[str]) -> dict[str, Where]: ...


@runtime_checkable
class Rebuild(Protocol):
    """A server's operating system changed in place (Nova's rebuild) to another image of the cloud."""

    second_image: str | None

    def rebuild(self, vid: str, image: str) -> None: ...
    def booted(self, vid: str) -> Booted: ...
    def image_id(self, name: str) -> str: ...


@runtime_checkable
class Flavours(Protocol):
    """The cloud's flavours, each bootable by name, the booted server's flavour read back."""

    boots_guests: bool

    def flavours(self) -> list[Flavour]: ...
    def booted(self, vid: str) -> Booted: ...
    def create_servers(
        self, run_id: str, names: list[str], *, group: str | None = None, flavour: str | None = None,
        zone: str | None = None, image: str | None = None,
    ) -> list[tuple[str, str, float]]: ...  # fmt: skip


@dataclass(frozen=True)
class Disk:
    """One disk of a server as the block-storage API shows it: ``role`` "system" (the server boots from it) or
    "data"; ``source`` the disk it was cloned from, as the cloud itself recorded it (None: made new)."""

    id: str
    role: str
    type: str | None
    zone: str | None
    source: str | None
    size_gb: int | None


@runtime_checkable
class Clone(Protocol):
    """A server with a system and a data disk, cloned into another zone with another flavour and another disk type
    (SX-ECS-7; judged in :mod:`clauseproof.compute.clone`)."""

    boots_guests: bool

    def clone_plan(self) -> dict[str, Any]: ...  # zones, flavours and disk types to clone from and to
    def create_cloneable(self, run_id: str, name: str, *, zone: str, flavour: str, disk_type: str) -> str: ...
    def clone_server(
        self, run_id: str, source: str, name: str, *, zone: str, flavour: str, disk_type: str
    ) -> str: ...  # fmt: skip
    def disks(self, vid: str) -> list[Disk]: ...
    def disk_zones(self) -> list[str]: ...
    def booted(self, vid: str) -> Booted: ...
    def where(self, ids: list[str]) -> dict[str, Where]: ...
    def delete_clone_set(self, run_id: str, timeout_s: float) -> list[str]: ...


@runtime_checkable
class RunCleanup(Protocol):
    """Everything a run made beyond its servers — server groups, volumes, stacks, users and projects — found by the
    run's name prefix and deleted (the cloud fixture's last step, and ``clauseproof cloud-cleanup``); returns what is
    still there."""

    def cleanup_run(self, run_id: str, timeout_s: float = 300.0) -> list[str]: ...


def facts(driver: Any) -> dict[str, Any]:
    """Which roles a driver plays (recorded in the evidence)."""
    return {r.__name__: isinstance(driver, r) for r in (Placement, Rebuild, Flavours, Clone)}


@dataclass(frozen=True)
class Outcome:
    """What the system did when a subject tried an operation: allowed (True), refused (False), or not tried
    (None: an error that is neither); ``detail`` says what the API answered."""

    allowed: bool | None
    detail: str


@runtime_checkable
class AccessControl(Protocol):
    """Users with roles in projects, made for a run, each trying operations through the system's API (SX-EDAS-1)."""

    def access_operations(self) -> tuple[str, ...]: ...
    def access_subjects(self, run_id: str, subjects: list[str]) -> dict[str, str]: ...
    def access_try(self, run_id: str, subject: str, operation: str) -> Outcome: ...
    def access_cleanup(self, run_id: str) -> list[str]: ...


@runtime_checkable
class Orchestration(Protocol):
    """Stacks from templates, read back through the orchestration service and each resource's own service
    (SX-ECS-5; the view and the judge are in :mod:`clauseproof.compute.orchestration`)."""

    image_name: str
    flavour_name: str

    def volume_type(self) -> str | None: ...
    def create_stack(self, run_id: str, name: str, template: dict[str, Any], timeout_s: float) -> tuple[str, str]: ...
    def stack_view(self, stack: tuple[str, str]) -> Any: ...
    def delete_stack(self, stack: tuple[str, str], timeout_s: float) -> list[str]: ...
