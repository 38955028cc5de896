"""The report testers sign: roll-up and matrix, words in both languages, PDF/DOCX, the signed manifest."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import string
import subprocess
from pathlib import Path
from typing import Any

import pytest

from clauseproof.cli import main as cli
from clauseproof.core import shipped
from clauseproof.core.bundle import file_hashes, fingerprint, keygen, sign, signers, sm2_key, verify, write_manifest
from clauseproof.core.evidence import FAIL, NOT_COVERED, NOT_EVIDENCE, NOT_SHOWN, PASS, rollup, verdict_matrix
from clauseproof.core.i18n import Messages, catalog


def _row(cid: str, target: str, verdict: str, reason: str = "") -> dict[str, Any]:
    return {"id": cid, "target": target, "verdict": verdict, "reason": reason, "statistic": "", "measured": ""}


def test_rollup_every_part_must_pass() -> None:
    assert rollup([_row("X", "t", PASS), _row("X", "t", PASS)], "all") == PASS
    assert rollup([_row("X", "t", PASS), _row("X", "t", FAIL)], "all") == FAIL
    # a part not shown keeps the clause from PASS without claiming FAIL
    assert rollup([_row("X", "t", PASS), _row("X", "t", NOT_SHOWN)], "all") == NOT_SHOWN
    assert rollup([_row("X", "t", NOT_SHOWN), _row("X", "t", FAIL)], "all") == FAIL
    assert rollup([_row("X", "t", PASS), _row("X", "t", NOT_EVIDENCE)], "all") == NOT_EVIDENCE


def test_rollup_any_method_but_a_wrong_result_fails_anyway() -> None:
    """The cheapest cheat under "one method suffices": a fast backup method whose restore is unequal to its
    source.  A wrong result is FAIL under every rule."""
    fast_but_slow = [_row("B", "t", FAIL, "measured 9 s, required < 7 s"), _row("B", "t", PASS)]
    assert rollup(fast_but_slow, "any") == PASS
    assert rollup(fast_but_slow, "all") == FAIL
    wrong = [_row("B", "t", FAIL, "result wrong: the restored copy differs"), _row("B", "t", PASS)]
    assert rollup(wrong, "any") == FAIL


def test_matrix_has_one_row_per_clause_and_a_column_per_target() -> None:
    clauses = [
        {"id": "A", "mark": "★", "rollup": "all"},
        {"id": "B", "mark": "plain", "rollup": "any"},
        {"id": "C", "mark": "▲"},  # a bundle older than roll-up rules: "all"
    ]
    rows = [
        _row("A", "pg", PASS),
        _row("A", "pg", NOT_SHOWN),
        _row("A", "maria", PASS),
        _row("B", "pg", FAIL, "slow"),
        _row("B", "pg", PASS),
        _row("C", "", NOT_COVERED),
    ]
    m = verdict_matrix(clauses, rows)
    assert m["targets"] == ["pg", "maria"]
    assert [r["id"] for r in m["rows"]] == ["A", "B", "C"]
    a, b, c = m["rows"]
    assert a["cells"]["pg"] == {"verdict": NOT_SHOWN, "parts": 2} and a["cells"]["maria"]["verdict"] == PASS
    assert a["overall"] == NOT_SHOWN  # not PASS while one target has a part not shown
    assert b["cells"]["pg"]["verdict"] == PASS and b["cells"]["maria"]["verdict"] == "NOT RUN"
    assert b["overall"] == PASS
    assert c["overall"] == NOT_COVERED and {x["verdict"] for x in c["cells"].values()} == {NOT_COVERED}


def test_every_message_has_both_languages_with_the_same_placeholders() -> None:
    fields = string.Formatter()
    for group, entries in catalog().items():
        for key, entry in entries.items():
            assert set(entry) == {"zh", "en"}, f"[{group}] {key}"
            names = [{f for _, f, _, _ in fields.parse(entry[lang]) if f} for lang in ("zh", "en")]
            assert names[0] == names[1], f"[{group}] {key}: placeholders differ"
            # Chinese, or at least its own form (a sentence frame with full-width punctuation: "{name}：{statistic}")
            assert re.search(r"[\u4e00-\u9fff]", entry["zh"]) or entry["zh"] != entry["en"], (
                f"[{group}] {key}: zh holds no Chinese"
            )
    t = Messages("zh+en")
    assert t.verdict("FAIL") == "不通过 / FAIL"
    assert Messages("zh").verdict("PASS") == "通过" and Messages("en").verdict("PASS") == "PASS"


def _bundle(tmp_path: Path) -> tuple[Path, Any]:
    folder = tmp_path / "run"
    folder.mkdir(parents=True)
    (folder / "evidence.json").write_text('{"run_id": "x"}')
    (folder / "report.html").write_text("<p>通过</p>")
    (folder / "plots").mkdir()
    (folder / "plots" / "a.svg").write_text("<svg/>")
    key = keygen(tmp_path / "key.pem")
    sm2 = sm2_key(tmp_path / "key.pem")
    write_manifest(folder, {"run_id": "x", "parameters": {"catalog_sha256": "c"}, "basis": []}, signers(key, sm2))
    sign(folder, key, sm2)
    return folder, key


def _trusted(key: Any) -> list[str]:
    return [fingerprint(key.public_key())]


def test_verify_names_each_file_changed_added_or_removed(tmp_path: Path) -> None:
    folder, key = _bundle(tmp_path)
    checked = verify(folder, trusted=_trusted(key))
    assert checked.ok and checked.sm2  # Debian 12's OpenSSL 3.0 signs with SM2
    sig = json.loads((folder / "manifest.sig").read_text())
    raw = bytearray(base64.b64decode(sig["sm2"]["signature"]))
    raw[-3] ^= 1  # one bit of the SM2 signature's s
    sig["sm2"]["signature"] = base64.b64encode(bytes(raw)).decode()
    (folder / "manifest.sig").write_text(json.dumps(sig))
    assert verify(folder, trusted=_trusted(key)).problems == ["the SM2 signature does not match manifest.json"]
    folder, key = _bundle(tmp_path / "again")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"evidence.json", "report.html", "plots/a.svg"}
    assert len(manifest["files"]["report.html"]["sm3"]) == 64
    data = bytearray((folder / "report.html").read_bytes())
    data[3] ^= 1  # one bit of one byte
    (folder / "report.html").write_bytes(bytes(data))
    (folder / "plots" / "a.svg").unlink()
    (folder / "extra.txt").write_text("x")
    problems = verify(folder, trusted=_trusted(key)).problems
    assert problems == ["removed: plots/a.svg", "added: extra.txt (not in the manifest)", _changed("report.html")]


def _changed(rel: str) -> str:
    return f"changed: {rel} (its SHA-256/SM3 differ from the manifest)"


def test_verify_catches_a_rewritten_manifest_and_a_re_signed_bundle(tmp_path: Path) -> None:
    """The cheapest cheats: change a verdict and rewrite the manifest's hash to match (the signature breaks), or
    re-sign the changed bundle with one's own key (no trusted key signed it: NOT OK, and without a trusted key
    given nothing is OK)."""
    folder, key = _bundle(tmp_path)
    honest = fingerprint(key.public_key())
    (folder / "evidence.json").write_text('{"run_id": "x", "verdict": "PASS"}')
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["evidence.json"] = file_hashes(folder / "evidence.json")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert any("signature does not match" in p for p in verify(folder, trusted=[honest]).problems)
    forger = keygen(tmp_path / "forger.pem")
    forger_sm2 = sm2_key(tmp_path / "forger.pem")
    write_manifest(folder, {"run_id": "x", "parameters": {}, "basis": []}, signers(forger, forger_sm2))
    sign(folder, forger, forger_sm2)
    assert not verify(folder).ok  # a consistent bundle, but whose? no trusted key, no OK
    assert any("no trusted key given" in p for p in verify(folder).problems)
    problems = verify(folder, trusted=[honest]).problems
    assert problems == [f"signed by key {fingerprint(forger.public_key())}, not by a trusted key ({honest})"]


def test_verify_pins_the_sm2_key_and_finds_it_stripped_or_swapped(tmp_path: Path) -> None:
    """An SM2 signature from any SM2 key used to "hold"; and stripping the SM2 entry passed even with a
    fingerprint.  The manifest names both keys, so either signature pins the other."""
    folder, key = _bundle(tmp_path)
    sig = json.loads((folder / "manifest.sig").read_text())
    assert sig["sm2"]
    stripped = {k: v for k, v in sig.items() if k != "sm2"}
    (folder / "manifest.sig").write_text(json.dumps(stripped))
    problems = verify(folder, trusted=_trusted(key)).problems
    assert len(problems) == 1 and "names an SM2 signature" in problems[0] and "has none" in problems[0]
    (tmp_path / "other").mkdir()
    other = sm2_key(tmp_path / "other" / "k.pem")
    assert other is not None
    import clauseproof.core.bundle as bundle

    swapped = bundle._sm2_sign(other, folder / "manifest.json")
    (folder / "manifest.sig").write_text(json.dumps({**sig, "sm2": swapped}))
    problems = verify(folder, trusted=_trusted(key)).problems
    assert len(problems) == 1 and "the SM2 signature is by key SM2-SHA256:" in problems[0]
    # the SM2 fingerprint alone is a trusted key too (a party that pins only its national algorithm)
    (folder / "manifest.sig").write_text(json.dumps(sig))
    named = json.loads((folder / "manifest.json").read_text())["signers"]["sm2"]
    assert verify(folder, trusted=[named]).ok


def test_verify_reports_links_folders_and_special_files_added_after_signing(tmp_path: Path) -> None:
    folder, key = _bundle(tmp_path)
    (folder / "plots" / "b.svg").symlink_to("/etc/passwd")
    (folder / "evil").mkdir()
    os.mkfifo(folder / "pipe")
    problems = verify(folder, trusted=_trusted(key)).problems
    assert problems == [
        "added: evil/ (an empty folder, not in the manifest)",
        "added: pipe (not a regular file, not in the manifest)",
        "added: plots/b.svg (a link to /etc/passwd, not in the manifest)",
    ]
    (folder / "plots" / "b.svg").unlink()
    (folder / "plots" / "a.svg").unlink()
    (folder / "plots" / "a.svg").symlink_to(folder / "report.html")  # a listed file replaced by a link
    problems = verify(folder, trusted=_trusted(key)).problems
    assert "removed: plots/a.svg" in problems and any("plots/a.svg (a link to" in p for p in problems)


@pytest.mark.parametrize(
    "manifest, sig",
    [
        ("[]", "{}"),
        ('{"files": {"../../etc/shadow": {"bytes": 1, "sha256": "", "sm3": ""}}, "signers": {}}', None),
        ('{"files": {"/etc/shadow": {"bytes": 1, "sha256": "", "sm3": ""}}, "signers": {}}', None),
        ('{"files": {"a": "x"}, "signers": {}}', None),
        ('{"files": {}, "signers": {"ed25519": 5}}', None),
        ('{"files": {}}', None),
        (None, '{"public_key": 5, "signature": "x"}'),
        (None, '{"public_key": "zz", "signature": "x"}'),
        (None, '{"public_key": "00", "signature": "x", "sm2": "x"}'),
        ("not json", None),
    ],
)
def test_verify_refuses_a_malformed_manifest_with_a_sentence_not_a_traceback(
    tmp_path: Path, manifest: str | None, sig: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, key = _bundle(tmp_path)
    if manifest is not None:
        (folder / "manifest.json").write_text(manifest)
    if sig is not None:
        (folder / "manifest.sig").write_text(sig)
    checked = verify(folder, trusted=_trusted(key))
    assert not checked.ok and len(checked.problems) == 1 and checked.checked == 0
    assert cli(["verify", str(folder), "--fingerprint", _trusted(key)[0]]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_verify_command_reads_an_archive_and_sets_the_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, key = _bundle(tmp_path)
    fp = _trusted(key)[0]
    archive = shutil.make_archive(str(tmp_path / "bundle"), "zip", folder.parent, folder.name)
    assert cli(["verify", archive, "--fingerprint", fp]) == 0
    assert "OK: 3 files match" in capsys.readouterr().out
    assert cli(["verify", archive]) == 1  # no trusted key: not OK
    assert "no trusted key given" in capsys.readouterr().err
    (tmp_path / "trusted.txt").write_text(f"# the tester's key\n{fp}  # given on paper\n")
    assert cli(["verify", archive, "--trusted-keys", str(tmp_path / "trusted.txt")]) == 0
    assert cli(["verify", archive, "--fingerprint", "SHA256:abc"]) == 2
    assert "is not a key fingerprint" in capsys.readouterr().err
    (folder / "evidence.json").write_text("{}")
    changed = shutil.make_archive(str(tmp_path / "changed"), "gztar", folder.parent, folder.name)
    assert cli(["verify", changed, "--fingerprint", fp]) == 1
    assert _changed("evidence.json") in capsys.readouterr().err
    assert cli(["verify", str(tmp_path / "key.pem"), "--fingerprint", fp]) == 2  # neither a folder nor an archive


def test_keygen_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "k.pem"
    assert cli(["keygen", "--out", str(out)]) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    assert cli(["keygen", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def pdf_fonts(pdf: Path) -> str:
    return subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout


def pdf_text(pdf: Path, last: int = 0) -> str:
    args = ["pdftotext", "-layout", *(["-l", str(last)] if last else []), str(pdf), "-"]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def _doc(values: dict[str, list[float]]) -> dict[str, Any]:
    """A run with one numeric measurement per clause: "D" a duration (< 10 s), "R" a rate (>= 100 rows/s)."""
    catalog = [
        {"id": "D", "comparator": "<", "threshold": 10, "unit": "s"},
        {"id": "R", "comparator": ">=", "threshold": 100, "unit": "rows/s"},
    ]
    measurements = []
    for cid, samples in values.items():
        lo, hi = min(samples), max(samples)
        measurements.append(
            {
                "clause_id": cid,
                "target": "pg",
                "statistic": "median",
                "value": sorted(samples)[len(samples) // 2],
                "unit": catalog[0]["unit"] if cid == "D" else "rows/s",
                "sample_unit": catalog[0]["unit"] if cid == "D" else "rows/s",
                "samples": samples,
                "spread": {"min": lo, "max": hi, "stdev": 0.1},
                "verdict": PASS,
            }
        )
    return {"catalog": catalog, "cases": [{"nodeid": "suites/x.py::test_x", "measurements": measurements}]}


def test_compare_flags_only_worse_changes_outside_the_noise() -> None:
    from clauseproof.core.compare import benchmark_json, compare

    base = _doc({"D": [1.0, 1.1, 1.2], "R": [200, 210, 220]})
    slower = _doc({"D": [1.5, 1.6, 1.7], "R": [150, 160, 170]})  # 45 % slower, rate 24 % lower: both worse
    noisy = _doc({"D": [1.1, 1.5, 1.19], "R": [190, 200, 215]})  # ranges overlap the baseline's: noise
    faster = _doc({"D": [0.5, 0.6, 0.7], "R": [400, 410, 420]})
    changes, new, gone = compare(slower, base)
    assert not new and not gone
    assert {c.key.split(" · ")[0]: c.regression(10) for c in changes} == {"D": True, "R": True}
    assert not any(c.regression(50) for c in changes)  # under the gate
    assert not any(c.regression(10) for c in compare(noisy, base)[0])
    assert not any(c.regression(0) for c in compare(faster, base)[0])
    bench = benchmark_json(slower)
    assert [e["value"] for e in bench["smaller"]] == [1.6] and [e["value"] for e in bench["bigger"]] == [160]
    assert bench["smaller"][0]["extra"].startswith("clause D: < 10 s")


def test_compare_command_gates_on_regressions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, doc in (("base", _doc({"D": [1.0, 1.1, 1.2]})), ("new", _doc({"D": [2.0, 2.1, 2.2]}))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "evidence.json").write_text(json.dumps(doc))
    assert cli(["compare", str(tmp_path / "new"), str(tmp_path / "base")]) == 0  # no gate: report only
    assert cli(["compare", str(tmp_path / "new"), str(tmp_path / "base"), "--fail-on-regression", "10%"]) == 1
    out = capsys.readouterr()
    assert "REGRESSION" in out.out and "1 regressions beyond 10 %" in out.err
    assert cli(["compare", str(tmp_path / "new"), str(tmp_path / "nothing")]) == 2


def test_documents_attached_in_a_profile_are_reported_never_passed(
    project: pytest.Pytester, pg_server: Any, tmp_path: Path
) -> None:
    """A warranty letter attached to BZ-DB-5 is DOCUMENTED with its SHA-256 and copied into the signed bundle;
    a document attached to a clause that has a measurement does not change that verdict."""
    from tests.fix_targets import vendor_profile

    (tmp_path / "warranty.txt").write_text("质保两年 / two-year warranty\n", encoding="utf-8")
    profile = vendor_profile(
        tmp_path / "vendor.toml",
        pg_server,
        '[documents]\n"BZ-DB-5" = ["warranty.txt"]\n"BZ-DB-4a" = "warranty.txt"\n',
    )
    result = project.runpytest("suites/bulk_load", f"--cp-target={profile}", "--cp-scale=0.001", "-k", "insert")
    assert result.ret == 0, result.stdout.str()[-2000:]
    folder = project.path / "results" / "latest"
    doc = json.loads((folder / "evidence.json").read_text())
    sha = hashlib.sha256((tmp_path / "warranty.txt").read_bytes()).hexdigest()
    (row,) = [r for r in doc["clause_rows"] if r["id"] == "BZ-DB-5"]
    assert row["verdict"] == "DOCUMENTED" and sha in row["reason"] and row["target"] == "vendor-pg"
    matrix = {r["id"]: r for r in doc["matrix"]["rows"]}
    assert matrix["BZ-DB-5"]["overall"] == "DOCUMENTED"
    assert matrix["BZ-DB-4a"]["overall"] == "NOT EVIDENCE"  # the measurement decides; the document adds nothing
    assert (folder / "documents" / "BZ-DB-5" / "warranty.txt").read_bytes() == (tmp_path / "warranty.txt").read_bytes()
    assert verify(folder, trusted=[doc["report"]["signing"]["fingerprint"]]).ok
    assert "已提供文件 / DOCUMENTED" in (folder / "report.html").read_text()


def test_documents_for_an_unknown_clause_stop_the_run(project: pytest.Pytester, pg_server: Any, tmp_path: Path) -> None:
    (tmp_path / "w.txt").write_text("x")
    profile = vendor_profile_with(tmp_path, pg_server, '[documents]\n"BZ-DB-99" = ["w.txt"]\n')
    result = project.runpytest("suites/bulk_load", f"--cp-target={profile}", "--cp-scale=0.001", "-k", "insert")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "attaches documents to BZ-DB-99, not clause ids of the catalog" in result.stdout.str() + result.stderr.str()
    missing = vendor_profile_with(tmp_path, pg_server, '[documents]\n"BZ-DB-5" = ["nowhere.pdf"]\n')
    result = project.runpytest("suites/bulk_load", f"--cp-target={missing}", "--cp-scale=0.001", "-k", "insert")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "[documents] BZ-DB-5: no such file" in result.stdout.str() + result.stderr.str()


def vendor_profile_with(folder: Path, server: Any, sections: str) -> Path:
    from tests.fix_targets import vendor_profile

    return vendor_profile(folder / "vendor.toml", server, sections)


def test_rerun_repeats_the_recorded_cases_and_refuses_other_code(tmp_path: Path) -> None:
    from clauseproof.cli import rerun_args
    from clauseproof.core.catalog import catalog_sha256

    catalog = shipped.CATALOG  # the package's own; a path named in the bundle is never used
    (tmp_path / "suites" / "a").mkdir(parents=True)
    (tmp_path / "suites" / "a" / "test_a.py").write_text("def test_x():\n    pass\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    doc = {
        "harness": {"commit": commit, "dirty": False},
        "parameters": {
            "seed": 7,
            "scale": 1,
            "repeats": 3,
            "catalog": "/elsewhere/c.toml",
            "catalog_sha256": catalog_sha256(catalog),
            "targets": ["embedded-postgresql"],
        },
        "cases": [
            {"nodeid": "suites/a/test_a.py::test_x[embedded-postgresql]", "outcome": "failed"},
            {"nodeid": "suites/a/test_a.py::test_x[embedded-mariadb]", "outcome": "passed"},
            {"nodeid": "suites/b/test_b.py::test_y[embedded-mariadb]", "outcome": "not run"},
        ],
    }
    args, problems = rerun_args(doc, {"commit": commit}, ["--cp-target=vendor.toml"], tmp_path)
    assert not problems
    assert args == [
        "suites/a/test_a.py::test_x",
        "--cp-seed=7",
        "--cp-scale=1",
        "--cp-repeats=3",
        f"--cp-catalog={catalog}",  # this checkout's, with the recorded content: never a path from the bundle
        "--cp-target=vendor.toml",
    ]
    assert rerun_args(doc, {"commit": commit}, [], tmp_path)[0][-1] == "--cp-target=embedded-postgresql"
    _, problems = rerun_args(doc, {"commit": "b" * 40}, [], tmp_path)
    assert problems == [f"the run was made by commit {commit}, this checkout is {'b' * 40}"]


@pytest.mark.parametrize(
    "change, refused",
    [
        ({"harness": {}}, "names no commit"),
        ({"harness": {"commit": "HEAD; rm -rf /"}}, "names no commit"),
        ({"cases": [{"nodeid": "--rootdir=/tmp/evil", "outcome": "passed"}]}, "not a suites/...::test id"),
        ({"cases": [{"nodeid": "/tmp/evil/test_x.py::test_x", "outcome": "passed"}]}, "not a suites/...::test id"),
        ({"cases": [{"nodeid": "suites/../../tmp/test_x.py::test_x", "outcome": "passed"}]}, "not a suites/"),
        ({"cases": [{"nodeid": "-p evil", "outcome": "passed"}]}, "not a suites/...::test id"),
        ({"parameters": {"seed": "1 -p evil", "scale": 1, "repeats": 1}}, "recorded seed"),
        ({"targets": ["/tmp/evil.toml"]}, "never used; give --cp-target yourself"),
        ({"targets": ["postgresql://x@10.0.0.1/db"]}, "never used; give --cp-target yourself"),
    ],
)
def test_rerun_runs_nothing_a_received_bundle_names_beyond_plain_case_ids(
    change: dict[str, Any], refused: str, tmp_path: Path
) -> None:
    from clauseproof.cli import rerun_args

    commit = "a" * 40
    doc: dict[str, Any] = {
        "harness": {"commit": commit},
        "parameters": {"seed": 7, "scale": 1, "repeats": 3, "targets": ["embedded-postgresql"]},
        "cases": [{"nodeid": "suites/a/test_a.py::test_x", "outcome": "passed"}],
    }
    if "targets" in change:
        doc["parameters"]["targets"] = change.pop("targets")
    doc.update(change)
    args, problems = rerun_args(doc, {"commit": commit}, ["--cp-catalog=x.toml"], None)
    assert any(refused in p for p in problems), problems
    assert not any(a.startswith(("--rootdir", "-p", "/")) for a in args)


def test_rerun_verifies_the_bundle_and_checks_case_ids_against_the_commit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A case id the recorded commit does not have is refused, and a bundle is read only after it verifies."""
    from clauseproof.cli import _in_commit

    root = Path(__file__).resolve().parents[2]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    assert _in_commit(root, head, f"suites/bulk_load/test_bulk_load.py::{_bulk_tests(root)[0]}")
    assert not _in_commit(root, head, "suites/bulk_load/test_bulk_load.py::test_made_up_by_the_sender")
    folder, _ = _bundle(tmp_path)
    assert cli(["rerun", str(folder)]) == 2
    assert "--fingerprint" in capsys.readouterr().err
    forger = keygen(tmp_path / "forger.pem")
    assert cli(["rerun", str(folder), "--fingerprint", fingerprint(forger.public_key())]) == 2
    assert "does not verify, so nothing it names is run" in capsys.readouterr().err


