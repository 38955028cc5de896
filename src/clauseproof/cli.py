"""The ``clauseproof`` command: list the catalog with coverage, re-render a report, clean up."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clauseproof.core.report import write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clauseproof", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cat = sub.add_parser("catalog", help="list every clause with the cases that verify it")
    cat.add_argument("paths", nargs="*", default=["suites"], help="where the acceptance cases are (default suites)")
    rep = sub.add_parser("report", help="re-render report.html from a run's evidence.json")
    rep.add_argument("run", type=Path, help="a run folder, e.g. results/latest")
    sub.add_parser("reap", help="stop and remove embedded servers left by crashed runs")
    clean = sub.add_parser("cloud-cleanup", help="delete every VM a run created (named cp-<run id>-...)")
    clean.add_argument("--cloud", required=True, help="the cloud profile .toml the run used")
    clean.add_argument("--run", required=True, help="the run id (results/<run id>/, or the VMs' name prefix)")
    drop = sub.add_parser(
        "cleanup", help="drop what a killed run left on an external target (its namespace and databases, by run id)"
    )
    drop.add_argument("--target", required=True, help="the target URL or profile .toml the run used")
    drop.add_argument("--run", required=True, help="the run id (results/<run id>/)")
    args = parser.parse_args(argv)

    if args.command == "catalog":
        import pytest

        return int(pytest.main(["--cp-list-catalog", "-q", "-p", "no:benchmark", *args.paths]))
    if args.command == "report":
        evidence = args.run / "evidence.json"
        try:
            doc = json.loads(evidence.read_text())
        except (OSError, ValueError) as exc:
            print(
                f"clauseproof: cannot read {evidence}: {exc}. Fix: name a folder under results/ "
                "that holds evidence.json.",
                file=sys.stderr,
            )
            return 2
        print(write_report(args.run, doc))
        return 0
    if args.command == "cloud-cleanup":
        return _cloud_cleanup(args.cloud, args.run)
    if args.command == "cleanup":
        return _target_cleanup(args.target, args.run)
    from clauseproof.targets.embedded import reap_stale

    for folder in reap_stale():
        print(f"removed {folder}")
    return 0


def _target_cleanup(spec: str, run_id: str) -> int:
    """Stop the run's sessions and drop ``clauseproof_<run id>`` and the databases named after it; nothing else."""
    import re

    from clauseproof.core.errors import ClauseproofError, first_line
    from clauseproof.core.settings import mask_passwords
    from clauseproof.targets.base import NAMESPACE_PREFIX, check_reachable, drop_run_objects, open_endpoint
    from clauseproof.targets.external import ExternalTarget

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
    from clauseproof.core.errors import ClauseproofError

    if spec in ("simulated", "none"):
        print(f"clauseproof: --cloud {spec}: the simulated cloud lives inside its run; nothing outlives it")
        return 0
    try:
        driver = make_driver(spec)
    except ClauseproofError as exc:
        print(f"clauseproof: {exc}", file=sys.stderr)
        return 2
    try:
        found = [v for v in driver.list_vms(run_id) if v.state != GONE]
        left = cleanup(driver, run_id)
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
