"""Embedded servers for the self-tests, one per session, and helpers."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from clauseproof.core import shipped
from clauseproof.targets.host.folders import FOLDER_PREFIX
from clauseproof.targets.single.mariadb import EmbeddedMariaDB
from clauseproof.targets.single.postgres import EmbeddedPostgres

ROOT = Path(__file__).resolve().parent.parent
CATALOG = shipped.CATALOG


def our_folders() -> set[str]:
    """Embedded-server folders owned by this process."""
    out = set()
    for f in glob.glob(os.path.join(tempfile.gettempdir(), FOLDER_PREFIX + "*")):
        try:
            if f'"pid": {os.getpid()}' in Path(f, "owner.json").read_text():
                out.add(f)
        except OSError:
            continue
    return out


def vendor_profile(
    path: Path, server: EmbeddedPostgres | EmbeddedMariaDB, sections: str = "", name: str = "vendor-pg"
) -> Path:
    """Write a vendor profile at ``path`` whose [target] is the embedded ``server``, followed by ``sections``.
    The server's password is read from an environment variable set here, as a vendor's profile would."""
    ep = server._ep()
    database = f'database = "{ep.database}"\n' if server.dialect == "postgresql" else ""
    variable = f"CLAUSEPROOF_SELFTEST_PW_{ep.port}"
    os.environ[variable] = server.password
    path.write_text(
        f'[target]\nname = "{name}"\ndialect = "{server.dialect}"\nhost = "{ep.host}"\nport = {ep.port}\n'
        f'user = "{ep.user}"\npassword_env = "{variable}"\n{database}\n{sections}'
    )
    return path


def url_of(server: EmbeddedPostgres | EmbeddedMariaDB) -> str:
    """A target URL of the embedded ``server``, password included (masked by the harness in what it writes)."""
    ep = server._ep()
    scheme = "postgresql" if server.dialect == "postgresql" else "mysql"
    return f"{scheme}://{ep.user}:{server.password}@{ep.host}:{ep.port}/{ep.database}"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    t = EmbeddedPostgres("selftest-postgresql", "clauseproof_selftest", None)
    t.start()
    yield t
    t.stop()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[EmbeddedMariaDB]:
    t = EmbeddedMariaDB("selftest-mariadb", "clauseproof_selftest", None)
    t.start()
    yield t
    t.stop()


@pytest.fixture()
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester folder laid out like a clauseproof checkout, with the real suites."""
    skip = shutil.ignore_patterns("__pycache__")
    for folder in ("fixtures", "suites"):  # the acceptance plan of a checkout (its data ships in the package)
        shutil.copytree(ROOT / folder, pytester.path / folder, ignore=skip)
    shutil.copy(ROOT / "conftest.py", pytester.path / "conftest.py")
    return pytester


def signals_as_in_a_terminal() -> None:
    """``preexec_fn`` of a run a test signals: SIGINT and SIGHUP as in a terminal. The self-tests may run as a
    background job (SIGINT inherited ignored) or under nohup (SIGHUP ignored), and a run rightly keeps ignoring
    what it inherits ignored."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