def _bulk_tests(root: Path) -> list[str]:
    text = (root / "suites" / "bulk_load" / "test_bulk_load.py").read_text()
    return re.findall(r"^def (test_\w+)", text, re.M)


def test_every_trial_gets_a_panel_and_its_series_is_not_printed() -> None:
    from clauseproof.core.report import _trials_plot

    series = {
        "t": [0.0, 0.5, 1.0, 1.5],
        "requests_per_s": [300, 0, 0, 310],
        "failures_per_s": [0, 40, 40, 0],
        "windows": [{"label": "fault", "start": 0.5, "end": 1.4}],
    }
    panels = [
        {**series, "kind": k, "title": f"{k} {i}\nnode1→node2, RTO 1.0 s"} for k in ("kill", "freeze") for i in (1, 2)
    ]
    fig = _trials_plot(panels, "every trial")
    assert fig is not None and fig.png.startswith(b"\x89PNG")  # small multiples: an image, in the page and in Word
    assert fig.html.startswith('<img class="plot"') and base64.b64encode(fig.png).decode() in fig.html
    import matplotlib.image as mpimg

    height, width = mpimg.imread(io.BytesIO(fig.png)).shape[:2]
    assert width > height > 200  # two rows of two panels, drawn at 120 dpi
    assert _trials_plot([{"kind": "kill", "t": []}], "nothing") is None


