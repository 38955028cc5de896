"""Self-test wiring: fixture modules only."""

import pytest

pytest_plugins = ("pytester", "tests.fix_targets")


def pytest_configure(config: pytest.Config) -> None:
    # Inner pytest runs go to a subprocess: in-process runs drop modules imported during the run
    # from sys.modules, and compiled extensions (psycopg's, SQLAlchemy's) then raise exception
    # classes of the first import that no longer match the re-imported module's.
    config.option.runpytest = "subprocess"
