"""The VM batch logic on the fake cloud: timing, failures named, leftovers, clean-up after an interrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from clauseproof.compute.base import GONE
from clauseproof.compute.batch import create_batch, delete_batch
from clauseproof.compute.fake import FakeDriver
from clauseproof.compute.profile import make_driver
from clauseproof.core.errors import ClauseproofError
from tests.fix_targets import ROOT


def _profile(tmp: Path, **keys: object) -> Path:
    body = {"provider": "fake", "state_file": str(tmp / "cloud.json"), "poll_interval_s": 0.05, **keys}
    path = tmp / "fake.toml"
    path.write_text("[cloud]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in body.items()))
    return path


def _alive(state: Path) -> list[str]:
    vms = json.loads(state.read_text())["vms"] if state.exists() else {}
    return [v["name"] for v in vms.values() if v["state"] != GONE]


def _evidence(project: pytest.Pytester) -> dict:
    return json.loads((project.path / "results" / "latest" / "evidence.json").read_text())


def test_batch_times_the_slowest_vm_from_before_the_first_call(tmp_path: Path) -> None:
    d = FakeDriver(tmp_path / "s.json", boot_s=0.3, api_latency_s=0.05)
    created = create_batch(d, "r1", 4, poll_s=0.02, timeout_s=5)
    assert not created.failures and created.seconds is not None
    assert 0.3 <= created.seconds < 0.6  # boot time plus API latency, within a few polls
    assert all(t.accepted_s is not None and t.accepted_s >= 0.05 for t in created.vms)  # the clock started first
    deleted = delete_batch(d, "r1", [t.id for t in created.vms], poll_s=0.02, timeout_s=5)
    assert not deleted.failures and deleted.leftovers == {}


def test_never_running_vm_fails_the_case_and_is_named(project: pytest.Pytester, tmp_path: Path) -> None:
    prof = _profile(tmp_path, never_running=["vm002"], timeout_s=1, count=3)
    result = project.runpytest("suites/compute", f"--cp-cloud={prof}", "-k", "create_and_delete", "-p", "no:randomly")
    result.assert_outcomes(passed=1)  # the fake cloud is simulated: not evidence, the would-be verdict named
    rows = {r["id"]: r for r in _evidence(project)["clause_rows"] if r["id"].startswith("SX-ECS-6")}
    assert rows["SX-ECS-6a"]["verdict"] == "NOT EVIDENCE"
    assert "would be FAIL" in rows["SX-ECS-6a"]["reason"] and "not running within 1 s" in rows["SX-ECS-6a"]["reason"]
    assert _alive(tmp_path / "cloud.json") == []  # deleted although the case failed


def test_failed_delete_is_reported_as_a_leftover(project: pytest.Pytester, tmp_path: Path) -> None:
    prof = _profile(tmp_path, fail_delete=["vm001"], count=2, timeout_s=1)
    result = project.runpytest("suites/compute", f"--cp-cloud={prof}", "-k", "create_and_delete", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    case = next(c for c in _evidence(project)["cases"] if "create_and_delete" in c["nodeid"])
    b6 = next(m for m in case["measurements"] if m["clause_id"] == "SX-ECS-6b")
    assert "would be FAIL" in b6["reason"] and "vm001" in b6["reason"] and "delete refused" in b6["reason"]
    assert any("vm001" in n and "NOT DELETED" in n for n in case["notes"])
    assert [n[-5:] for n in _alive(tmp_path / "cloud.json")] == ["vm001"]


def test_quota_refusal_fails_with_the_providers_message(project: pytest.Pytester, tmp_path: Path) -> None:
    prof = _profile(tmp_path, quota=2, count=3)
    result = project.runpytest("suites/compute", f"--cp-cloud={prof}", "-k", "create_and_delete", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    row = next(r for r in _evidence(project)["clause_rows"] if r["id"] == "SX-ECS-6a")
    assert "would be FAIL" in row["reason"] and "QuotaExceeded: Quota exceeded for instances" in row["reason"]
    assert _alive(tmp_path / "cloud.json") == []


@pytest.mark.parametrize(("hosts", "verdict"), [(100, "PASS"), (1, "FAIL")])
def test_anti_affinity_is_checked_on_the_hosts(
    project: pytest.Pytester, tmp_path: Path, hosts: int, verdict: str
) -> None:
    prof = _profile(tmp_path, hosts=hosts)
    project.runpytest("suites/compute", f"--cp-cloud={prof}", "-k", "affinity", "-p", "no:randomly")
    rows = [r for r in _evidence(project)["clause_rows"] if r["id"] == "SX-ECS-8"]
    assert [r["verdict"] for r in rows] == ["NOT EVIDENCE"]  # the fake is simulated wherever it is selected
    assert f"would be {verdict}" in rows[0]["reason"]
    assert _alive(tmp_path / "cloud.json") == []


def test_lifecycle_passes_on_the_fake_cloud(project: pytest.Pytester, tmp_path: Path) -> None:
    prof = _profile(tmp_path)
    result = project.runpytest("suites/compute", f"--cp-cloud={prof}", "-k", "lifecycle", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    case = next(c for c in _evidence(project)["cases"] if "lifecycle" in c["nodeid"])
    assert [s["operation"] for s in case["parameters"]["steps"]] == ["create", "stop", "start", "reboot", "delete"]


def _start_slow_run(tmp_path: Path, project: pytest.Pytester) -> tuple[subprocess.Popen[bytes], str]:
    prof = _profile(tmp_path, boot_s=120, timeout_s=300)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "suites/compute", f"--cp-cloud={prof}", "-k", "create_and_delete"],
        cwd=project.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    state = tmp_path / "cloud.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_alive(state)) < 30:
        time.sleep(0.1)
    assert len(_alive(state)) == 30
    run = next(iter(json.loads(state.read_text())["vms"].values()))["run"]
    return proc, run


def test_sigterm_mid_batch_deletes_every_vm(project: pytest.Pytester, tmp_path: Path) -> None:
    proc, _ = _start_slow_run(tmp_path, project)
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    assert _alive(tmp_path / "cloud.json") == []


def test_a_killed_run_leaves_nothing_after_the_cleanup_command(project: pytest.Pytester, tmp_path: Path) -> None:
    proc, run = _start_slow_run(tmp_path, project)
    os.killpg(proc.pid, signal.SIGKILL)  # no chance to clean up
    proc.wait(timeout=30)
    assert len(_alive(tmp_path / "cloud.json")) == 30
    cli = [sys.executable, "-m", "clauseproof.cli", "cloud-cleanup", "--cloud", str(tmp_path / "fake.toml"), "--run"]
    out = subprocess.run([*cli, run], capture_output=True, text=True, check=False, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "30 VMs deleted, none left" in out.stdout
    assert _alive(tmp_path / "cloud.json") == []


@pytest.mark.parametrize(
    ("body", "env", "message"),
    [
        ('provider = "nosuchcloud"\nimage = "i"\nsize = "s"\nkey_env = "K"', {}, "not a Libcloud compute provider"),
        ('provider = "openstack"\nimage = "i"\nsize = "s"\nkey_env = "CP_TEST_NO_SUCH_VAR"', {}, "CP_TEST_NO_SUCH_VAR"),
        ('provider = "openstack"\nsize = "s"\nkey_env = "K"', {}, "[cloud] has no image"),
        ('provider = "openstack"\nimage = 3', {}, "[cloud] image: 3 has the wrong type"),
    ],
)
def test_bad_cloud_profiles_are_named(tmp_path: Path, body: str, env: dict[str, str], message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[cloud]\n{body}\n")
    with pytest.raises(ClauseproofError) as exc:
        make_driver(str(path))
    assert message in str(exc.value)
    if "nosuchcloud" in body:
        assert "openstack" in str(exc.value)  # the valid names are listed


def test_bad_cloud_setting_is_a_usage_error(project: pytest.Pytester) -> None:
    result = project.runpytest("suites/compute", "--cp-cloud=aws")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--cp-cloud*'aws'*simulated*none*toml*"])


def test_simulated_cloud_is_not_evidence(project: pytest.Pytester) -> None:
    result = project.runpytest("suites/compute", "-k", "create_and_delete", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    doc = _evidence(project)
    assert doc["simulated_targets"] == ["simulated EC2 (moto)"]
    assert {r["verdict"] for r in doc["clause_rows"] if r["id"].startswith("SX-ECS-6")} == {"NOT EVIDENCE"}
    assert "not evidence" in (project.path / "results" / "latest" / "report.html").read_text()


def test_profile_example_in_docs_is_valid(tmp_path: Path) -> None:
    text = textwrap.dedent((ROOT / "src/clauseproof/compute/profile.py").read_text().split('"""')[1])
    example = text[text.index("[cloud]") : text.index("A vendor's OpenStack")]  # the Libcloud example
    example = "\n".join(line[4:] if line.startswith("    ") else line for line in example.splitlines())
    path = tmp_path / "example.toml"
    path.write_text(example)
    os.environ.pop("OS_USERNAME", None)
    with pytest.raises(ClauseproofError, match="OS_USERNAME"):
        make_driver(str(path))


