"""Self-test wiring: fixture modules only."""

import os
import shutil
import tempfile

import pytest

pytest_plugins = ("pytester", "tests.fix_targets")


def pytest_configure(config: pytest.Config) -> None:
    # Inner pytest runs go to a subprocess: in-process runs drop modules imported during the run
    # from sys.modules, and compiled extensions (psycopg's, SQLAlchemy's) then raise exception
    # classes of the first import that no longer match the re-imported module's.
    config.option.runpytest = "subprocess"
    config.addinivalue_line(
        "markers",
        "timing: the test measures real time against a bound (its margin is stated beside the mark); ./run test "
        "runs these alone, after the rest has run in parallel",
    )
    # Inner runs write the HTML report only (the PDF and DOCX take seconds; the tests that check them ask for
    # them), and sign with a key of the self-tests, never with the user's own (~/.config/clauseproof).
    os.environ.setdefault("CLAUSEPROOF_FORMATS", "html")
    # Parallel workers (pytest-xdist, ./run test): each takes the ports of its servers from a range of its own,
    # below the kernel's ephemeral range (32768-60999), so no two workers race for one port.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        low = 12000 + 2500 * int(worker[2:])
        os.environ["CLAUSEPROOF_PORT_RANGE"] = f"{low}-{low + 2499}"
        # the runs a test starts (pytester, the CLI) are not xdist workers: pytest-benchmark, seeing these, would
        # disable itself there, and every timed case would end in ERROR
        for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
            os.environ.pop(name, None)
    if "XDG_CONFIG_HOME" not in os.environ:
        os.environ["XDG_CONFIG_HOME"] = _MADE["config"] = tempfile.mkdtemp(prefix="clauseproof-selftest-config-")


_MADE: dict[str, str] = {}


def pytest_unconfigure(config: pytest.Config) -> None:
    if "config" in _MADE:
        shutil.rmtree(_MADE.pop("config"), ignore_errors=True)