@pytest.mark.parametrize(
    "name, why",
    [
        ("/root/.config/clauseproof/signing-ed25519.pem", "lies outside the profile's folder"),
        ("../../signing-ed25519.pem", "lies outside the profile's folder"),
        ("link-out.pem", "lies outside the profile's folder"),
    ],
)
def test_documents_outside_the_profiles_folder_are_refused(tmp_path: Path, name: str, why: str) -> None:
    """A profile that names the tester's signing key (absolute, through .., or through a link out of its folder)
    would get it copied into the signed bundle: refused at load, naming the file."""
    from clauseproof.core.errors import ClauseproofError
    from clauseproof.targets.single.external import load_profile

    key = keygen(tmp_path / "signing-ed25519.pem")
    assert key is not None
    vendor = tmp_path / "a" / "b"
    vendor.mkdir(parents=True)
    (vendor / "link-out.pem").symlink_to(tmp_path / "signing-ed25519.pem")
    (vendor / "inside.txt").write_text("a warranty")
    target = '[target]\nname = "v"\ndialect = "postgresql"\nhost = "127.0.0.1"\nport = 5432\nuser = "u"\n'
    if name.startswith("/"):
        name = str(tmp_path / "signing-ed25519.pem")
    (vendor / "p.toml").write_text(f'{target}[documents]\n"BZ-DB-5" = ["inside.txt", "{name}"]\n')
    with pytest.raises(ClauseproofError, match=why):
        load_profile(vendor / "p.toml")
    (vendor / "p.toml").write_text(f'{target}[documents]\n"BZ-DB-5" = ["inside.txt"]\n')
    assert [p.name for p in load_profile(vendor / "p.toml").documents["BZ-DB-5"]] == ["inside.txt"]
