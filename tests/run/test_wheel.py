"""The package stands on its own: a wheel built from the tree, installed into an empty virtual environment outside the
checkout, runs the acceptance suites against the embedded targets — its catalog, DDL and workloads (started as
``python -m clauseproof.workloads.…``) come from the package, not from the checkout."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What a build reads: the package, the acceptance plan it carries, and the project's metadata.
TREE = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "conftest.py", "src", "suites", "fixtures")


def _run(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty virtual environment holding only the wheel; the libraries it needs are this environment's, by a
    path in a .pth file (which puts a folder on sys.path and runs none of its .pth files: not the checkout's
    editable install)."""
    base = tmp_path_factory.mktemp("wheel")
    tree = base / "tree"  # a copy: a build writes build/ and *.egg-info beside the sources
    for name in TREE:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            tree.mkdir(exist_ok=True)
            shutil.copy2(src, tree / name)
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                  str(base / "dist"), str(tree)], base, 300)  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (base / "dist").glob("clauseproof-*.whl")
    venv = base / "venv"
    made = _run(["/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable, "-m", "venv",
                 str(venv)], base, 120)  # fmt: skip
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    got = _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], base, 300)
    assert got.returncode == 0, got.stderr[-3000:]
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base, 60)
    (Path(purelib.stdout.strip()) / "zz-libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    shutil.rmtree(tree)
    return venv


def test_the_wheel_carries_its_data_and_no_checkout(installed: Path, tmp_path: Path) -> None:
    probe = (
        "import json, clauseproof\n"
        "from clauseproof.core import shipped\n"
        "from clauseproof.cli import acceptance_plan\n"
        "print(json.dumps({'package': clauseproof.__file__, 'catalog': shipped.CATALOG.is_file(),\n"
        "  'ddl': sorted(p.name for p in shipped.DDL.iterdir()), 'plan': str(acceptance_plan())}))\n"
    )
    r = _run([str(installed / "bin" / "python"), "-c", probe], tmp_path, 60)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout)
    assert got["package"].startswith(str(installed)), "clauseproof was imported from elsewhere than the wheel"
    assert got["catalog"] and got["ddl"] == ["mysql", "postgresql"]
    assert got["plan"].startswith(str(installed)) and got["plan"].endswith("clauseproof/acceptance")


def test_the_installed_package_runs_the_suites_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    """Bulk load (the settlement workload, the shipped DDL) and streaming through the embedded gateway (its upstream
    started as ``python -m clauseproof.workloads.stream_upstream``), from a folder that is not the checkout."""
    suites = ["suites/bulk_load", "suites/gateway/test_streaming.py"]
    r = _run([str(installed / "bin" / "clauseproof"), "accept", *suites, "--cp-target=embedded-postgresql",
              "--cp-scale=0.001", "-q"], tmp_path, 600)  # fmt: skip
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    (run,) = [p for p in (tmp_path / "results").iterdir() if p.is_dir() and not p.is_symlink()]
    doc = json.loads((run / "evidence.json").read_text())
    outcomes = {c["nodeid"].split("::")[-1].split("[")[0]: c["outcome"] for c in doc["cases"]}
    assert set(outcomes.values()) == {"passed"}, outcomes
    measured = {m["clause_id"] for c in doc["cases"] for m in c.get("measurements", [])}
    assert measured >= {"BZ-DB-4a", "BZ-DB-4c", "SX-EDAS-2"}  # at this scale NOT EVIDENCE, as the scale says
    assert (run / "report.html").is_file()
    listed = _run([str(installed / "bin" / "clauseproof"), "catalog"], tmp_path, 300)
    assert listed.returncode == 0, (listed.stdout + listed.stderr)[-3000:]
    assert (
        "BZ-DB-4a" in listed.stdout and "suites/bulk_load/test_bulk_load.py::test_single_table_insert" in listed.stdout
    )


def test_clauseproof_accept_is_the_run_itself_so_signals_reach_it(installed: Path, tmp_path: Path) -> None:
    """`clauseproof accept` becomes pytest (exec), not its parent: a SIGTERM to it is a SIGTERM to the run, which
    stops cleanly (exit 2); a parent that died would leave the run going on."""
    import os
    import signal
    import time

    proc = subprocess.Popen(
        [str(installed / "bin" / "clauseproof"), "accept", "suites/bulk_load", "--cp-target=embedded-postgresql",
         "--cp-scale=0.3"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        import select

        deadline = time.monotonic() + 60  # the run starts in seconds; 60 s is only a bound on a busy machine
        seen = b""
        assert proc.stdout is not None
        while b"ready in" not in seen:  # the server is up and a case is about to run: its handlers are installed
            assert time.monotonic() < deadline and proc.poll() is None, seen[-1500:]
            if select.select([proc.stdout], [], [], 1)[0]:
                seen += os.read(proc.stdout.fileno(), 65536)
        assert "pytest" in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")  # not a parent
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 2
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_signal_while_the_evidence_is_written_lets_the_bundle_finish(installed: Path, tmp_path: Path) -> None:
    """SIGTERM after the cases, while the targets stop and the bundle is written, used to leave a bundle without its
    manifest and signature (and servers running): the finish goes on, the run ends as interrupted (exit 2)."""
    import os
    import select
    import signal
    import time

    proc = subprocess.Popen(
        [str(installed / "bin" / "clauseproof"), "accept", "suites/bulk_load", "--cp-target=embedded-postgresql",
         "--cp-scale=0.3", "-k", "test_single_table_insert", "--cp-repeats=1"], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120  # a bound on a busy machine (the data set may be built first)
        seen = b""
        assert proc.stdout is not None
        while b"writing the evidence ..." not in seen:
            assert time.monotonic() < deadline and proc.poll() is None, seen[-1500:]
            if select.select([proc.stdout], [], [], 1)[0]:
                seen += os.read(proc.stdout.fileno(), 65536)
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
        text = (seen + out).decode(errors="replace")
        assert proc.returncode == 2, text[-3000:]
        assert "SIGTERM: stopping the targets and writing the evidence first" in text
        (bundle,) = (tmp_path / "results").glob("2*")
        assert (bundle / "manifest.json").is_file() and (bundle / "evidence.json").is_file(), sorted(bundle.iterdir())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
