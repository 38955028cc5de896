"""The README and the manual in docs/: what a newcomer copies must work.

- the manual builds with MkDocs in strict mode (a broken link, a page missing from the nav, an anchor that is not
  there: each fails the build); the README's links to it lead to files that exist;
- every TOML example is a profile the harness accepts (it is what a vendor copies first);
- every command line in a ``sh`` block names a ``./run`` command, a ``clauseproof`` command and ``--cp-*`` options
  that exist; every YAML example parses;
- the README stays what a new user needs first (about 150 lines), the reference in docs/.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clauseproof.compute.profile import load_cloud_profile
from clauseproof.targets.single.external import load_profile

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(lang: str) -> list[tuple[str, str]]:
    """(page name, block text) of every fenced block in ``lang``."""
    found = []
    for page in PAGES:
        for text in re.findall(rf"^```{lang}\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M):
            found.append((page.relative_to(ROOT).as_posix(), text))
    return found


TOML = blocks("toml")
SH = blocks("sh")
TARGET = '[target]\ndialect = "postgresql"\nhost = "192.0.2.10"\nuser = "acceptance"\n\n'


def test_the_readme_is_a_first_read_and_the_manual_holds_the_reference() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 170, f"README.md has {lines} lines: keep it to what a new user needs first, the rest in docs/"
    assert len(TOML) >= 10 and len(SH) >= 8


def test_the_manual_builds_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],  # -q hides warnings
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and "WARNING" not in done.stderr, done.stdout + done.stderr
    clauses = (tmp_path / "site" / "clauses" / "index.html").read_text(encoding="utf-8")
    assert "BZ-DB-4a" in clauses and "suites/bulk_load/test_bulk_load.py" in clauses  # generated from the catalog


def test_the_readme_links_lead_somewhere() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#]+)\)", text)
    assert links
    missing = [link for link in links if "://" not in link and not (ROOT / link).exists()]
    assert not missing, missing


SECTION = re.compile(r"^\[([\w.]+)\]", re.M)


@pytest.mark.parametrize("page,block", TOML, ids=[f"{p}:{SECTION.findall(b)[0]}" for p, b in TOML])
def test_each_profile_example_loads(tmp_path: Path, page: str, block: str) -> None:
    p = tmp_path / "example.toml"
    if block.lstrip().startswith("[cloud]"):
        p.write_text(block)
        assert load_cloud_profile(p)["provider"]
        return
    p.write_text(block if "[target]" in block else TARGET + block)
    for name in re.findall(r'"([\w.-]+\.pdf)"', block):  # the documents a [documents] example names
        (tmp_path / name).write_bytes(b"%PDF-1.4\n")
    profile = load_profile(p)
    if "[documents]" in block:
        assert profile.documents["SX-ECS-S1"][1].name == "third-party-report-2026.pdf"
    if "[column_encryption]" in block:
        assert profile.section("column_encryption") is not None
        assert profile.section("column_encryption").keyed_options == {"enable_ce": "1"}
        assert profile.section("column_encryption").teardown
        assert profile.sm4["encrypt_sql"] and profile.commands["copy_files"]


def _commands() -> list[tuple[str, list[str]]]:
    out = []
    for page, text in SH:
        text = text.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split(" #", 1)[0].strip().lstrip("$").strip()
            if line.startswith(("./run", ".venv/bin/clauseproof")):
                out.append((page, shlex.split(line.replace("<", "").replace(">", "").replace("&", ""))))
    return out


def test_every_command_in_the_examples_exists() -> None:
    from clauseproof.cli import main as cli_main

    run_commands = set(re.findall(r"^    (\w+)\)", (ROOT / "run").read_text(), re.M))
    from clauseproof.core.settings import OPTIONS

    options = {opt.flag for opt in OPTIONS} | {"--cp-list-catalog"}
    problems = []
    commands = _commands()
    assert len(commands) >= 15
    for page, argv in commands:
        if argv[0] == "./run":
            if len(argv) < 2 or argv[1] not in run_commands:
                problems.append(f"{page}: ./run {argv[1:2]} is not a ./run command ({sorted(run_commands)})")
        else:
            try:
                cli_main([argv[1], "--help"])
            except SystemExit as exc:
                if exc.code != 0:
                    problems.append(f"{page}: clauseproof {argv[1]} is not a command")
        for arg in argv:
            name = arg.split("=", 1)[0]
            if name.startswith("--cp-") and name not in options:
                problems.append(f"{page}: {name} is not an option")
    assert not problems, problems


@pytest.mark.parametrize("page,block", blocks("yaml"))
def test_each_yaml_example_parses(page: str, block: str) -> None:
    assert isinstance(yaml.safe_load(block), dict)
