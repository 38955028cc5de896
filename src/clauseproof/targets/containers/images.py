"""Container images of the engines, built offline from the OS package mirror (``clauseproof images build``).

Air-gapped labs have a Debian mirror and no image registry.  The base image is a ``debootstrap --variant=minbase``
of this machine's Debian release from the mirror its ``/etc/apt/sources.list`` names, imported into the engine;
each engine's image installs Debian's server package on it (``targets/containers/dockerfiles/<engine>/``), keeping the
official images' contract (environment variables, an initialisation server without TCP, ``/docker-entrypoint-
initdb.d``), so testcontainers' PostgreSQL and MySQL containers start them as they start the official ones.

Images are cached by tag; the tag carries a digest of the Dockerfile and entrypoint, so a changed recipe is
rebuilt and an unchanged one is found in well under a second.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clauseproof.core.errors import ClauseproofError
from clauseproof.targets.containers import engine

RECIPES = Path(__file__).with_name("dockerfiles")
#: The images of a registry, where one is reachable (``--cp-image-*`` names any other).
OFFICIAL = {"postgresql": "postgres:15-bookworm", "mariadb": "mariadb:10.11"}
ENGINES = ("postgresql", "mariadb")
BUILD_TIMEOUT_S = 900
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Mirror:
    """Where Debian's packages come from, as this machine's apt sources say."""

    uri: str
    suite: str
    sources: dict[str, bytes]  # path inside the image → content (the host's apt sources, copied)
    hosts: dict[str, str]  # a mirror host name pinned in /etc/hosts → its address

    def describe(self) -> str:
        return f"{self.uri} {self.suite}"


def host_mirror(etc: Path = Path("/etc")) -> Mirror:
    """The first Debian mirror of this machine's apt sources, the release, and pinned mirror addresses."""
    sources: dict[str, bytes] = {}
    uris: list[str] = []
    for p in [etc / "apt/sources.list", *sorted((etc / "apt/sources.list.d").glob("*"))]:
        if not p.is_file() or p.suffix not in ("", ".list", ".sources"):
            continue
        text = p.read_text(errors="replace")
        sources[str(p.relative_to(etc.parent) if etc.is_absolute() else p)] = text.encode()
        uris += re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M)
        uris += [u for line in re.findall(r"^URIs:\s*(.+)$", text, re.M) for u in line.split()]
    uris = [u for u in uris if "security" not in u] or uris
    if not uris:
        raise ClauseproofError(
            "no Debian mirror is named in this machine's apt sources",
            checked=f"{etc}/apt/sources.list and {etc}/apt/sources.list.d/",
            fix="configure apt with the lab's Debian mirror",
        )
    release = (
        dict(line.split("=", 1) for line in (etc / "os-release").read_text().splitlines() if "=" in line)
        .get("VERSION_CODENAME", "bookworm")
        .strip('"')
    )
    hosts: dict[str, str] = {}
    names = {re.sub(r"^\w+://([^/:]+).*$", r"\1", u) for u in [*uris]}
    with_hosts = etc / "hosts"
    if with_hosts.exists():
        for line in with_hosts.read_text().splitlines():
            fields = line.split("#", 1)[0].split()
            for name in fields[1:]:
                if name in names and not fields[0].startswith("127."):
                    hosts[name] = fields[0]
    return Mirror(uris[0], release, sources, hosts)


def recipe_digest(engine_name: str) -> str:
    h = hashlib.sha256()
    for p in sorted((RECIPES / engine_name).iterdir()):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


def tags(mirror: Mirror) -> dict[str, str]:
    base = f"clauseproof/debian-{mirror.suite}:minbase"
    return {
        "base": base,
        "postgresql": f"clauseproof/postgresql:15-{mirror.suite}-{recipe_digest('postgresql')}",
        "mariadb": f"clauseproof/mariadb:10.11-{mirror.suite}-{recipe_digest('mariadb')}",
    }


