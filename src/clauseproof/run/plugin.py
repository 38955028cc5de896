"""The pytest plugin: options, the ``clause`` marker, fixtures and the evidence bundle.

Thin by design: the work lives in :mod:`clauseproof.run.session` and the modules it uses.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import pytest

from clauseproof.bulk_load.datasets import Dataset
from clauseproof.core import masking, shipped
from clauseproof.core.catalog import Catalog
from clauseproof.core.errors import ClauseproofError, NotApplicable, TargetUnavailable
from clauseproof.core.evidence import CaseEvidence, CaseRecord
from clauseproof.core.i18n import skip
from clauseproof.core.settings import Settings, mask_passwords
from clauseproof.run.options import add_options, as_usage_error, read_settings
from clauseproof.run.session import Run
from clauseproof.targets import Target
from clauseproof.targets.host.folders import reap_stale

RUN_KEY = pytest.StashKey[Run]()
SUITES_DIR = "suites"


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clause(*ids): the catalog clause ids this case verifies")
    config.addinivalue_line("markers", "slow: long-running; excluded from the default self-test run")
    run = config.stash[RUN_KEY] = Run(config, read_settings(config))
    masking.install_log_masking()
    reap_stale()

    def _stop(signum: int, frame: FrameType | None) -> None:  # like Ctrl-C: cases clean up, the bundle is written
        run.interrupted_by = signal.Signals(signum).name
        raise KeyboardInterrupt(run.interrupted_by)

    for sig in (signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal was closed
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _stop)


def _read_only(config: pytest.Config) -> bool:
    """A run that only lists (--collect-only, the catalog listing) writes no bundle."""
    return bool(config.getoption("collectonly", False) or config.getoption("cp_list_catalog", False))


def pytest_sessionstart(session: pytest.Session) -> None:
    if _read_only(session.config):
        return
    try:
        run = _run(session.config)
        run.preflight()  # a bad profile, binary folder or unreachable target: said now, no bundle
        run.check_results_writable()
        run.load_signing_key()
    except ClauseproofError as exc:
        raise as_usage_error(exc) from None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    run = _run(item.config)
    run.running = item.nodeid
    result = yield  # an interruption propagates from here and leaves the case named
    run.running = None
    return result


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """A capability says a case does not apply (:class:`NotApplicable`): the case is skipped with its reason."""
    try:
        return (yield)
    except NotApplicable as exc:
        if exc.text is not None:
            skip(exc.text)  # the report says it in its language
        pytest.skip(exc.what)


def _run(config: pytest.Config) -> Run:
    return config.stash[RUN_KEY]


def pytest_report_header(config: pytest.Config) -> list[str]:
    run = _run(config)
    s = run.settings
    targets = mask_passwords(", ".join(s.targets))
    return [
        f"clauseproof: run {run.run_id} (namespace {run.namespace}); targets {targets}; scale {s.scale:g}; "
        f"repeats {s.repeats}; results {s.results}"
    ]


def _clause_ids(item: pytest.Item) -> list[str]:
    ids: list[str] = []
    for mark in item.iter_markers("clause"):
        ids.extend(str(a) for a in mark.args)
    return ids


def _in_suites(item: pytest.Item, root: Path) -> bool:
    try:
        rel = Path(str(item.path)).resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return rel.parts[:1] == (SUITES_DIR,)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    run = _run(config)
    marked = [(item, _clause_ids(item)) for item in items]
    problems: list[str] = []
    unmarked = [i.nodeid for i, ids in marked if not ids and _in_suites(i, run.settings.rootdir)]
    if unmarked:
        problems.append(
            "these acceptance cases name no clause: " + ", ".join(unmarked[:5]) + ' (add @pytest.mark.clause("ID"))'
        )
    if any(ids for _, ids in marked):
        try:
            catalog = run.catalog
        except ClauseproofError as exc:
            raise as_usage_error(exc) from None
        for item, ids in marked:
            unknown = [i for i in ids if i not in catalog]
            if unknown:
                problems.append(
                    f"{item.nodeid}: unknown clause id {', '.join(repr(u) for u in unknown)} (not in {catalog.path})"
                )
    if problems:
        raise pytest.UsageError(
            "clauseproof: collection error: "
            + "; ".join(problems)
            + ". Clause ids are listed by `clauseproof catalog`."
        )
    for item, ids in marked:
        if ids:
            params = item.callspec.params if hasattr(item, "callspec") else {}
            target = params.get("target") or params.get("replicated") or params.get("ha_cluster")
            run.cases[item.nodeid] = CaseRecord(
                nodeid=item.nodeid, clause_ids=ids, target=mask_passwords(str(target)) if target else None
            )
    run.selected = {item.nodeid for item in items}
    if config.getoption("cp_list_catalog"):
        _print_catalog(config, run)
        config.stash[_LISTED] = True
        items[:] = []


_LISTED = pytest.StashKey[bool]()


def _print_catalog(config: pytest.Config, run: Run) -> None:
    tw = config.get_terminal_writer()
    coverage: dict[str, list[str]] = {}
    for case in run.cases.values():
        for cid in case.clause_ids:
            coverage.setdefault(cid, []).append(case.nodeid)
    catalog = run.catalog
    tw.line(
        f"clause catalog {catalog.path}: {len(catalog)} clauses, {sum(1 for c in catalog if c.id in coverage)} covered"
    )
    for c in catalog:
        mark = "" if c.mark == "plain" else c.mark
        tw.line(f"{c.id:<12} {mark:<2} {c.rule():<24} {c.summary}")
        nodes = coverage.get(c.id)
        if nodes:
            for n in sorted(nodes):
                tw.line(f"{'':16}verified by {n}")
        else:
            tw.line(f"{'':16}not covered ({c.verification})")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" in metafunc.fixturenames:
        specs = list(_run(metafunc.config).settings.targets)
        metafunc.parametrize("target", specs, indirect=True, scope="session", ids=[_target_id(s) for s in specs])


def _target_id(spec: str) -> str:
    if "://" in spec:
        from clauseproof.targets.single.external import parse_url

        try:
            dialect, ep = parse_url(spec)
        except ClauseproofError:
            return "external"
        return f"external-{dialect}-{ep.host}-{ep.port}"
    if spec.endswith(".toml"):
        return Path(spec).stem
    return spec


#: Exit status of a run stopped by a configuration error (pytest's usage error): a bad profile, missing
#: binaries, an unreachable target, a wrong password.
CONFIG_ERROR = int(pytest.ExitCode.USAGE_ERROR)


def started_target(run: Run, spec: str) -> Target:
    """The started target for ``spec``; the case is skipped if it cannot exist here; a target that will not
    start stops the run with its message, said once (exit status 4: a configuration error)."""
    try:
        return run.target(spec)
    except TargetUnavailable as exc:
        pytest.skip(f"{mask_passwords(spec)}: {exc}")
    except ClauseproofError as exc:
        run.config_error = f"target {mask_passwords(spec)}: {exc}"
        pytest.exit(f"clauseproof: configuration error: {run.config_error}", returncode=CONFIG_ERROR)


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The started target of this parametrization; stopped after its last case."""
    run = _run(request.config)
    spec = request.param
    t = started_target(run, spec)
    try:
        yield t
    finally:
        run.stop_target(spec)


