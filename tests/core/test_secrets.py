"""No secret in any output (issue 31, item 3): every value read from an environment variable a profile names, and
every password or credential the harness makes, is masked in the bundle, the logs and the console; the evidence
records the variable's name."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from clauseproof.core import masking
from clauseproof.gateway.limits import declared
from clauseproof.gateway.vendor import VendorGateway, parse
from tests.fix_targets import CATALOG

SECRET = "cp-selftest-consumer-credential-9f3a"


def test_a_value_read_from_a_profiles_variable_is_remembered_and_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CP_SELFTEST_KEY", SECRET)
    assert masking.from_env("CP_SELFTEST_KEY", "a consumer") == SECRET
    assert masking.mask(f"Authorization: Bearer {SECRET}; url mysql://u:pw1@h/db") == (
        "Authorization: Bearer ***; url mysql://u:***@h/db"
    )
    with pytest.raises(Exception, match=r"CP_SELFTEST_UNSET.*not set"):
        masking.from_env("CP_SELFTEST_UNSET", "a consumer")


def test_log_lines_are_masked_whatever_logger_writes_them(caplog: pytest.LogCaptureFixture) -> None:
    masking.remember(SECRET)
    masking.install_log_masking()
    with caplog.at_level(logging.INFO):
        logging.getLogger("clauseproof.anything").warning("sent %s to the gateway", SECRET)
    assert SECRET not in caplog.text and "sent *** to the gateway" in caplog.text


def test_a_vendor_gateways_credentials_are_recorded_by_variable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CP_SELFTEST_ALICE_1", SECRET)
    monkeypatch.setenv("CP_SELFTEST_ALICE_2", SECRET + "-2")
    monkeypatch.setenv("CP_SELFTEST_BOB", SECRET + "-3")
    body = {
        "base_url": "http://127.0.0.1:9",
        "limits": [
            {"kind": "consumer", "path": "/x", "header": "Authorization", "format": "Bearer {}", "rate": 5, "burst": 1,
             "consumers": {"alice": ["CP_SELFTEST_ALICE_1", "CP_SELFTEST_ALICE_2"], "bob": ["CP_SELFTEST_BOB"]}},
        ],
    }  # fmt: skip

    def err(sec: str, key: str, what: str, fix: str = "") -> Exception:
        return ValueError(f"[{sec}] {key}: {what} ({fix})")

    section = parse(body, err)
    assert section is not None
    gw = VendorGateway("vendor-gw", section)
    gw.start()
    try:
        (rule,) = gw.limit_rules()
        assert rule["consumers"]["alice"] == [SECRET, SECRET + "-2"]  # the check needs the values
        recorded = json.dumps(declared(rule))
        assert SECRET not in recorded and "$CP_SELFTEST_ALICE_1" in recorded and "$CP_SELFTEST_BOB" in recorded
        assert SECRET + "-3" in masking.known()
    finally:
        gw.stop()


LEAKY_CASE = """
import logging, os, pytest
from clauseproof.core.masking import from_env

@pytest.mark.clause("BZ-DB-4a")
def test_leaks_everywhere(evidence):
    value = from_env("CP_SELFTEST_GW_KEY", "the gateway's consumer credential")
    evidence.parameters(consumer=value, note=f"key={value}")
    logging.getLogger("clauseproof.selftest").warning("credential %s", value)
    print("console:", value)
    assert value == "what a broken gateway answered", f"got {value}"
"""


def test_a_case_that_prints_logs_records_and_asserts_a_secret_leaks_it_nowhere(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CP_SELFTEST_GW_KEY", SECRET)
    pytester.makepyfile(test_leaky=LEAKY_CASE)
    result = pytester.runpytest(f"--cp-catalog={CATALOG}", "--cp-formats=html", "-rA", "--log-level=INFO")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    console = result.stdout.str() + result.stderr.str()
    assert "got ***" in console and SECRET not in console
    written = [p for p in (pytester.path / "results").rglob("*") if p.is_file()]
    assert any(p.name == "evidence.json" for p in written)
    for p in written:
        assert SECRET.encode() not in p.read_bytes(), p
    doc = json.loads(next(p for p in written if p.name == "evidence.json").read_text())
    assert "***" in json.dumps(doc)


def test_children_get_only_the_machines_basics_and_what_is_theirs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 31 (low): the harness's environment, with every vendor secret in it, used to reach Patroni, LiteLLM and
    vendor commands whole."""
    from clauseproof.core.commands import timed

    monkeypatch.setenv("VENDOR_DB_PASSWORD", SECRET)
    monkeypatch.setenv("CLAUSEPROOF_KEY_A", "00" * 16)
    monkeypatch.setenv("CP_SELFTEST_TOKEN", "token-the-vendor-tool-needs")
    masking.pass_env(["CP_SELFTEST_TOKEN"])
    env = masking.child_env({"PGPASSWORD": "its-own"})
    assert "VENDOR_DB_PASSWORD" not in env and "CLAUSEPROOF_KEY_A" not in env
    assert env["PGPASSWORD"] == "its-own" and env["CP_SELFTEST_TOKEN"] == "token-the-vendor-tool-needs"
    assert env["PATH"] == os.environ["PATH"]
    out = Path(tempfile.mkdtemp(prefix="cp-selftest-env-")) / "env.txt"
    timed("a vendor command", ["env"], stdout=out)
    seen = out.read_text()
    assert SECRET not in seen and "CLAUSEPROOF_KEY_A" not in seen and "CP_SELFTEST_TOKEN=token" in seen
    shutil.rmtree(out.parent)