def test_libcloud_adapter_end_to_end_touches_only_its_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Libcloud path, through a provider registered with Libcloud's own set_driver."""
    from libcloud.compute.base import Node
    from libcloud.compute.providers import set_driver
    from libcloud.compute.types import NodeState

    from clauseproof.compute.batch import act_batch
    from tests import libcloud_memory

    set_driver("cpmemory", "tests.libcloud_memory", "MemoryNodeDriver")  # type: ignore[arg-type]  # strings at run time
    libcloud_memory.NODES["prod"] = Node("prod", "prod-db", NodeState.RUNNING, [], [], None)  # not ours
    path = tmp_path / "lc.toml"
    path.write_text(
        '[cloud]\nprovider = "cpmemory"\nkey_env = "CP_TEST_KEY"\nimage = "img"\nsize = "small"\n'
        '[cloud.options]\nregion = "r1"\n'
    )
    monkeypatch.setenv("CP_TEST_KEY", "k")
    driver = make_driver(str(path))
    assert driver.describe()["driver"] == "libcloud cpmemory"
    created = create_batch(driver, "r9", 5, poll_s=0.01, timeout_s=2)
    assert not created.failures and len(driver.list_vms("r9")) == 5
    ids = [t.id for t in created.vms]
    assert not act_batch(driver, "r9", ids, "stop", poll_s=0.01, timeout_s=2).failures
    assert not act_batch(driver, "r9", ids, "start", poll_s=0.01, timeout_s=2).failures
    deleted = delete_batch(driver, "r9", ids, poll_s=0.01, timeout_s=2)
    assert not deleted.failures and deleted.leftovers == {}
    assert list(libcloud_memory.NODES) == ["prod"]  # the account's own VM was never touched


