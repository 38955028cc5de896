"""The ``clauseproof`` command: list the catalog with coverage, re-render a report, sign and verify runs, clean up."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

from clauseproof.core import shipped
from clauseproof.core.report import num, write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clauseproof", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    acc = sub.add_parser(
        "accept",
        help="run the acceptance suites against the embedded default (or --cp-target=...): the plan this package "
        "ships, or the checkout's suites/ in an editable install",
        description="Every argument goes to pytest (suite paths are relative to the plan's suites/ folder, e.g. "
        "suites/bulk_load); the evidence goes to ./results unless --cp-results says otherwise.  Exit 1: a clause "
        "FAILed; 2: interrupted; 4: a configuration error.",
    )
    acc.add_argument("pytest_args", nargs=argparse.REMAINDER, help="pytest arguments (-k, --cp-target=, ...)")
    cat = sub.add_parser("catalog", help="list every clause with the cases that verify it")
    cat.add_argument("paths", nargs="*", default=["suites"], help="where the acceptance cases are (default suites)")
    rep = sub.add_parser("report", help="re-render report.html from a run's evidence.json")
    rep.add_argument("run", type=Path, help="a run folder, e.g. results/latest")
    sub.add_parser("reap", help="stop and remove embedded servers left by crashed runs")
    cmp = sub.add_parser("compare", help="value changes between two runs, per clause, target and part (CI gate)")
    cmp.add_argument("run", type=Path, help="the new run's folder")
    cmp.add_argument("baseline", type=Path, help="the baseline run's folder")
    cmp.add_argument(
        "--fail-on-regression",
        default="",
        metavar="PCT",
        help="exit 1 when a value got worse by more than PCT (e.g. 10%%) outside both runs' sample ranges",
    )
    rr = sub.add_parser(
        "rerun",
        help="repeat a recorded run (same cases, catalog, seed, scale, repeats) as a witness",
        description="The bundle is verified first against the signer's key; only its case ids of the form "
        "suites/...::test_name that exist in the recorded commit are run.  A recorded target that is not an "
        "embedded one (a URL, a profile) is never taken from the bundle: give --cp-target yourself.",
    )
    rr.add_argument("run", type=Path, help="the recorded run's folder")
    rr.add_argument("--fingerprint", action="append", default=[], help="the signer's key fingerprint (required)")
    rr.add_argument("--trusted-keys", type=Path, default=None, help="a file of trusted fingerprints, one a line")
    rr.add_argument(
        "pytest_args", nargs=argparse.REMAINDER, help="e.g. --cp-target=vendor.toml (default: the recorded)"
    )
    kg = sub.add_parser("keygen", help="make the Ed25519 key that signs each run's manifest")
    kg.add_argument("--out", type=Path, default=None, help="where (default ~/.config/clauseproof/signing-ed25519.pem)")
    ver = sub.add_parser("verify", help="check a run's signature and every file's SHA-256 and SM3 (exit 1 if not)")
    ver.add_argument("run", type=Path, help="a run folder, e.g. results/latest, or a .tar.gz/.zip of one")
    ver.add_argument(
        "--fingerprint",
        action="append",
        default=[],
        help="a trusted signing key's fingerprint, as the signed report prints it (SHA256:... or SM2-SHA256:...); "
        "an OK needs this or --trusted-keys",
    )
    ver.add_argument("--trusted-keys", type=Path, default=None, help="a file of trusted fingerprints, one a line")
    clean = sub.add_parser(
        "cloud-cleanup",
        help="delete every VM a run created, and on OpenStack its server groups, volumes, stacks, users and projects "
        "(named cp-<run id>-...)",
    )
    clean.add_argument("--cloud", required=True, help="the cloud profile .toml the run used")
    clean.add_argument("--run", required=True, help="the run id (results/<run id>/, or the VMs' name prefix)")
    drop = sub.add_parser(
        "cleanup", help="drop what a killed run left on an external target (its namespace and databases, by run id)"
    )
    drop.add_argument("--target", required=True, help="the target URL or profile .toml the run used")
    drop.add_argument("--run", required=True, help="the run id (results/<run id>/)")
    img = sub.add_parser("images", help="container images of the engines, built offline from the Debian mirror")
    img.add_argument("action", choices=["build"], help="build (or find cached) the PostgreSQL and MariaDB images")
    img.add_argument("--force", action="store_true", help="rebuild even when cached")
    eng = sub.add_parser("engine", help="the Docker engine of the containers target")
    eng.add_argument("action", choices=["start"], help="use the running engine, else install docker.io and start it")
    prb = sub.add_parser(
        "probe",
        help="probe SQL/HTTP endpoints at a fixed interval into an append-only, resumable log (SX-SLA-1/2)",
        description="Probe until --for has passed since the log's first start; started again with the same --log, "
        "it resumes.  SIGINT/SIGTERM/SIGHUP stop it cleanly.  --judge reads a log and prints the availability "
        "with its confidence interval.",
    )
    prb.add_argument("--sql", action="append", default=[], metavar="URL", help="postgresql://user@host:port/db or "
                     "mysql://user@host:port/db; a new connection runs SELECT 1")  # fmt: skip
    prb.add_argument("--http", action="append", default=[], metavar="URL", help="GET, up when answered 2xx")
    prb.add_argument("--for", dest="for_", default="30d", help="how long in all, e.g. 30d, 12h (default 30d)")
    prb.add_argument("--interval", default="10s", help="between probe rounds (default 10s)")
    prb.add_argument("--timeout", default="5s", help="per probe, at most 0.9 x the interval (default 5s)")
    prb.add_argument("--log", type=Path, default=Path("results/probe.jsonl"), help="default results/probe.jsonl")
    prb.add_argument("--password-env", default="CLAUSEPROOF_PROBE_PASSWORD", help="the SQL endpoints' password")
    prb.add_argument("--judge", action="store_true", help="only judge the log (threshold 99.9 %%, 95 %% confidence)")
    prb.add_argument("--period", default="30d", help="--judge: the clause's period (default 30d)")
    diff = sub.add_parser(
        "sync-diff",
        help="compare a table on two servers row by row (PostgreSQL / MySQL family), differences printed as found",
        description="The mapping is read from both catalogs (columns paired by name, each compared at the coarser "
        "precision of its two types, the key from the primary key); what cannot be compared is listed.  Exit 0: "
        "the same rows; 1: differences; 4: a configuration error (a server not reached, a table or key missing).",
    )
    diff.add_argument(
        "source", metavar="SOURCE_URL", help="postgresql://user@host:port/db or mysql://user@host:port/db"
    )
    diff.add_argument("target", metavar="TARGET_URL", help="the copy's server, the same form")
    diff.add_argument("--table", required=True, help="the source table (schema.table, or the connection's own)")
    diff.add_argument("--target-table", default="", help="the copy's name when it differs (schema.table)")
    diff.add_argument("--key", default="", help="the columns that identify each row, a,b (default: the primary key)")
    diff.add_argument("--source-password-env", default="CLAUSEPROOF_SOURCE_PASSWORD", help="the source's password")
    diff.add_argument("--target-password-env", default="CLAUSEPROOF_TARGET_PASSWORD", help="the target's password")
    diff.add_argument("--max-listed", type=int, default=1000, help="stop after naming this many differences")
    diff.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="check this many parts of an integer key's range at once, each on a pair of sessions of its own "
        "(for servers with cores to spare; a text or composite key is one pass whatever this says; default 1)",
    )
    diff.add_argument(
        "--settle",
        metavar="COLUMN:SECONDS",
        default="",
        help="leave out keys whose row on either side has the timestamp COLUMN within SECONDS of the source's clock "
        "(rows still inside the replication lag: counted and listed apart, not judged); a delete carries no time, "
        "so a row deleted within the lag is still an extra row",
    )
    args = parser.parse_args(argv)

    if args.command == "accept":
        return _accept(args.pytest_args)
    if args.command == "catalog":
        if args.paths == ["suites"] and not Path("suites").is_dir():  # not in a checkout: the installed plan's
            return _accept(["--cp-list-catalog", "-q", "-p", "no:benchmark"])
        import pytest

        return int(pytest.main(["--cp-list-catalog", "-q", "-p", "no:benchmark", *args.paths]))
    if args.command == "report":
        doc = _read_doc(args.run)
        if doc is None:
            return 2
        for path in write_report(args.run, doc):
            print(path)
        print("the manifest now differs from the re-rendered report: sign the run again or keep the original")
        return 0
    if args.command == "compare":
        return _compare(args.run, args.baseline, args.fail_on_regression)
    if args.command == "rerun":
        _own_options_after_the_run(args)
        trusted = _trusted(args)
        return 2 if trusted is None else _rerun(args.run, args.pytest_args, trusted)
    if args.command == "keygen":
        return _keygen(args.out)
    if args.command == "verify":
        trusted = _trusted(args)
        return 2 if trusted is None else _verify(args.run, trusted)
    if args.command == "cloud-cleanup":
        return _cloud_cleanup(args.cloud, args.run)
    if args.command == "cleanup":
        return _target_cleanup(args.target, args.run)
    if args.command in ("images", "engine"):
        return _containers(args)
    if args.command == "probe":
        return _probe(args)
    if args.command == "sync-diff":
        from clauseproof.sync.command import sync_diff

        return sync_diff(args)
    from clauseproof.targets.containers.engine import reap_containers
    from clauseproof.targets.host.folders import reap_stale

    for folder in reap_stale():
        print(f"removed {folder}")
    for what in reap_containers():
        print(f"removed {what}")
    return 0


def _own_options_after_the_run(args: argparse.Namespace) -> None:
    """``rerun RUN --fingerprint X -k y``: the trust options are rerun's wherever they stand; the rest is pytest's."""
    rest, words = [], list(args.pytest_args)
    while words:
        word = words.pop(0)
        name, eq, value = word.partition("=")
        if name in ("--fingerprint", "--trusted-keys"):
            if not eq:
                value = words.pop(0) if words else ""
            if name == "--fingerprint":
                args.fingerprint.append(value)
            else:
                args.trusted_keys = Path(value)
        else:
            rest.append(word)
    args.pytest_args = rest


def _trusted(args: argparse.Namespace) -> list[str] | None:
    """The fingerprints a witness trusts (--fingerprint, --trusted-keys), or None after saying what is wrong."""
    from clauseproof.core.bundle import parse_fingerprints, read_trusted_keys
    from clauseproof.core.errors import ClauseproofError

    try:
        keys = parse_fingerprints(args.fingerprint)
        if args.trusted_keys is not None:
            keys += read_trusted_keys(args.trusted_keys)
    except ClauseproofError as exc:
        print(f"clauseproof {args.command}: {exc}", file=sys.stderr)
        return None
    return keys


def _probe(args: argparse.Namespace) -> int:
    import os
    import threading

    from clauseproof.core.errors import ClauseproofError
    from clauseproof.sla import availability as av

    try:
        key = av.default_probe_key(lambda line: print(line, file=sys.stderr))
        if args.judge:
            log = av.read_log(args.log, key)
            for j in av.judge(log, 99.9, av.parse_duration(args.period), 0.95):
                print(f"{j.verdict:<13} {j.statistic()}" + (f"\n              {j.reason}" if j.reason else ""))
            return 0
        endpoints = [av.endpoint("sql", u) for u in args.sql] + [av.endpoint("http", u) for u in args.http]
        stop = threading.Event()
        with av.stopped_by_signals(stop):
            log = av.run_probe(
                args.log, endpoints, interval_s=av.parse_duration(args.interval),
                for_s=av.parse_duration(args.for_), password=os.environ.get(args.password_env),
                timeout_s=av.parse_duration(args.timeout), stop=stop, key=key,
            )  # fmt: skip
        down = sum(1 for r in log.results if not r["ok"])
        print(f"{len(log.results):,} probes logged in {args.log}, {down:,} failed; judge: clauseproof probe --judge "
              f"--log {args.log}")  # fmt: skip
    except ClauseproofError as exc:
        print(f"clauseproof probe: {exc}", file=sys.stderr)
        return 4
    return 0


def _containers(args: argparse.Namespace) -> int:
    from clauseproof.core.errors import ClauseproofError
    from clauseproof.targets.containers import engine, images

    try:
        if args.command == "engine":
            print(engine.start_engine())
        else:
            for line in images.build_all(force=args.force):
                print(line)
    except ClauseproofError as exc:
        print(f"clauseproof {args.command}: {exc}", file=sys.stderr)
        return 4
    return 0


def _read_doc(run: Path) -> dict | None:
    evidence = run / "evidence.json"
    try:
        return dict(json.loads(evidence.read_text()))
    except (OSError, ValueError) as exc:
        print(
            f"clauseproof: cannot read {evidence}: {exc}. Fix: name a folder under results/ that holds evidence.json.",
            file=sys.stderr,
        )
        return None


def _compare(run: Path, baseline: Path, gate: str) -> int:
    from clauseproof.core.compare import compare

    try:
        gate_pct = float(gate.rstrip("%")) if gate else None
    except ValueError:
        print(f"clauseproof: --fail-on-regression {gate!r}: give a percentage, e.g. 10%", file=sys.stderr)
        return 2
    now, then = _read_doc(run), _read_doc(baseline)
    if now is None or then is None:
        return 2
    changes, new, gone = compare(now, then)
    print(f"{run} against {baseline}: {len(changes)} values in both runs")
    regressions = []
    for c in changes:
        noise = c.noise
        worse = "worse" if c.worse_pct > 0 else "better" if c.worse_pct < 0 else "same"
        flag = ""
        if gate_pct is not None and c.regression(gate_pct):
            flag = "  REGRESSION"
            regressions.append(c)
        print(
            f"  {c.key}: {num(c.before)} -> {num(c.after)} {c.unit} ({c.pct:+.1f} %, {worse}, {noise}; "
            f"verdict {c.verdicts[0]} -> {c.verdicts[1]}){flag}"
        )
    for key in new:
        print(f"  new: {key}")
    for key in gone:
        print(f"  not measured in {run.name}: {key}")
    if regressions:
        print(f"{len(regressions)} regressions beyond {gate_pct:g} % outside the noise", file=sys.stderr)
        return 1
    return 0


#: A case id a recorded run may name: a test function in a file under suites/ (parameters are the run's own).
NODE_ID = re.compile(r"suites/(?:[A-Za-z0-9_]+/)*test_[A-Za-z0-9_]*\.py::[A-Za-z_][A-Za-z0-9_]*")
#: Targets a bundle may name for a rerun: the harness's own; anything else (a URL, a profile) the witness gives.
OWN_TARGET = re.compile(r"embedded-[a-z0-9-]+|containers-(postgresql|mariadb)")


def _in_commit(root: Path, commit: str, nodeid: str) -> bool:
    """Whether the recorded commit has the file and a function of that name in it."""
    path, name = nodeid.split("::")
    try:
        text = subprocess.run(
            ["git", "show", f"{commit}:{path}"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return re.search(rf"^\s*(async\s+)?def\s+{re.escape(name)}\s*\(", text, re.M) is not None


def rerun_args(doc: dict, current: dict, extra: list[str], root: Path | None = None) -> tuple[list[str], list[str]]:
    """The pytest arguments repeating a recorded run, and the problems that make it not the same run.  Nothing the
    bundle holds becomes an option or a path of its own: case ids must be plain ``suites/...::test`` ids found in
    the recorded commit, and each recorded setting is checked for its type."""
    from clauseproof.core.catalog import catalog_sha256

    problems = []
    recorded = doc.get("harness", {}) if isinstance(doc.get("harness"), dict) else {}
    commit = recorded.get("commit")
    if not isinstance(commit, str) or not re.fullmatch(r"[0-9a-f]{40}", commit):
        problems.append("the recorded run names no commit: its code cannot be named, so it cannot be repeated")
        commit = None
    elif commit != current.get("commit"):
        problems.append(f"the run was made by commit {commit}, this checkout is {current.get('commit')}")
    if recorded.get("dirty"):
        problems.append("the recorded run's checkout had uncommitted changes: its code cannot be named exactly")
    params = doc.get("parameters", {}) if isinstance(doc.get("parameters"), dict) else {}
    cases = doc.get("cases", []) if isinstance(doc.get("cases"), list) else []
    ids = {
        str(c.get("nodeid", "")).split("[")[0]
        for c in cases
        if isinstance(c, dict) and not str(c.get("outcome", "")).startswith("not run")
    }
    tests = sorted(i for i in ids if NODE_ID.fullmatch(i))
    for bad in sorted(ids - set(tests)):
        problems.append(f"the bundle names the case {bad!r}, not a suites/...::test id: refused")
    if commit and root is not None:
        for t in tests:
            if not _in_commit(root, commit, t):
                problems.append(f"the case {t} is not in commit {commit[:12]}: refused")
    if not tests:
        problems.append("the recorded run ran no case")
    settings = {"seed": r"[0-9]{1,12}", "scale": r"[a-z]{1,16}|[0-9.]{1,12}", "repeats": r"[0-9]{1,4}"}
    args = list(tests)
    for key, pattern in settings.items():
        value = str(params.get(key))
        if not re.fullmatch(pattern, value):
            problems.append(f"the recorded {key} {value!r} is not one the harness writes")
        args.append(f"--cp-{key}={value}")
    given = [a.split("=", 1)[1] for a in extra if a.startswith("--cp-catalog=")]
    catalog = Path(given[-1]) if given else shipped.CATALOG
    if not catalog.is_file() or catalog_sha256(catalog) != params.get("catalog_sha256"):
        problems.append(
            f"the catalog {catalog} differs from the recorded one (sha256 {params.get('catalog_sha256')}): give "
            "--cp-catalog=FILE with the recorded content (a path named in the bundle is never used)"
        )
    elif not given:
        args.append(f"--cp-catalog={catalog}")
    if not any(a.startswith("--cp-target") for a in extra):
        targets = params.get("targets", [])
        foreign = [t for t in targets if not (isinstance(t, str) and OWN_TARGET.fullmatch(t))]
        if foreign or not targets:
            problems.append(
                f"the recorded targets {foreign or targets} are not the harness's own: a profile or URL from a "
                "bundle is never used; give --cp-target yourself"
            )
        else:
            args.append("--cp-target=" + ",".join(targets))
    return [*args, *extra], problems


def _rerun(run: Path, extra: list[str], trusted: list[str]) -> int:
    import os

    import pytest

    from clauseproof.core.bundle import verify
    from clauseproof.core.environment import commit_info

    if not trusted:
        print(
            f"clauseproof rerun: {run} is repeated only after its signature is checked against the signer's key. "
            "Fix: pass --fingerprint <the fingerprint the signed report prints> (or --trusted-keys FILE).",
            file=sys.stderr,
        )
        return 2
    checked = verify(run, trusted=trusted)
    if not checked.ok:
        print(f"clauseproof rerun: {run} does not verify, so nothing it names is run:", file=sys.stderr)
        for p in checked.problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    doc = _read_doc(run)
    if doc is None:
        return 2
    root = Path.cwd()
    args, problems = rerun_args(doc, commit_info(root), extra, root)
    if problems:
        print(f"clauseproof: cannot repeat {run} exactly:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        print(
            "Fix: check out the recorded commit (git checkout <commit>) with its catalog, then rerun.", file=sys.stderr
        )
        return 2
    if re.fullmatch(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{4}", str(doc.get("run_id"))):
        os.environ["CLAUSEPROOF_RERUN_OF"] = str(doc.get("run_id"))
    print("clauseproof: pytest " + " ".join(args))
    return int(pytest.main(args))


def _keygen(out: Path | None) -> int:
    from clauseproof.core.bundle import default_key_path, fingerprint, keygen
    from clauseproof.core.errors import ClauseproofError

    path = out or default_key_path()
    try:
        key = keygen(path)
    except ClauseproofError as exc:
        print(f"clauseproof: {exc}", file=sys.stderr)
        return 2
    print(f"{path}: Ed25519 signing key, fingerprint {fingerprint(key.public_key())}")
    print("runs sign with it when it is at the default place or given as --cp-signing-key / CLAUSEPROOF_SIGNING_KEY")
    return 0


def _verify(run: Path, trusted: list[str]) -> int:
    """Check a run folder (or an archive of one) against its signed manifest."""
    import shutil
    import tarfile
    import tempfile
    import zipfile

    from clauseproof.core.bundle import MANIFEST, verify

    tmp = None
    folder = run
    refused: list[str] = []
    try:
        if run.is_file():
            tmp = Path(tempfile.mkdtemp(prefix="clauseproof-verify-"))
            if zipfile.is_zipfile(run):
                with zipfile.ZipFile(run) as z:
                    z.extractall(tmp)
            elif tarfile.is_tarfile(run):
                from clauseproof.core import archive

                with tarfile.open(run) as tar:
                    refused = archive.extract(tar, tmp)  # links and special files named, never unpacked
            else:
                print(f"clauseproof: {run} is neither a folder nor a .zip/.tar archive of a run", file=sys.stderr)
                return 2
            found = sorted(p.parent for p in tmp.rglob(MANIFEST))
            if not found:
                print(f"clauseproof: {run} holds no {MANIFEST}", file=sys.stderr)
                return 2
            folder = found[0]
        result = verify(folder, trusted=trusted)
        result.problems += [f"in the archive: {r}" for r in refused]
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if result.ok:
        sm2 = " and its SM2 signature holds" if result.sm2 else ""
        print(f"{run}: OK: {result.checked} files match the manifest, signed by {result.fingerprint}{sm2}")
        return 0
    print(f"{run}: NOT OK ({len(result.problems)} problems)", file=sys.stderr)
    for p in result.problems:
        print(f"  {p}", file=sys.stderr)
    return 1


def _target_cleanup(spec: str, run_id: str) -> int:
    """Stop the run's sessions and drop ``clauseproof_<run id>`` and the databases named after it; nothing else."""

    from clauseproof.core.errors import ClauseproofError, first_line
    from clauseproof.core.settings import mask_passwords
    from clauseproof.targets.base import NAMESPACE_PREFIX, check_reachable, drop_run_objects, open_endpoint
    from clauseproof.targets.single.external import ExternalTarget

    if not re.fullmatch(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{4}", run_id):
        print(f"clauseproof: {run_id!r} is not a run id (like 20261123-214500-ab12: see results/)", file=sys.stderr)
        return 2
    namespace = NAMESPACE_PREFIX + run_id.replace("-", "_")
    try:
        if spec.endswith(".toml"):
            target = ExternalTarget.from_profile(Path(spec), namespace)
        else:
            target = ExternalTarget.from_url(spec, namespace)
        ep = target._endpoint
        check_reachable(ep.host, ep.port, f"the {target.dialect} target {target.label}")
        conn = open_endpoint(target.dialect, ep)
    except ClauseproofError as exc:
        print(f"clauseproof: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"clauseproof: cannot connect to {mask_passwords(spec)}: {first_line(exc)}", file=sys.stderr)
        return 2
    try:
        dropped = drop_run_objects(conn, target.dialect, namespace)
    finally:
        conn.close()
    print(f"run {run_id} on {target.label}: dropped (if present) {', '.join(dropped)}")
    return 0


def _cloud_cleanup(spec: str, run_id: str) -> int:
    from clauseproof.compute.base import GONE
    from clauseproof.compute.batch import cleanup
    from clauseproof.compute.profile import make_driver
    from clauseproof.compute.roles import RunCleanup
    from clauseproof.core.errors import ClauseproofError

    if spec in ("simulated", "none", "embedded-openstack"):
        print(f"clauseproof: --cloud {spec}: that cloud lives inside its run; nothing outlives it "
              "(after a SIGKILL, `clauseproof reap` stops what the run started)")  # fmt: skip
        return 0
    try:
        driver = make_driver(spec)
    except ClauseproofError as exc:
        print(f"clauseproof: {exc}", file=sys.stderr)
        return 2
    try:
        found = [v for v in driver.list_vms(run_id) if v.state != GONE]
        left = cleanup(driver, run_id)
        if isinstance(driver, RunCleanup):  # groups, volumes, stacks, users and projects of the run
            left += driver.cleanup_run(run_id)
    finally:
        driver.close()
    for v in found:
        if not any(item.startswith(f"{v.name} ({v.id}") for item in left):
            print(f"deleted {v.name} ({v.id}, was {v.state})")
    if left:
        print(f"clauseproof: still there after the clean-up: {', '.join(left)}", file=sys.stderr)
        return 1
    print(f"run {run_id}: {len(found)} VMs deleted, none left")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def acceptance_plan() -> Path | None:
    """The folder holding ``suites/``, ``fixtures/`` and their ``conftest.py``: the copy a built package carries
    (``clauseproof/acceptance``), else the checkout an editable install points into; None when neither is there."""
    for plan in (shipped.PACKAGE / "acceptance", shipped.PACKAGE.parents[1]):
        if (plan / "suites").is_dir() and (plan / "conftest.py").is_file():
            return plan
    return None


def _accept(pytest_args: list[str]) -> int:
    """The acceptance suites of :func:`acceptance_plan`, run by pytest in this process's place (exec)."""
    import os

    plan = acceptance_plan()
    if plan is None:
        print(f"clauseproof: this installation carries no acceptance plan (looked in {shipped.PACKAGE / 'acceptance'}"
              " and the checkout above the package). Fix: install a wheel built with `pip wheel .` from a checkout, "
              "or run ./run accept in the checkout.", file=sys.stderr)  # fmt: skip
        return 4
    args = list(pytest_args)
    paths = [a for a in args if a == "suites" or a.startswith("suites/")]
    args = [str(plan / a) if a in paths else a for a in args]
    if not paths:
        args.insert(0, str(plan / "suites"))
    if not any(a.startswith("--cp-results") for a in args):
        args.append(f"--cp-results={Path.cwd() / 'results'}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(plan), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "pytest", f"--rootdir={plan}", "-p", "no:cacheprovider", *args]
    # pytest takes this process's place, as ./run's exec does: Ctrl-C, SIGTERM and SIGHUP reach the run itself
    # (a child would outlive a SIGTERMed parent), and its exit status is the command's
    os.execve(sys.executable, cmd, env)
