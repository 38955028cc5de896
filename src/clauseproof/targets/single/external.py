"""External targets: a server that already runs, reached by URL or by a profile file.

The harness works only inside its own namespace there (schema or database
``clauseproof_<run>``) and drops only that.  Passwords come from the environment: a URL's
password from ``CLAUSEPROOF_PASSWORD`` (a password written in the URL is accepted but never
recorded), a profile's from the variable its ``password_env`` names.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clauseproof.core import masking
from clauseproof.core.commands import template_problem
from clauseproof.core.errors import ClauseproofError, first_line
from clauseproof.core.i18n import msg
from clauseproof.core.masking import from_env
from clauseproof.targets import sections
from clauseproof.targets.base import Endpoint, Target, check_reachable
from clauseproof.targets.clusters.topology import Node, Topology, pool_nodes

DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
_PROFILE_KEYS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "target": {
        "name": str,
        "dialect": str,
        "host": str,
        "port": int,
        "user": str,
        "password_env": str,
        "database": str,
        "pass_env": list,
    },
    "server": {
        "cpu": str,
        "arch": str,
        "os": str,
        "nodes": int,
        "memory_gb": (int, float),
        "notes": str,
        "backup_retention_days": int,
    },
    "commands": {"backup": str, "restore": str, "kill_node": str, "copy_files": str, "show_backup": str},
    "sm4": {"encrypt_sql": str},
    "replication": {
        "primary": str,
        "replicas": list,
        "read_endpoint": str,
        "primary_weight": (int, float),
        "replica_weights": list,
        "proxy": str,
    },
}
_REQUIRED = ("dialect", "host", "user")


@dataclass(frozen=True)
class Profile:
    """A vendor's system, as a profile file declares it."""

    path: Path
    name: str
    dialect: str
    host: str
    port: int
    user: str
    password_env: str | None
    database: str
    server: dict[str, Any] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)
    #: SQL that encrypts one block with the target's own SM4: placeholders {key_hex} and
    #: {plaintext_hex} (32 hex digits each); it returns the ciphertext as hex.
    sm4: dict[str, str] = field(default_factory=dict)
    #: The replicated topology behind the target (SX-RDS-2): "host:port" of the primary and of
    #: each replica, the read endpoint when it differs from the target's, and read weights.
    replication: dict[str, Any] = field(default_factory=dict)
    #: Sections of the capabilities (``[column_encryption]``, say), each as its capability parsed it
    #: (:mod:`clauseproof.targets.sections`); absent sections are not listed.
    sections: dict[str, Any] = field(default_factory=dict)
    #: ``[documents]``: clause id → files that document it (warranties, licences, certificates, third-party
    #: reports); each is reported as DOCUMENTED with its SHA-256, never as PASS.
    documents: dict[str, list[Path]] = field(default_factory=dict)

    def section(self, name: str) -> Any:
        """A capability's section as it parsed it, or None when the profile has none."""
        return self.sections.get(name)


def _line(text: str, section: str, key: str | None) -> int:
    lines = text.splitlines()
    in_section = False
    for i, ln in enumerate(lines, 1):
        s = ln.strip()
        if s.startswith("["):
            in_section = s == f"[{section}]"
            if in_section and key is None:
                return i
            continue
        if in_section and key is not None and re.match(rf"{re.escape(key)}\s*=", s):
            return i
    return 0


#: what the harness fills in a [commands] template (backup, restore, copy_files)
COMMAND_PLACEHOLDERS = ("host", "port", "user", "database", "output_dir", "new_database", "namespace")