@pytest.fixture(scope="session")
def cp_settings(request: pytest.FixtureRequest) -> Settings:
    """The validated clauseproof settings of this run."""
    return _run(request.config).settings


@pytest.fixture(scope="session")
def clause_catalog(request: pytest.FixtureRequest) -> Catalog:
    """The clause catalog."""
    return _run(request.config).catalog


@pytest.fixture(scope="session")
def ddl_dir(request: pytest.FixtureRequest) -> Path:
    """Folder of per-dialect DDL files (``src/clauseproof/ddl/<dialect>/<workload>.sql``)."""
    return shipped.DDL


@pytest.fixture(scope="session")
def dataset(request: pytest.FixtureRequest) -> Callable[[ModuleType, int], Dataset]:
    """Factory: ``dataset(workload_module, rows)`` returns the cached deterministic data set."""
    return _run(request.config).dataset


@pytest.fixture(scope="session")
def scaled(request: pytest.FixtureRequest) -> Callable[[int], int]:
    """``scaled(rows)``: the row count to use at the run's --cp-scale."""
    return _run(request.config).scaled


@pytest.fixture()
def evidence(request: pytest.FixtureRequest) -> CaseEvidence:
    """Records parameters, the timed window and measurements of this case."""
    run = _run(request.config)
    record = run.cases.get(request.node.nodeid)
    if record is None:
        raise ClauseproofError(
            f"{request.node.nodeid} uses the evidence fixture but names no clause", fix='add @pytest.mark.clause("ID")'
        )
    simulated = any(t.simulated for spec, t in run.targets.items() if mask_passwords(spec) == record.target)
    return CaseEvidence(record, run.catalog, run.settings.scale, simulated, progress=run.progress)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    _mask_report(report)
    record = _run(item.config).cases.get(item.nodeid)
    if record is not None:
        record.duration_s += report.duration
        if report.skipped:
            record.outcome = "skipped"
            longrepr = report.longrepr
            record.message = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr or "")
            record.message = record.message.removeprefix("Skipped: ")
        elif report.failed:
            record.outcome = "failed" if report.when == "call" else "error"
            record.message = _short(report)
        elif report.when == "call" and record.outcome == "not run":
            record.outcome = "passed"
        if report.when == "call":  # JUnit XML properties, written from the teardown report (junit_family=xunit1)
            item.user_properties.extend(("clause", cid) for cid in record.clause_ids)
            item.user_properties.extend(
                (f"{m.clause_id} {m.target}", f"{m.verdict}: {m.value} {m.unit}") for m in record.measurements
            )
    return report


