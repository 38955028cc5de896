"""Settings: each is a CLI flag, an ini key and an environment variable, validated once.

Precedence: command line, then environment, then ini file, then the default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clauseproof.core.i18n import LANGS

FORMATS = ("html", "pdf", "docx")

EMBEDDED = ("embedded-postgresql", "embedded-mariadb")
#: Targets that can be named but are not part of the ``embedded`` alias.
VARIANTS = (
    "embedded-mariadb-encrypted",
    "embedded-postgresql-replicated",
    "embedded-mariadb-replicated",
    "embedded-postgresql-ha",
    "embedded-mariadb-galera",
    "embedded-postgresql-sync",
    "embedded-mariadb-pg-sync",
)
#: Replicated topologies (1 primary + 5 replicas behind a proxy), started beside the embedded default
#: by the replication suite.
REPLICATED = ("embedded-postgresql-replicated", "embedded-mariadb-replicated")
CONTAINERS = ("containers-postgresql", "containers-mariadb")
ALIASES = {"embedded": EMBEDDED, "containers": CONTAINERS}
URL_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb")


@dataclass(frozen=True)
class Option:
    """One setting: its flag, ini key, environment variable, default and parser."""

    name: str
    help: str
    default: str
    parse: Callable[[str], Any]

    @property
    def flag(self) -> str:
        return "--cp-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "clauseproof_" + self.name

    @property
    def env(self) -> str:
        return "CLAUSEPROOF_" + self.name.upper()


_URL_PASSWORD = re.compile(r"(://[^/:@\s]*:)([^@\s]+)(@)")


def mask_passwords(text: str) -> str:
    """``text`` with the password of every URL in it (``scheme://user:password@host``) replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\1***\3", text)


def url_passwords(targets: tuple[str, ...]) -> list[str]:
    """The passwords written inline in target URLs (to be kept out of everything the run writes)."""
    return [m.group(2) for t in targets for m in [_URL_PASSWORD.search(t)] if m]


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise ValueError(f"Could not parse value: {s!r} (expected a whole number)") from None
    if v < 1:
        raise ValueError(f"Could not parse value: {s!r} (must be at least 1)")
    return v


def _scale(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise ValueError(f"Could not parse value: {s!r} (expected a number such as 1 or 0.01)") from None
    if not 0 < v <= 1:
        raise ValueError(f"Could not parse value: {s!r} (must be > 0 and <= 1; 1 is full scale)")
    return v


def _int(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        raise ValueError(f"Could not parse value: {s!r} (expected a whole number)") from None


def _targets(s: str) -> tuple[str, ...]:
    out: list[str] = []
    for part in (p.strip() for p in s.split(",")):
        if not part:
            continue
        if part in ALIASES:
            out.extend(ALIASES[part])
        elif part in EMBEDDED or part in CONTAINERS or part in VARIANTS:
            out.append(part)
        elif "://" in part:
            scheme = part.split("://", 1)[0].split("+", 1)[0]
            if scheme not in URL_SCHEMES:
                raise ValueError(
                    f"Could not parse value: {part!r} (URL scheme {scheme!r} is not one of {', '.join(URL_SCHEMES)})"
                )
            out.append(part)
        elif part.endswith(".toml"):
            out.append(part)
        else:
            raise ValueError(
                f"Could not parse value: {part!r} (expected one of "
                f"{', '.join([*ALIASES, *EMBEDDED, *VARIANTS, *CONTAINERS])}, "
                "a URL such as postgresql://user@host:5432/db, or a profile file ending in .toml)"
            )
    if not out:
        raise ValueError(f"Could not parse value: {s!r} (no target named)")
    return tuple(dict.fromkeys(out))


def _cloud(s: str) -> str:
    if s in ("simulated", "none", "embedded-openstack") or s.endswith(".toml"):
        return s
    raise ValueError(
        f"Could not parse value: {s!r} (expected simulated (moto's EC2 on loopback), embedded-openstack (an "
        "OpenStack the harness starts on loopback), none, or a cloud profile file ending in .toml)"
    )


def _path(s: str) -> Path:
    return Path(os.path.expanduser(s))


def _opt_path(s: str) -> Path | None:
    return _path(s) if s else None


def _yes_no(s: str) -> bool:
    if s.lower() in ("yes", "true", "1"):
        return True
    if s.lower() in ("no", "false", "0", ""):
        return False
    raise ValueError(f"Could not parse value: {s!r} (expected yes or no)")


def _cpus(s: str) -> float:
    try:
        v = float(s or 0)
    except ValueError:
        raise ValueError(f"Could not parse value: {s!r} (expected a number of CPUs such as 2 or 1.5)") from None
    if v < 0:
        raise ValueError(f"Could not parse value: {s!r} (must be 0 for none, or more)")
    return v


def _memory(s: str) -> str:
    if s and not re.fullmatch(r"[0-9]+[bkmg]?", s.lower()):
        raise ValueError(f"Could not parse value: {s!r} (expected a size such as 512m or 4g)")
    return s.lower()


def _lang(s: str) -> str:
    if s not in LANGS:
        raise ValueError(f"Could not parse value: {s!r} (expected one of {', '.join(LANGS)})")
    return s


def _formats(s: str) -> tuple[str, ...]:
    parts = tuple(dict.fromkeys(p.strip() for p in s.split(",") if p.strip()))
    bad = [p for p in parts if p not in FORMATS]
    if bad or "html" not in parts:
        raise ValueError(
            f"Could not parse value: {s!r} (expected html, optionally with pdf and docx: e.g. html,pdf,docx)"
        )
    return parts


def default_cache() -> str:
    return str(Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "clauseproof")


OPTIONS = (
    Option(
        "target",
        "what the suites run against: embedded (default), embedded-postgresql, embedded-mariadb, "
        "embedded-mariadb-encrypted, embedded-postgresql-replicated, embedded-mariadb-replicated, "
        "embedded-postgresql-ha, embedded-mariadb-galera, containers, "
        "a SQLAlchemy-style URL, or a profile .toml; comma-separated",
        "embedded",
        _targets,
    ),
    Option(
        "cloud",
        "what the VM cases run against: simulated (default: moto's EC2 on loopback, results are not evidence), "
        "embedded-openstack (Debian's OpenStack on loopback, fake hypervisor), none, or a cloud profile .toml "
        "(provider = openstack, or a Libcloud provider)",
        "simulated",
        _cloud,
    ),
    Option("repeats", "how many times each timed load is repeated (default 3)", "3", _positive_int),
    Option(
        "scale",
        "fraction of the clause's data size to use (default 1 = full scale; "
        "a smaller scale gives NOT EVIDENCE verdicts)",
        "1",
        _scale,
    ),
    Option("seed", "seed of the deterministic data generator (default 20240101)", "20240101", _int),
    Option("results", "folder for evidence bundles (default <rootdir>/results)", "", _opt_path),
    Option("catalog", "clause catalog file (default: the one the package ships, clauseproof/catalog)", "", _opt_path),
    Option("cache", "cache folder for generated data (default ~/.cache/clauseproof)", "", _opt_path),
    Option("lang", "report language: zh, en or zh+en (default zh+en: both)", "zh+en", _lang),
    Option("tester", "the testing party named on the report's cover and sign-off (default: left blank)", "", str),
    Option(
        "formats",
        "report forms written beside evidence.json: any of html, pdf, docx, comma-separated (default all three)",
        "html,pdf,docx",
        _formats,
    ),
    Option(
        "signing_key",
        "Ed25519 key signing the run's manifest (default ~/.config/clauseproof/signing-ed25519.pem, "
        "made on first use; `clauseproof keygen` makes one)",
        "",
        _opt_path,
    ),
    Option(
        "destructive",
        "let the failover suite kill, stop, freeze or cut off the nodes of a profile target with the profile's "
        "[failover] commands, and the sync suite cut off or stop a task's target with its [sync] commands: yes or "
        "no (default no; the embedded clusters and stand-ins are the harness's own and need no opt-in)",
        "no",
        _yes_no,
    ),
    Option(
        "image_postgresql",
        "the PostgreSQL image of the containers target (default: the official postgres:15-bookworm where a registry "
        "answers, else one built here from the Debian mirror)",
        "",
        str,
    ),
    Option("image_mariadb", "the MariaDB image of the containers target (default: as for PostgreSQL)", "", str),
    Option("container_cpus", "CPU limit of each container, e.g. 2 (default: none)", "0", _cpus),
    Option("container_memory", "memory limit of each container, e.g. 4g (default: none)", "", _memory),
    Option(
        "probe_log",
        "a log `clauseproof probe` wrote (SX-SLA-1/2): judged for availability instead of the suite's own short "
        "probe, which is NOT EVIDENCE for a clause's period (default: none)",
        "",
        _opt_path,
    ),
    Option("pg_bindir", "folder with PostgreSQL's initdb and pg_ctl (default: searched)", "", _opt_path),
    Option("mariadb_bindir", "folder with mariadbd and mariadb-install-db (default: searched)", "", _opt_path),
)


@dataclass(frozen=True)
class Settings:
    """All settings of one run, validated."""

    targets: tuple[str, ...]
    cloud: str
    repeats: int
    scale: float
    seed: int
    results: Path
    catalog: Path
    cache: Path
    lang: str
    tester: str
    formats: tuple[str, ...]
    signing_key: Path | None
    destructive: bool
    image_postgresql: str
    image_mariadb: str
    container_cpus: float
    container_memory: str
    probe_log: Path | None
    pg_bindir: Path | None
    mariadb_bindir: Path | None
    rootdir: Path