def load_profile(path: Path) -> Profile:
    """Read and validate a profile; errors name the file, line and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ClauseproofError(
            f"cannot read the target profile {path}: {exc.strerror}", fix="check the path given to --cp-target"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ClauseproofError(
            f"the target profile {path} is not valid TOML: {exc}", fix="correct the line named"
        ) from None

    def err(section: str, key: str | None, msg: str, fix: str) -> ClauseproofError:
        where = f"{path}:{_line(text, section, key)}"
        what = f"[{section}]" + (f" {key}" if key else "")
        return ClauseproofError(f"{where}: {what}: {msg}", checked=f"the target profile {path}", fix=fix)

    known = {**_PROFILE_KEYS, **{name: sec.keys for name, sec in sections.registered().items()}}
    for section, body in data.items():
        if section not in known and section != "documents":
            raise err(section, None, "unknown section", f"use only [{'], ['.join([*known, 'documents'])}]")
        if not isinstance(body, dict):
            raise err(section, None, "must be a table", f"write it as [{section}] with keys below it")
        if section == "documents":
            continue
        for key, value in body.items():
            allowed = known[section]
            if key not in allowed:
                raise err(section, key, "unknown key", f"the keys of [{section}] are {', '.join(allowed)}")
            want = allowed[key]
            wants_bool = want is bool or (isinstance(want, tuple) and bool in want)
            if (isinstance(value, bool) and not wants_bool) or not isinstance(value, want):
                names = " or ".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
                raise err(section, key, f"{value!r} is not of type {names}", f"give {key} a {names} value")
    target = data.get("target")
    if target is None:
        raise ClauseproofError(
            f"{path}: no [target] section",
            checked=f"the target profile {path}",
            fix="add [target] with dialect, host, port, user, password_env and database",
        )
    for key in _REQUIRED:
        if key not in target:
            raise err("target", None, f"missing key {key!r}", f"add {key} = ... under [target]")
    dialect = target["dialect"]
    if dialect not in DEFAULT_PORTS:
        raise err(
            "target",
            "dialect",
            f"{dialect!r} is not one of postgresql, mysql",
            'set dialect = "postgresql" or "mysql" (MySQL, MariaDB, TDSQL and other MySQL-protocol systems)',
        )
    for name, template in data.get("commands", {}).items():
        problem = template_problem(template, COMMAND_PLACEHOLDERS)
        if problem:
            raise err(
                "commands",
                name,
                problem,
                "write the placeholders bare and without quotes around them, e.g. --user {user}",
            )
    passed = target.get("pass_env", [])
    if not all(isinstance(n, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) for n in passed):
        raise err("target", "pass_env", f"{passed!r} is not a list of variable names", 'pass_env = ["VENDOR_TOKEN"]')
    masking.pass_env(passed)  # the vendor's commands see these; no other variable of the harness's environment
    port = target.get("port", DEFAULT_PORTS[dialect])
    if not 0 < port < 65536:
        raise err("target", "port", f"{port} is not a TCP port", "use a port between 1 and 65535")
    return Profile(
        path=path,
        name=target.get("name", path.stem),
        dialect=dialect,
        host=target["host"],
        port=port,
        user=target["user"],
        password_env=target.get("password_env"),
        database=target.get("database", "postgres" if dialect == "postgresql" else ""),
        server=dict(data.get("server", {})),
        commands=dict(data.get("commands", {})),
        sm4=dict(data.get("sm4", {})),
        replication=_check_replication(data.get("replication", {}), err),
        sections={name: sec.parse(data[name], err) for name, sec in sections.registered().items() if data.get(name)},
        documents=_check_documents(path, data.get("documents", {}), err),
    )


def _check_documents(path: Path, body: dict[str, Any], err: Callable[..., ClauseproofError]) -> dict[str, list[Path]]:
    """``[documents]``: clause id → files (relative to the profile) that document it; every file must exist and lie
    inside the profile's folder (no absolute path, no ``..`` and no link out of it: what goes into a signed bundle
    is only what the profile's author put beside it, never the tester's signing key or another file of theirs)."""
    out: dict[str, list[Path]] = {}
    base = path.parent.resolve()
    for clause_id, value in body.items():
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise err(
                "documents", clause_id, f"{value!r} is not a file name or a list of them", 'write "ID" = ["file"]'
            )
        outside = [n for n in names if Path(n).is_absolute() or not (base / n).resolve().is_relative_to(base)]
        if outside:
            raise err(
                "documents", clause_id, f"{', '.join(map(repr, outside))} lies outside the profile's folder {base}",
                "copy the document into the profile's folder (or below it) and name it relative to the profile",
            )  # fmt: skip
        files = [(base / n).resolve() for n in names]
        if len({f.name for f in files}) < len(files):
            raise err("documents", clause_id, "two files of the same name", "give each document its own name")
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise err(
                "documents", clause_id, f"no such file: {', '.join(missing)}", "name files relative to the profile"
            )
        out[clause_id] = files
    return out


def _host_port(value: Any) -> tuple[str, int] | None:
    if not isinstance(value, str) or ":" not in value:
        return None
    host, _, port = value.rpartition(":")
    return (host, int(port)) if host and port.isdigit() and 0 < int(port) < 65536 else None


def _check_replication(rep: dict[str, Any], err: Any) -> dict[str, Any]:
    """Validate [replication]: every endpoint "host:port", weights numbers matching the replicas."""
    if not rep:
        return {}
    for key in ("primary", "read_endpoint"):
        if key in rep and _host_port(rep[key]) is None:
            raise err("replication", key, f"{rep[key]!r} is not host:port", f'write it as {key} = "10.0.0.10:5432"')
    replicas = rep.get("replicas")
    if replicas is not None and (not replicas or any(_host_port(r) is None for r in replicas)):
        raise err(
            "replication",
            "replicas",
            f"{replicas!r} is not a non-empty list of host:port",
            'write it as replicas = ["10.0.0.11:5432", "10.0.0.12:5432"] (each replica\'s own endpoint)',
        )
    weights = rep.get("replica_weights")
    if weights is not None:
        if replicas is None or len(weights) != len(replicas):
            raise err(
                "replication", "replica_weights", "needs one weight per replica", "list as many weights as replicas"
            )
        if any(isinstance(w, bool) or not isinstance(w, int | float) or w < 0 for w in weights):
            raise err("replication", "replica_weights", f"{weights!r} are not all numbers >= 0", "use numbers >= 0")
    if replicas is not None and "read_endpoint" not in rep and "primary" not in rep:
        raise err(
            "replication",
            None,
            "the target endpoint is the splitting proxy, so the primary's own endpoint is needed",
            'add primary = "host:port" (the primary reached directly, for its counters), or read_endpoint = '
            '"host:port" when the target endpoint is the primary itself (two-endpoint form)',
        )
    return dict(rep)


def parse_url(url: str, password_env: str = "CLAUSEPROOF_PASSWORD") -> tuple[str, Endpoint]:
    """(dialect, endpoint) from a SQLAlchemy-style URL; the password from the environment (``password_env``)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url)
    except ArgumentError:
        raise ClauseproofError(
            f"cannot parse the target URL {url!r}",
            fix="write it as postgresql://user@host:5432/dbname or mysql://user@host:3306/",
        ) from None
    backend = u.get_backend_name()
    dialect = "postgresql" if backend == "postgresql" else "mysql"
    if not u.host:
        raise ClauseproofError(
            f"the target URL {u.render_as_string(hide_password=True)!r} names no host",
            fix="write it as postgresql://user@host:5432/dbname",
        )
    password = u.password if u.password is not None else from_env(password_env, "", required=False)
    masking.remember(None if password is None else str(password))
    ep = Endpoint(
        host=u.host,
        port=u.port or DEFAULT_PORTS[dialect],
        user=u.username or ("postgres" if dialect == "postgresql" else "root"),
        database=u.database or ("postgres" if dialect == "postgresql" else ""),
        password=None if password is None else str(password),
    )
    return dialect, ep