def _mask_report(report: pytest.TestReport) -> None:
    """A secret in a failure's text (an assertion that printed a credential, a driver error quoting a password)
    is masked before pytest prints it, writes it to JUnit XML, or the evidence takes it."""
    if not masking.known() or report.longrepr is None or isinstance(report.longrepr, tuple):
        return
    text = str(report.longrepr)
    masked = masking.mask(text)
    if masked != text:
        report.longrepr = masked
    for i, (name, content) in enumerate(report.sections):
        report.sections[i] = (name, masking.mask(content))


def _short(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)
    return str(report.longrepr)[-2000:]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = _run(session.config)
    if session.config.stash.get(_LISTED, False):
        session.exitstatus = 0
        return
    if _read_only(session.config):
        run.stop_all_targets()
        return
    started = time.perf_counter()
    with _finishing(run, say=bool(run.cases or run.targets)) as signals:
        run.stop_all_targets()
        folder = run.write_evidence(exitstatus)
    if folder is not None:
        run.progress(f"evidence written in {time.perf_counter() - started:.1f} s")
    if signals and exitstatus != pytest.ExitCode.INTERRUPTED:
        run.interrupted_by = run.interrupted_by or signals[0]
        session.exitstatus = pytest.ExitCode.INTERRUPTED  # asked to stop: it stopped once nothing was lost


@contextlib.contextmanager
def _finishing(run: Run, *, say: bool) -> Iterator[list[str]]:
    """Stopping the targets and writing the bundle are not cut short by the first Ctrl-C, SIGTERM or SIGHUP (a
    signal there used to leave servers running and a bundle without its manifest): the signal is noted and said, the
    finish goes on, and the run ends as interrupted; a second signal stops at once (``clauseproof reap`` then finds
    what is left)."""
    got: list[str] = []

    def defer(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if got:
            raise KeyboardInterrupt(name)
        got.append(name)
        run.progress(f"{name}: stopping the targets and writing the evidence first (a second signal stops at once)")

    if threading.current_thread() is not threading.main_thread():  # (a run driven from a thread: no handlers)
        yield got
        return
    kinds = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.getsignal(s) for s in kinds}
    for s in kinds:
        signal.signal(s, defer)
    if say:
        run.progress("stopping the targets and writing the evidence ...")
    try:
        yield got
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


#: columns of the terminal's clause table and their least widths
_COLUMNS = {"id": 10, "target": 22, "verdict": 13, "measured": 18, "rule": 18}


