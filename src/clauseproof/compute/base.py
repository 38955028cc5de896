"""The compute driver interface the VM cases use, and the states they wait for.

A driver creates, acts on, lists and deletes the VMs of one run.  Every VM it creates carries
the run id (a tag where the API has tags, and always the name prefix ``cp-<run id>-``), so that
whatever a run created can be found and deleted later, by this run or by the cleanup command,
and nothing else is ever touched.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from clauseproof.core.i18n import Text, msg

PENDING, RUNNING, STOPPED, GONE, FAILED, OTHER = "pending", "running", "stopped", "gone", "failed", "other"
TAG = "clauseproof-run"


def vm_names(run_id: str, count: int, prefix: str = "vm") -> list[str]:
    return [f"cp-{run_id}-{prefix}{i:03d}" for i in range(1, count + 1)]


def name_prefix(run_id: str) -> str:
    return f"cp-{run_id}-"


@dataclass
class Vm:
    """One VM as the API shows it, with the state mapped to ours."""

    id: str
    name: str
    state: str
    #: The provider's host (or host hash) where the API exposes placement, else None.
    host: str | None = None
    address: str | None = None


class CloudError(Exception):
    """A provider refused a call; the message is the provider's.  Of a batch refused in part, ``accepted`` holds
    (name, id, accepted at) of what the provider took and ``refused`` each refused name with the provider's reason."""

    def __init__(
        self,
        message: str,
        *,
        accepted: list[tuple[str, str, float]] | None = None,
        refused: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.accepted = list(accepted or [])
        self.refused = dict(refused or {})


class Unsupported(Exception):
    """The provider (or its driver) has no such call; the message (a catalog sentence, ``text``) says which."""

    def __init__(self, text: Text | str) -> None:
        super().__init__(str(text))
        self.text = text


class ComputeDriver(ABC):
    name: str = "abstract"
    #: Results against a simulator are labelled "simulated — not evidence".
    simulated: bool = False
    #: False where the hypervisor boots nothing (Nova's fake driver): VM timings are then not evidence, and what
    #: a guest would see is not shown
    boots_guests: bool = True

    @abstractmethod
    def create(self, run_id: str, names: list[str], group: str | None = None) -> list[tuple[str, str, float]]:
        """Ask for ``names``; return (name, id, perf_counter when the API accepted it) per VM.

        One multi-count call where the API has it, otherwise bounded concurrent calls.  A refusal
        (quota, say) raises :class:`CloudError` with the provider's message, after whatever was
        accepted has been recorded so that the caller can delete it.
        """

    @abstractmethod
    def list_vms(self, run_id: str) -> list[Vm]:
        """Every VM of this run the API still shows (terminated ones as GONE)."""

    @abstractmethod
    def act(self, ids: list[str], action: str) -> dict[str, str]:
        """start / stop / reboot each VM; return id -> error for the calls that failed."""

    @abstractmethod
    def delete(self, ids: list[str]) -> dict[str, str]:
        """Delete each VM; return id -> error for the calls that failed."""

    def leftovers(self, run_id: str, ids: list[str]) -> dict[str, list[str]]:
        """Resources of this run the API still shows after deletion (ports, volumes, addresses)."""
        return {}

    def create_group(self, run_id: str, policy: str) -> str:
        """A server group with ``policy`` (strict anti-affinity); its id."""
        raise Unsupported(msg("driver_no_server_groups", name=self.name))

    def delete_group(self, group: str) -> None:  # noqa: B027 - a no-op unless the driver has groups
        """Delete a group :meth:`create_group` made."""

    def warm(self) -> None:  # noqa: B027 - a no-op unless the driver keeps connections
        """Open and authenticate what the calls need, before a timed window (outside it)."""

    def describe(self) -> dict[str, Any]:
        return {"driver": self.name, "simulated": self.simulated}

    def close(self) -> None:  # noqa: B027 - a no-op unless the driver started something
        """Release what the driver started (a simulator, say)."""
