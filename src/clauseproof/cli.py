"""The ``clauseproof`` command: list the catalog with coverage, re-render a report, clean up."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clauseproof.report import write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clauseproof", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cat = sub.add_parser("catalog", help="list every clause with the cases that verify it")
    cat.add_argument("paths", nargs="*", default=["suites"], help="where the acceptance cases are (default suites)")
    rep = sub.add_parser("report", help="re-render report.html from a run's evidence.json")
    rep.add_argument("run", type=Path, help="a run folder, e.g. results/latest")
    sub.add_parser("reap", help="stop and remove embedded servers left by crashed runs")
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
    from clauseproof.targets.embedded import reap_stale

    for folder in reap_stale():
        print(f"removed {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
