"""``clauseproof sync-diff SOURCE_URL TARGET_URL --table T``: one table compared on two servers, as an acceptance
tester checks a delivered sync without writing a mapping (:mod:`clauseproof.sync.derive`); each differing key is
printed when it is named (:class:`clauseproof.sync.checker.Checker`'s ``on_diff``)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from clauseproof.core.errors import ClauseproofError, first_line
from clauseproof.sync.checker import Checker, RowDiff, Settle, Side
from clauseproof.sync.derive import derive
from clauseproof.targets.base import check_reachable, open_endpoint
from clauseproof.targets.single.external import parse_url


def sync_diff(args: argparse.Namespace) -> int:
    """``clauseproof sync-diff``: both sides from their URLs, the mapping from their catalogs, differences printed as
    they are named."""

    def side(name: str, url: str, env: str) -> Side:
        dialect, ep = parse_url(url, password_env=env)
        check_reachable(ep.host, ep.port, f"the {name} {ep.host}:{ep.port}")

        def connect() -> Any:
            try:
                return open_endpoint(dialect, ep)
            except Exception as exc:  # the driver's own: a password refused, a database missing
                raise ClauseproofError(
                    f"cannot connect to the {name} {ep.host}:{ep.port} as {ep.user}: {first_line(exc)}",
                    fix=f"check the URL, and the password in {env}",
                ) from None

        return Side(name, dialect, connect)  # type: ignore[arg-type]

    def split(name: str) -> tuple[str, str]:
        schema, _, table = name.rpartition(".")
        return schema, table

    try:
        if not 1 <= args.jobs <= 64:
            raise ClauseproofError(
                f"--jobs {args.jobs} is out of range",
                checked="1 to 64 parts of the key range at once",
                fix="give about the number of cores the smaller of the two servers can spare",
            )
        settle = _settle(args.settle)
        source = side("source", args.source, args.source_password_env)
        target = side("target", args.target, args.target_password_env)
        (s_schema, table), (t_schema, t_table) = split(args.table), split(args.target_table or args.table)
        d = derive(source, target, table, target_table=t_table, source_schema=s_schema, target_schema=t_schema,
                   key=args.key)  # fmt: skip
        print(f"{d.mapping.name}: key {', '.join(d.mapping.key_names)}; compared:")
        for line in d.how:
            print(f"  {line}")
        for line in d.not_compared:
            print(f"  NOT COMPARED {line}")
        t0 = time.perf_counter()

        def told(diff: RowDiff) -> None:
            print(f"[{time.perf_counter() - t0:6.1f} s] {diff.describe()}", flush=True)

        checker = Checker(source, target, max_listed=args.max_listed, jobs=args.jobs)
        result = checker.check(d.mapping, on_diff=told, settle=settle)
    except ClauseproofError as exc:
        print(f"clauseproof sync-diff: {exc}", file=sys.stderr)
        return 4
    except KeyboardInterrupt:
        print("clauseproof sync-diff: interrupted (the differences above were named before)", file=sys.stderr)
        return 2
    print(result.summary(20))
    if result.settle is not None:
        st = result.settle
        print(f"settle window: {st['column']} at or after {st['cutoff_utc']} (the source's clock "
              f"{st['source_clock_utc']} less {st['min_age_s']:g} s; the target's clock "
              f"{st['target_clock_ahead_s']:+.3f} s from it): rows inside it {st['young_rows']['source']:,} on the "
              f"source, {st['young_rows']['target']:,} on the target, {len(result.young_diffs)} of their keys "
              "differing, not judged")  # fmt: skip
    first = "" if result.first_diff_s is None else f", the first named after {result.first_diff_s:.1f} s"
    print(f"{result.source_rows:,} / {result.target_rows:,} rows in {result.seconds:.1f} s{first}; "
          f"{result.queries} checksum queries, {result.rows_fetched:,} rows fetched")  # fmt: skip
    return 0 if result.equal and not d.not_compared else 1


def _settle(spec: str) -> Settle | None:
    """``--settle COLUMN:SECONDS``."""
    if not spec:
        return None
    column, _, seconds = spec.rpartition(":")
    try:
        age = float(seconds)
    except ValueError:
        age = -1.0
    if not column or not age > 0 or age != age or age == float("inf"):
        raise ClauseproofError(
            f"--settle {spec!r} is not COLUMN:SECONDS",
            checked="a column name, a colon, a positive number of seconds",
            fix="for example --settle updated_at:60 (rows changed within the last minute are not judged)",
        )
    return Settle(column, age)
