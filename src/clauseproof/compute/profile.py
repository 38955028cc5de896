"""Which cloud the VM cases run against: ``--cp-cloud`` = ``simulated`` (default), ``embedded-openstack``, ``none``,
or a profile.

A Libcloud provider: the environment variables holding the credentials, the image and size, and the batch settings
(``provider = "openstack"`` without a ``cloud`` entry is Libcloud's OpenStack driver)::

    [cloud]
    provider = "openstack"          # a Libcloud Provider name; "fake" is the self-tests' fake cloud
    key_env = "OS_USERNAME"
    secret_env = "OS_PASSWORD"
    image = "<image id>"
    size = "<flavor id>"
    poll_interval_s = 1.0
    reach_port = 22                 # optional: "created" then also means a TCP connection succeeded

    [cloud.options]                 # passed to the Libcloud driver as they are
    ex_force_auth_url = "https://keystone.example:5000"
    ex_force_auth_version = "3.x_password"
    ex_tenant_name = "acceptance"

A vendor's OpenStack (``provider = "openstack"`` with a ``cloud`` entry) is reached through openstacksdk,
``clouds.yaml`` conventions::

    [cloud]
    provider = "openstack"
    cloud = "acceptance"            # an entry of clouds.yaml (OS_CLIENT_CONFIG_FILE, ~/.config/openstack/...)
    image = "cirros"                # what the batch cases boot
    size = "m1.tiny"                # the flavour
    second_image = "ubuntu-22.04"   # SX-ECS-2's change of operating system (a rebuild to it)
    network = "<network id>"        # optional: servers get a port on it (an address to keep across a rebuild)
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clauseproof.compute.base import ComputeDriver
from clauseproof.core.errors import ClauseproofError
from clauseproof.core.masking import from_env

_KEYS: dict[str, type | tuple[type, ...]] = {
    "provider": str,
    "key_env": str,
    "secret_env": str,
    "image": str,
    "size": str,
    "location": str,
    "options": dict,
    "create_options": dict,
    "concurrency": int,
    "count": int,
    "poll_interval_s": (int, float),
    "timeout_s": (int, float),
    "reach_port": int,
    # the fake cloud (self-tests)
    "state_file": str,
    "boot_s": (int, float),
    "api_latency_s": (int, float),
    "never_running": list,
    "fail_delete": list,
    "hosts": int,
    "quota": int,
    "groups": bool,
    # openstack (openstacksdk)
    "cloud": str,
    "second_image": str,
    "network": str,
    "access_matrix": str,
}


@dataclass(frozen=True)
class CloudSettings:
    """How the batch cases run: poll interval, time limit, VM count override, reachability port."""

    poll_interval_s: float = 0.5
    timeout_s: float = 600.0
    count: int | None = None
    reach_port: int | None = None
    profile: dict[str, Any] = field(default_factory=dict)


def load_cloud_profile(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ClauseproofError(
            f"cannot read the cloud profile {path}: {exc.strerror}", fix="check --cp-cloud"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ClauseproofError(
            f"the cloud profile {path} is not valid TOML: {exc}", fix="correct the line named"
        ) from None
    cloud = data.get("cloud")
    if not isinstance(cloud, dict) or set(data) != {"cloud"}:
        raise ClauseproofError(
            f"{path}: a cloud profile holds one section, [cloud]",
            fix="put provider, key_env, image, size under [cloud]",
        )
    for key, value in cloud.items():
        if key not in _KEYS:
            raise ClauseproofError(f"{path}: [cloud] {key}: unknown key", fix=f"the keys are {', '.join(_KEYS)}")
        want = _KEYS[key]
        if (isinstance(value, bool) and want is not bool) or not isinstance(value, want):
            raise ClauseproofError(f"{path}: [cloud] {key}: {value!r} has the wrong type", fix=f"give {key} a {want}")
    if "provider" not in cloud:
        raise ClauseproofError(f"{path}: [cloud] has no provider", fix='add provider = "openstack" (a Libcloud name)')
    return dict(cloud)


def cloud_settings(spec: str) -> CloudSettings:
    if spec in ("simulated", "none"):
        return CloudSettings()
    if spec == "embedded-openstack":
        return CloudSettings(poll_interval_s=0.5, timeout_s=300.0)
    p = load_cloud_profile(Path(spec))
    return CloudSettings(
        poll_interval_s=float(p.get("poll_interval_s", 0.5)),
        timeout_s=float(p.get("timeout_s", 600.0)),
        count=p.get("count"),
        reach_port=p.get("reach_port"),
        profile=p,
    )


def _env(path: str, name: str | None, what: str) -> str | None:
    if name is None:
        return None
    return from_env(name, f"the cloud profile {path}'s {what}")


def make_driver(
    spec: str, cache_dir: Path | None = None, progress: Callable[[str], None] | None = None
) -> ComputeDriver:
    """The driver ``--cp-cloud`` names (started: a simulator or the embedded cloud is running when this returns)."""
    if spec == "simulated":
        from clauseproof.compute.ec2sim import SimulatedEC2

        return SimulatedEC2()
    if spec == "embedded-openstack":
        from clauseproof.compute.openstack_driver import start_embedded_openstack

        return start_embedded_openstack(cache_dir, progress)
    p = load_cloud_profile(Path(spec))
    if p["provider"] == "openstack" and "cloud" in p:  # openstacksdk (without a clouds.yaml entry: Libcloud's)
        from clauseproof.compute.openstack_driver import vendor_openstack

        return vendor_openstack(spec, p)
    if p["provider"] == "fake":
        from clauseproof.compute.fake import FakeDriver

        return FakeDriver(
            Path(p.get("state_file", Path(spec).with_suffix(".state.json"))),
            boot_s=float(p.get("boot_s", 0.05)),
            api_latency_s=float(p.get("api_latency_s", 0.0)),
            never_running=tuple(p.get("never_running", ())),
            fail_delete=tuple(p.get("fail_delete", ())),
            hosts=int(p.get("hosts", 100)),
            quota=int(p.get("quota", 1000)),
            groups=bool(p.get("groups", True)),
        )
    from clauseproof.compute.libcloud_driver import LibcloudDriver, provider_class

    provider_class(p["provider"])  # an unknown provider is named before credentials are asked for
    for needed in ("image", "size", "key_env"):
        if needed not in p:
            raise ClauseproofError(f"{spec}: [cloud] has no {needed}", fix=f"add {needed} = ... under [cloud]")
    key = _env(spec, p["key_env"], "key")
    assert key is not None
    return LibcloudDriver(
        p["provider"],
        key,
        _env(spec, p.get("secret_env"), "secret"),
        image=p["image"],
        size=p["size"],
        location=p.get("location"),
        options=p.get("options"),
        create_options=p.get("create_options"),
        concurrency=int(p.get("concurrency", 10)),
    )
