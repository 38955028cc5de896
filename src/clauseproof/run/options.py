"""The pytest side of the settings (:mod:`clauseproof.core.settings`): each setting as a command-line flag and an
ini key, read and checked at the start of a run; a bad value is pytest's clean usage error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from clauseproof.core import shipped
from clauseproof.core.errors import ClauseproofError
from clauseproof.core.settings import OPTIONS, Settings, default_cache


def add_options(parser: pytest.Parser) -> None:
    """Register every setting as a CLI flag and an ini key."""
    group = parser.getgroup("clauseproof", "clauseproof acceptance harness")
    for opt in OPTIONS:
        group.addoption(
            opt.flag, dest="cp_" + opt.name, default=None, help=f"{opt.help} [env {opt.env}, ini {opt.ini}]"
        )
        parser.addini(opt.ini, help=opt.help, default=None)
    group.addoption(
        "--cp-list-catalog",
        action="store_true",
        default=False,
        help="list every catalog clause with the cases that verify it, then exit",
    )


def read_settings(config: pytest.Config) -> Settings:
    """Resolve and validate every setting; a bad value is a UsageError quoting it."""
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        raw = config.getoption("cp_" + opt.name)
        source = opt.flag
        if raw is None and opt.env in os.environ:
            raw, source = os.environ[opt.env], f"environment variable {opt.env}"
        if raw is None and config.getini(opt.ini) not in (None, ""):
            raw, source = str(config.getini(opt.ini)), f"ini key {opt.ini}"
        if raw is None:
            raw, source = opt.default, "default"
        try:
            values[opt.name] = opt.parse(raw)
        except ValueError as exc:
            raise pytest.UsageError(f"clauseproof: {source}: {exc}.") from None
    root = Path(str(config.rootpath))
    return Settings(
        targets=values["target"],
        cloud=values["cloud"],
        repeats=values["repeats"],
        scale=values["scale"],
        seed=values["seed"],
        results=values["results"] or root / "results",
        catalog=values["catalog"] or shipped.CATALOG,
        cache=values["cache"] or Path(default_cache()),
        lang=values["lang"],
        tester=values["tester"],
        formats=values["formats"],
        signing_key=values["signing_key"],
        destructive=values["destructive"],
        image_postgresql=values["image_postgresql"],
        image_mariadb=values["image_mariadb"],
        container_cpus=values["container_cpus"],
        container_memory=values["container_memory"],
        probe_log=values["probe_log"],
        pg_bindir=values["pg_bindir"],
        mariadb_bindir=values["mariadb_bindir"],
        rootdir=root,
    )


def as_usage_error(exc: ClauseproofError) -> pytest.UsageError:
    """Translate a clauseproof error into pytest's clean one-paragraph usage error."""
    return pytest.UsageError("clauseproof: " + str(exc))