def test_fewer_vms_than_the_clause_names_is_not_evidence_on_a_real_driver(project: pytest.Pytester) -> None:
    """A cloud profile's count below the clause's 30 VMs: not evidence, even from a real (Libcloud) driver."""
    shutil.copy(ROOT / "tests" / "libcloud_memory.py", project.path / "libcloud_memory.py")
    with open(project.path / "conftest.py", "a") as f:
        f.write(
            "\nfrom libcloud.compute.providers import set_driver\n"
            "set_driver('cpmemory', 'libcloud_memory', 'MemoryNodeDriver')\n"
        )
    prof = project.path / "lc.toml"
    prof.write_text(
        '[cloud]\nprovider = "cpmemory"\nkey_env = "CP_TEST_KEY"\nimage = "img"\nsize = "small"\ncount = 3\n'
        "poll_interval_s = 0.01\n"
    )
    os.environ["CP_TEST_KEY"] = "k"
    result = project.runpytest("suites/compute", f"--cp-cloud={prof}", "-k", "create_and_delete")
    result.assert_outcomes(passed=1)
    rows = [r for r in _evidence(project)["clause_rows"] if r["id"].startswith("SX-ECS-6")]
    assert {r["verdict"] for r in rows} == {"NOT EVIDENCE"}
    assert "3 VMs (the cloud profile's count), fewer than the clause's 30" in rows[0]["reason"]