class ExternalTarget(Target):
    """A server that already runs; the harness touches only its own namespace there."""

    kind = "external"

    def __init__(
        self, label: str, namespace: str, dialect: str, endpoint: Endpoint, profile: Profile | None = None
    ) -> None:
        super().__init__(label, namespace)
        self.dialect = "postgresql" if dialect == "postgresql" else "mysql"
        self._endpoint = endpoint
        self.profile = profile

    def preflight(self) -> None:
        ep = self._endpoint
        check_reachable(ep.host, ep.port, f"the {self.dialect} target {self.label}")

    @classmethod
    def from_url(cls, url: str, namespace: str) -> ExternalTarget:
        dialect, ep = parse_url(url)
        return cls(f"external-{dialect}-{ep.host}:{ep.port}", namespace, dialect, ep)

    @classmethod
    def from_profile(cls, path: Path, namespace: str) -> ExternalTarget:
        p = load_profile(path)
        password = None
        if p.password_env:
            password = from_env(p.password_env, f"the profile {path}'s password")
        ep = Endpoint(host=p.host, port=p.port, user=p.user, database=p.database, password=password)
        return cls(p.name, namespace, p.dialect, ep, profile=p)

    def start(self) -> None:
        ep = self._endpoint
        check_reachable(ep.host, ep.port, f"the {self.dialect} target {self.label}")
        self.endpoint = ep
        try:
            self.create_namespace()
        except ClauseproofError:
            raise
        except Exception as exc:  # driver errors: authentication, privileges
            self.endpoint = None
            raise ClauseproofError(
                f"connected to {ep.host}:{ep.port} but could not create the harness's namespace "
                f"{self.namespace}: {first_line(exc)}",
                checked=f"user {ep.user!r}, database {ep.database!r}",
                fix="check the user, the password variable and that the user may create a "
                + ("schema in that database" if self.dialect == "postgresql" else "database"),
            ) from None

    def stop(self) -> None:
        try:
            if self.endpoint is not None:
                self.drop_namespace()
        except Exception as exc:  # best effort, but said
            import logging

            logging.getLogger("clauseproof.external").warning(
                "could not drop %s on %s: %s", self.namespace, self.label, exc
            )
        self.endpoint = None

    def topology(self) -> Topology | None:
        """The replicated topology the profile declares ([replication]), or None.

        Without ``replicas``, a PostgreSQL target behind pgpool-II is asked (SHOW POOL_NODES).
        """
        rep = self.profile.replication if self.profile else {}
        if not rep:
            return None
        ep = self._ep()

        def at(value: str) -> Endpoint:
            hp = _host_port(value)
            assert hp is not None  # validated with the profile
            return Endpoint(hp[0], hp[1], ep.user, ep.database, password=ep.password)

        replicas = list(rep.get("replicas", []))
        weights = [float(w) for w in rep.get("replica_weights", [])]
        source = msg("topology_declared")
        primary = at(rep["primary"]) if "primary" in rep else ep
        if not replicas:
            replicas, weights, primary_at = self._pool_nodes()
            primary = at(primary_at)
            source = msg("topology_from_pgpool")
        weights = weights or [1.0] * len(replicas)
        read = at(rep["read_endpoint"]) if "read_endpoint" in rep else ep
        return Topology(
            dialect=self.dialect,
            namespace=self.namespace,
            primary=Node("primary", primary, float(rep.get("primary_weight", 0))),
            replicas=[Node(f"replica{i}", at(r), w) for i, (r, w) in enumerate(zip(replicas, weights, strict=True), 1)],
            write=ep,
            read=read,
            automatic_split="read_endpoint" not in rep,
            proxy=str(rep.get("proxy", "declared by the vendor (not named in the profile)")),
            source=source,
        )

    def _pool_nodes(self) -> tuple[list[str], list[float], str]:
        if self.dialect != "postgresql":
            raise ClauseproofError(
                f"{self.label}: [replication] names no replicas",
                fix='list them: replicas = ["host:port", ...]',
            )
        try:
            with self.connect(in_namespace=False) as conn:
                rows = pool_nodes(conn)
        except Exception as exc:
            raise ClauseproofError(
                f"{self.label}: [replication] names no replicas, and SHOW POOL_NODES failed ({first_line(exc)})",
                checked="the target endpoint, asked as a pgpool-II endpoint",
                fix='list the replicas: replicas = ["host:port", ...] under [replication]',
            ) from None
        primary = [f"{r['hostname']}:{r['port']}" for r in rows if r.get("role") == "primary"]
        standbys = [r for r in rows if r.get("role") == "standby"]
        return (
            [f"{r['hostname']}:{r['port']}" for r in standbys],
            [float(r.get("lb_weight") or 0) for r in standbys],
            primary[0] if primary else f"{self._ep().host}:{self._ep().port}",
        )

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self.profile is not None:
            d["profile"] = str(self.profile.path)
            d["server_declared"] = self.profile.server
            d["commands"] = sorted(self.profile.commands)
        d["server_host"] = "declared in the profile" if self.profile and self.profile.server else "not known"
        return d
