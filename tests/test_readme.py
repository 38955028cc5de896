"""The README's profile examples are valid profiles (they are what a vendor copies first)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clauseproof.compute.profile import load_cloud_profile
from clauseproof.targets.external import load_profile

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```toml\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)
TARGET = '[target]\ndialect = "postgresql"\nhost = "192.0.2.10"\nuser = "acceptance"\n\n'


def test_the_readme_has_profile_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("block", BLOCKS, ids=[re.findall(r"^\[([\w.]+)\]", b, re.M)[0] for b in BLOCKS])
def test_each_readme_profile_example_loads(tmp_path: Path, block: str) -> None:
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