def cost_lines(cost: dict[str, dict[str, Any]]) -> list[str]:
    """The cost of the run per suite, for the console: wall time = timed windows + what the clauses impose + the
    harness's overhead, and the case that spent most of the overhead."""
    if not cost:
        return []
    rows = sorted(cost.items(), key=lambda kv: -kv[1]["wall_s"])
    width = max([len(k) for k in cost] + [len("time per suite")])
    out = [f"{'time per suite':<{width}}  {'wall':>7}  {'timed':>7}  {'imposed':>7}  {'overhead':>13}  largest item"]
    total = {k: sum(c[k] for c in cost.values()) for k in ("wall_s", "timed_s", "imposed_s", "overhead_s")}
    for name, c in rows:
        top = c["largest"][0] if c["largest"] else None
        item = f"{top['case'].split('::')[-1][:50]} {top['overhead_s']:,.0f} s" if top else ""
        out.append(
            f"{name:<{width}}  {c['wall_s']:>6,.0f}s  {c['timed_s']:>6,.0f}s  {c['imposed_s']:>6,.0f}s  "
            f"{c['overhead_s']:>6,.0f}s {c['overhead_pct']:>4.0f} %  {item}"
        )
    pct = 100 * total["overhead_s"] / total["wall_s"] if total["wall_s"] else 0.0
    out.append(
        f"{'all':<{width}}  {total['wall_s']:>6,.0f}s  {total['timed_s']:>6,.0f}s  {total['imposed_s']:>6,.0f}s  "
        f"{total['overhead_s']:>6,.0f}s {pct:>4.0f} %  (overhead: starting targets, data, set-up, checks)"
    )
    return out


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = _run(config)
    if run.bundle is None or run.document is None:
        return
    doc = run.document
    counts: dict[str, int] = {}
    for row in doc["clause_rows"]:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    terminalreporter.section("clauseproof")
    shown = [r for r in doc["clause_rows"] if r["verdict"] != "NOT COVERED"]
    width = {k: max([len(str(r.get(k, ""))) for r in shown] + [minimum]) for k, minimum in _COLUMNS.items()}
    for row in shown:
        case = row.get("nodeid", "").split("::")[-1].split("[")[0]
        if row.get("statistic", "").startswith("part: "):
            case += " — " + row["statistic"][6:70]
        elif row["verdict"] in ("SKIPPED", "ERROR") and row.get("reason"):
            case += " — " + row["reason"].splitlines()[0][:70]  # the report has the whole reason
        cells = [f"{row.get(k, '')!s:<{w}}" for k, w in width.items()]  # as wide as the longest target
        terminalreporter.line(" ".join([*cells, case]))
    terminalreporter.line("verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for line in cost_lines(doc.get("run_cost") or {}):
        terminalreporter.line(line)
    terminalreporter.line(f"report: {run.bundle / 'report.html'}")
    terminalreporter.line(f"evidence: {run.bundle / 'evidence.json'}")
    if not run.latest_moved:
        terminalreporter.line("results/latest was not moved: this run judged no clause")
    if doc.get("interrupted"):
        i = doc["interrupted"]
        terminalreporter.line(f"interrupted by {i['by']} during {i['during']}; {i['cases_not_run']} cases not run")
    meaning = EXIT_MEANING.get(int(exitstatus))
    if int(exitstatus) == 1 and not counts.get("FAIL"):  # pytest's 1 is also a case that ended in an error
        meaning = "a case ended in an error before its verdict (the failure above says where; no clause FAILED)"
    if meaning:
        terminalreporter.line(f"exit status {int(exitstatus)}: {meaning}")


#: What each exit status of an acceptance run means (the README lists them too).
EXIT_MEANING = {
    0: "no clause FAILED",
    1: "at least one clause FAILED (a valid result; the report says which and why)",
    2: "interrupted (Ctrl-C, SIGTERM or SIGHUP): the bundle holds what was judged before",
    3: "internal error of the harness",
    4: "configuration error (bad option, catalog, profile, or a target that would not start)",
}