def _exists(cl: Any, tag: str) -> bool:
    import docker

    try:
        cl.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def _base(cl: Any, mirror: Mirror, tag: str, progress: Progress) -> None:
    if not shutil.which("debootstrap"):
        raise ClauseproofError(
            "debootstrap is not installed: the base image is made from the Debian mirror with it",
            fix="apt-get install debootstrap (./run installs it)",
        )
    if os.geteuid() != 0:
        raise ClauseproofError(
            "the base image is made with debootstrap, which needs root",
            fix="run `clauseproof images build` once as root, or load an image with docker load",
        )
    with tempfile.TemporaryDirectory(prefix="clauseproof-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        progress(f"debootstrap --variant=minbase {mirror.suite} from {mirror.uri} ...")
        r = subprocess.run(
            ["debootstrap", "--variant=minbase", mirror.suite, str(rootfs), mirror.uri],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        if r.returncode != 0:
            tail = (r.stdout + r.stderr).strip().splitlines()[-5:]
            raise ClauseproofError(
                "debootstrap failed:\n    " + "\n    ".join(tail),
                checked=f"debootstrap --variant=minbase {mirror.suite} {rootfs} {mirror.uri}",
                fix="check that the mirror answers (apt-get update) and the disk has ~300 MB free",
            )
        for rel, content in mirror.sources.items():  # the host's sources: the same versions as the host's
            dest = rootfs / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(content)
        progress(f"importing the root file system as {tag} ...")
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, mode="w") as tar:
            tar.add(str(rootfs), arcname=".")
        repo, _, version = tag.partition(":")
        cl.api.import_image_from_file(str(archive), repository=repo, tag=version)  # a stream goes chunked: refused


def _build(cl: Any, engine_name: str, base: str, tag: str, mirror: Mirror, progress: Progress) -> None:
    progress(f"building {tag} from {RECIPES / engine_name} (Debian packages from {mirror.uri}) ...")
    last: list[str] = []
    try:
        stream = cl.api.build(
            path=str(RECIPES / engine_name),
            tag=tag,
            buildargs={"BASE": base},
            network_mode="host",
            extra_hosts=mirror.hosts or None,
            rm=True,
            forcerm=True,
            decode=True,
            labels={"org.clauseproof.recipe": recipe_digest(engine_name), "org.clauseproof.mirror": mirror.describe()},
        )
        for chunk in stream:
            if "error" in chunk:
                raise ClauseproofError(
                    f"building {tag} failed: {chunk['error'].strip()}\n    " + "\n    ".join(last[-8:]),
                    checked=f"docker build {RECIPES / engine_name}",
                    fix="check that the Debian mirror answers from a container (--network=host)",
                )
            line = str(chunk.get("stream", "")).rstrip()
            if line:
                last.append(line)
                if line.startswith("Step "):
                    progress(f"  {line[:110]}")
    except ClauseproofError:
        raise
    except Exception as exc:
        raise ClauseproofError(
            f"building {tag} failed: {type(exc).__name__}: {str(exc)[:300]}",
            checked=f"docker build {RECIPES / engine_name}",
        ) from None


def ensure_image(engine_name: str, progress: Progress = print, *, mirror: Mirror | None = None) -> tuple[str, str]:
    """The tag of this machine's image for ``engine_name``, built if missing; and how it was got, in words."""
    cl = engine.client()
    try:
        mirror = mirror or host_mirror()
        t = tags(mirror)
        if _exists(cl, t[engine_name]):
            return t[engine_name], "cached"
        started = time.perf_counter()
        if not _exists(cl, t["base"]):
            _base(cl, mirror, t["base"], progress)
        _build(cl, engine_name, t["base"], t[engine_name], mirror, progress)
        took = time.perf_counter() - started
        progress(f"built {t[engine_name]} in {took:.0f} s")
        return t[engine_name], f"built from {mirror.describe()} in {took:.0f} s"
    finally:
        cl.close()


def build_all(progress: Progress = print, *, force: bool = False) -> list[str]:
    """``clauseproof images build``: every engine's image (and the base), rebuilt with ``force``."""
    cl = engine.client()
    out = []
    try:
        mirror = host_mirror()
        t = tags(mirror)
        if force:
            for tag in (t["postgresql"], t["mariadb"], t["base"]):
                if _exists(cl, tag):
                    cl.images.remove(tag, force=True)
    finally:
        cl.close()
    for name in ENGINES:
        started = time.perf_counter()
        tag, how = ensure_image(name, progress, mirror=mirror)
        out.append(f"{tag}: {how} ({time.perf_counter() - started:.1f} s)")
    return out


def image_facts(cl: Any, ref: str) -> dict[str, Any]:
    """What the evidence records of an image: its name, id, repository digests, size and labels."""
    img = cl.images.get(ref)
    attrs = img.attrs
    return {
        "name": ref,
        "id": img.id,
        "repo_digests": attrs.get("RepoDigests") or [],
        "size_bytes": attrs.get("Size"),
        "created": attrs.get("Created"),
        "labels": (attrs.get("Config") or {}).get("Labels") or {},
    }


__all__ = ["OFFICIAL", "ensure_image", "host_mirror", "image_facts"]
