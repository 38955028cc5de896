"""The acceptance plan travels in the wheel: ``suites/``, ``fixtures/`` and the root ``conftest.py`` of the checkout
are copied into ``clauseproof/acceptance/`` when the package is built, so an installed clauseproof runs the
acceptance suites without the checkout (``clauseproof accept``).  Everything else is in pyproject.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PLAN = ("suites", "fixtures", "conftest.py")


class BuildWithPlan(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install runs the checkout's own plan
            return
        dest = Path(self.build_lib) / "clauseproof" / "acceptance"
        shutil.rmtree(dest, ignore_errors=True)  # a build folder left by an earlier build keeps no removed file
        for name in PLAN:
            src = HERE / name
            if not src.exists():  # a tree without the plan builds a package without one (clauseproof accept says so)
                continue
            if src.is_dir():
                shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                                dirs_exist_ok=True)  # fmt: skip
            else:
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)


setup(cmdclass={"build_py": BuildWithPlan})
