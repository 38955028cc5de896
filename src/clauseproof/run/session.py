"""The run: settings, catalog, targets and case records of one pytest session."""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import secrets
import shutil
import sys
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clauseproof import __version__
from clauseproof.bulk_load.datasets import Dataset, ensure_dataset
from clauseproof.core import masking, shipped
from clauseproof.core.bundle import (
    default_key_path,
    fingerprint,
    keygen,
    load_key,
    sign,
    signers,
    sm2_key,
    write_manifest,
)
from clauseproof.core.catalog import Catalog, catalog_sha256, load_catalog
from clauseproof.core.compare import write_benchmark_json
from clauseproof.core.environment import client_environment, commit_info
from clauseproof.core.errors import ClauseproofError, TargetUnavailable
from clauseproof.core.evidence import (
    NOT_RUN_CONFIG,
    NOT_RUN_INTERRUPTED,
    CaseRecord,
    clause_rows,
    now_utc,
    point_latest,
    run_cost,
    verdict_matrix,
    write_atomic_bytes,
    write_bundle,
)
from clauseproof.core.report import write_report
from clauseproof.core.settings import Settings, mask_passwords, url_passwords
from clauseproof.targets import Target, make_target
from clauseproof.targets.base import NAMESPACE_PREFIX
from clauseproof.targets.containers.engine import is_local_engine
from clauseproof.targets.host.processes import own_code_user

log = logging.getLogger("clauseproof")


class Run:
    """State of one clauseproof run, kept in ``config.stash``."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.run_id = datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
        self.namespace = NAMESPACE_PREFIX + self.run_id.replace("-", "_")
        self.started = now_utc()
        self._catalog: Catalog | None = None
        self._catalog_error: ClauseproofError | None = None
        self.cases: dict[str, CaseRecord] = {}
        #: Node ids selected to run (after -k / -m deselection).
        self.selected: set[str] = set()
        self.targets: dict[str, Target] = {}
        self.target_failures: dict[str, ClauseproofError] = {}
        self.target_info: dict[str, dict[str, Any]] = {}
        self.datasets: dict[str, dict[str, Any]] = {}
        #: Passwords this run knows (inline in target URLs, from the environment): never written anywhere.  Every
        #: value a profile reads from the environment is remembered by :mod:`clauseproof.core.masking` as well.
        self.secrets: set[str] = set(url_passwords(settings.targets))
        if os.environ.get("CLAUSEPROOF_PASSWORD"):
            self.secrets.add(os.environ["CLAUSEPROOF_PASSWORD"])
        for secret in self.secrets:
            masking.remember(secret)
        self.bundle: Path | None = None
        #: Whether ``results/latest`` was moved to this run's bundle (not when the run judged nothing).
        self.latest_moved = False
        #: The signal that interrupted the run, and the case that was running then.
        self.interrupted_by = ""
        #: The configuration error that stopped the run (a target that would not start), said once.
        self.config_error = ""
        self.running: str | None = None
        #: The evidence document of the finished run (also written to the bundle).
        self.document: dict[str, Any] | None = None
        self.signing_key: Ed25519PrivateKey | None = None
        self.sm2_key: Path | None = None
        #: documents the targets' profiles attach to clauses ({clause, target, files})
        self.documents: list[dict[str, Any]] = []
        self._document_bytes: dict[tuple[str, str], bytes] = {}
        atexit.register(self.stop_all_targets)

    # -- catalog ----------------------------------------------------------------------------
    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            if self._catalog_error is not None:
                raise self._catalog_error
            path = self.settings.catalog
            seeds = path.parent / "seeds"
            try:
                if not seeds.is_dir():
                    raise ClauseproofError(
                        f"the clause catalog {path} has no seeds folder beside it ({seeds}): its quoted texts "
                        "cannot be checked against the procurement documents",
                        fix="put the documents the catalog quotes in a seeds/ folder next to it",
                    )
                self._catalog = load_catalog(path, seeds_dir=seeds)
            except ClauseproofError as exc:
                self._catalog_error = exc
                raise
        return self._catalog

    # -- progress ---------------------------------------------------------------------------
    def progress(self, message: str) -> None:
        """A progress line on the terminal, even while output is captured."""
        capman = self.config.pluginmanager.getplugin("capturemanager")
        tw = self.config.get_terminal_writer()
        if capman is not None:
            with capman.global_and_fixture_disabled():
                tw.line(f"[clauseproof] {message}")
                tw.flush()  # seen when it happens, also through a pipe (`| tee log`)
        else:  # pragma: no cover
            print(f"[clauseproof] {message}", file=sys.stderr)

    # -- targets ----------------------------------------------------------------------------
    def preflight(self) -> None:
        """Before collection, every target the run names is checked as far as it can be without starting it: a
        profile read and its documents found, an embedded server's binaries found, an external server answering
        on its port (within the connect timeout).  The first problem stops the run with its paragraph, no bundle
        written (issue 32: it used to surface after collection, with a full report of NOT COVERED rows)."""
        for spec in self.settings.targets:
            try:
                t = make_target(spec, self.settings, self.namespace, self.progress)
                self._attach_documents(t)
                t.preflight()
            except TargetUnavailable:
                continue  # its cases are skipped, each saying why
            except ClauseproofError as exc:
                raise ClauseproofError(f"target {mask_passwords(spec)}: {exc.what}", checked=exc.checked,
                                       fix=exc.fix) from None  # fmt: skip
        self.documents.clear()  # attached again when each target starts

    def target(self, spec: str) -> Target:
        """The started target for ``spec``; a failure to start is remembered and re-raised at once."""
        if spec in self.target_failures:
            raise self.target_failures[spec]
        if spec not in self.targets:
            started = time.perf_counter()
            try:
                t = make_target(spec, self.settings, self.namespace, self.progress)
                self._attach_documents(t)  # a wrong clause id stops the run before the target starts
                self.progress(f"starting target {t.label} ...")
                t.start()
            except ClauseproofError as exc:
                self.target_failures[spec] = exc
                raise
            self.targets[spec] = t
            if t.endpoint is not None and t.endpoint.password:
                self.secrets.add(t.endpoint.password)
                masking.remember(t.endpoint.password)
            info = t.describe()
            info["start_seconds"] = round(time.perf_counter() - started, 2)
            try:
                info["server"] = t.server_environment()
            except Exception as exc:  # recorded, not fatal
                info["server"] = {"error": str(exc)}
            info["server_machine"] = self._server_machine(t, info["server"])
            self.target_info[spec] = info
            self.progress(f"target {t.label} ready in {info['start_seconds']} s")
        return self.targets[spec]

    def _attach_documents(self, t: Target) -> None:
        """The profile's ``[documents]``: clause ids checked against the catalog, files hashed (and copied into the
        bundle when it is written)."""
        documents = getattr(getattr(t, "profile", None), "documents", None) or {}
        unknown = [cid for cid in documents if cid not in self.catalog]
        if unknown:
            raise ClauseproofError(
                f"the profile of {t.label} attaches documents to {', '.join(unknown)}, not clause ids of the catalog",
                checked=f"[documents] against {self.catalog.path}",
                fix="use the ids `clauseproof catalog` lists",
            )
        for cid, paths in documents.items():
            files = []
            for p in paths:
                data = p.read_bytes()
                self._document_bytes[(cid, p.name)] = data  # what was hashed is what goes into the bundle
                files.append({"name": p.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
            self.documents.append({"clause": cid, "target": t.label, "files": files})

    @staticmethod
    def _server_machine(t: Target, server: dict[str, Any]) -> dict[str, Any]:
        """CPU, architecture and OS of the server's machine, and how each fact is known."""
        local_container = t.kind == "containers" and is_local_engine()
        if t.kind == "embedded" or local_container:
            client = client_environment()
            keys = ("cpu_model", "architecture", "cores", "memory_bytes", "os", "kernel")
            return {
                "source": "measured: the container runs on the client machine (a local Docker engine; its limits "
                "are in the target's facts)"
                if local_container
                else "measured: the embedded server runs on the client machine",
                **{k: client[k] for k in keys},
            }
        declared = dict(getattr(getattr(t, "profile", None), "server", None) or {})
        settings = server.get("settings", {}) if isinstance(server, dict) else {}
        reported = {k: settings[k] for k in ("version_compile_machine", "version_compile_os") if k in settings}
        return {
            "source": ("declared in the profile" if declared else "not known")
            + ("; the server reports its build platform" if reported else ""),
            **declared,
            **reported,
        }

    def stop_target(self, spec: str) -> None:
        t = self.targets.pop(spec, None)
        if t is not None:
            t.stop()

    def stop_all_targets(self) -> None:
        for spec in list(self.targets):
            try:
                self.stop_target(spec)
            except Exception as exc:  # pragma: no cover - best effort, logged
                log.warning("stopping %s: %s", spec, exc)

    # -- data -------------------------------------------------------------------------------
    def dataset(self, workload: ModuleType, rows: int) -> Dataset:
        ds = ensure_dataset(workload, rows, self.settings.seed, self.settings.cache, progress=self.progress)
        key = f"{ds.workload}-{ds.rows}"
        if key not in self.datasets or self.datasets[key]["from_cache"]:  # generated in this run stays so
            self.datasets[key] = ds.evidence()
        return ds

    def scaled(self, rows: int) -> int:
        return rows if self.settings.scale >= 1 else max(1000, int(rows * self.settings.scale))

    # -- evidence ---------------------------------------------------------------------------
    def _shipped_catalog(self, catalog: Catalog) -> bool:
        """Whether the run's catalog, as it was read, is the one this package ships (same bytes)."""
        return shipped.CATALOG.is_file() and catalog_sha256(shipped.CATALOG) == catalog.sha256

    def _redacted(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``doc`` with every password this run knows replaced by ``***`` wherever it occurs (a driver's
        error message may quote a connection string); passwords shorter than 4 characters are masked in
        URLs only, so as not to mangle ordinary words."""
        text = mask_passwords(json.dumps(doc, ensure_ascii=False, default=str))
        for secret in sorted((s for s in masking.known() | self.secrets if len(s) >= 4), key=len, reverse=True):
            text = text.replace(json.dumps(secret, ensure_ascii=False)[1:-1], "***")  # as it stands in JSON text
        return dict(json.loads(text))

    def check_results_writable(self, min_free: int = 64 << 20) -> None:
        """Before the first case: the results folder can be written and has room, or a clear error now."""
        folder = self.settings.results
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".probe-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
            free = shutil.disk_usage(folder).free
        except OSError as exc:
            raise ClauseproofError(
                f"the results folder {folder} cannot be written: {exc.strerror or exc}",
                checked="creating the folder and a file in it, before any case runs",
                fix="make it writable, or point --cp-results (CLAUSEPROOF_RESULTS) at a folder that is",
            ) from None
        if free < min_free:
            raise ClauseproofError(
                f"the results folder {folder} has {free >> 20} MiB free, less than the {min_free >> 20} MiB "
                "a run needs",
                fix="free some space, or point --cp-results (CLAUSEPROOF_RESULTS) elsewhere",
            )

    def load_signing_key(self) -> None:
        """The key that will sign the manifest, read now so that a bad one stops the run before any case; the
        default one is made on first use (and said so)."""
        path = self.settings.signing_key
        if path is None:
            path = default_key_path()
            if not path.exists():
                key = keygen(path)
                self.progress(f"made a signing key {path} ({fingerprint(key.public_key())}); keep it")
        self.signing_key = load_key(path)
        self.sm2_key = sm2_key(path)  # None where this machine's OpenSSL has no SM2

    def write_evidence(self, exitstatus: int) -> Path | None:
        """Write the bundle (evidence.json, report.html) of a run that reached its cases; move ``latest`` to it
        when it judged something."""
        if not self.cases:
            return None
        try:
            catalog = self.catalog
        except ClauseproofError:
            return None
        cases = list(self.cases.values())
        interrupted = self._mark_not_run(cases, exitstatus)
        doc = self._redacted(self._document(catalog, cases, exitstatus, interrupted))
        signed_by = signers(self.signing_key, self.sm2_key) if self.signing_key is not None else None
        if signed_by is not None:
            doc["report"]["signing"] = {
                "algorithm": "Ed25519",
                "fingerprint": signed_by["ed25519"],
                "sm2_fingerprint": signed_by["sm2"],
            }
        folder = write_bundle(self.settings.results, self.run_id, doc)
        self._copy_documents(folder)
        formats = self.settings.formats
        write_report(folder, doc, pdf="pdf" in formats, docx="docx" in formats)
        write_benchmark_json(folder, doc)
        write_manifest(folder, doc, signed_by)
        if self.signing_key is not None:
            sign(folder, self.signing_key, self.sm2_key)
        self.bundle = folder
        self.document = doc
        if any(c.measurements for c in cases):  # latest moves only to a complete bundle that judged something
            point_latest(self.settings.results, self.run_id)
            self.latest_moved = True
        return folder

    def _copy_documents(self, folder: Path) -> None:
        """Attached documents go into the bundle (``documents/<clause>/<file>``), so the manifest covers them."""
        for d in self.documents:
            for f in d["files"]:
                dest = folder / "documents" / d["clause"] / f["name"]
                dest.parent.mkdir(parents=True, exist_ok=True)
                write_atomic_bytes(dest, self._document_bytes[(d["clause"], f["name"])])

    def _mark_not_run(self, cases: list[CaseRecord], exitstatus: int) -> dict[str, Any] | None:
        """Cases an interruption or a configuration error kept from running say so; the interruption itself."""
        stopped = {pytest.ExitCode.INTERRUPTED: NOT_RUN_INTERRUPTED, pytest.ExitCode.USAGE_ERROR: NOT_RUN_CONFIG}
        if exitstatus in stopped:
            for c in cases:
                if c.outcome == "not run" and c.nodeid in self.selected:
                    c.outcome = stopped[pytest.ExitCode(exitstatus)]
        if exitstatus != pytest.ExitCode.INTERRUPTED:
            return None
        return {
            "at": now_utc(),
            "by": self.interrupted_by or "SIGINT (Ctrl-C)",
            "during": self.running or "between cases",
            "cases_not_run": sum(c.outcome == NOT_RUN_INTERRUPTED for c in cases),
        }

    def _document(
        self, catalog: Catalog, cases: list[CaseRecord], exitstatus: int, interrupted: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The evidence document: run, harness, parameters, environment, targets, catalog, verdicts, cases."""
        simulated = [i["label"] for i in self.target_info.values() if i.get("simulated")]
        sha, shipped = catalog.sha256, self._shipped_catalog(catalog)
        rows = clause_rows(catalog, cases, self.documents)
        clauses = [asdict(c) for c in catalog]
        return {
            "run_id": self.run_id,
            "started": self.started,
            "finished": now_utc(),
            "exit_status": int(exitstatus),
            "interrupted": interrupted,
            "configuration_error": self.config_error or None,
            "command_line": mask_passwords(" ".join(["pytest", *self.config.invocation_params.args])),
            "harness": {"version": __version__, **commit_info(self.settings.rootdir)},
            "parameters": {
                "targets": [mask_passwords(t) for t in self.settings.targets],
                "repeats": self.settings.repeats,
                "scale": self.settings.scale,
                "seed": self.settings.seed,
                "catalog": str(self.settings.catalog),
                "catalog_sha256": sha,
                "catalog_shipped": shipped,
            },
            "environment": {"client": {**client_environment(), "children_run_as": own_code_user().fact}},
            "targets": list(self.target_info.values())
            + [{"label": mask_passwords(s), "error": str(e)} for s, e in self.target_failures.items()],
            "simulated_targets": simulated,
            "datasets": self.datasets,
            "catalog": clauses,
            "clause_rows": rows if shipped else _marked_custom(rows, sha),
            "matrix": verdict_matrix(clauses, rows),
            "basis": _basis(catalog),
            "documents": self.documents,
            "report": {"lang": self.settings.lang, "tester": self.settings.tester},
            "rerun_of": os.environ.get("CLAUSEPROOF_RERUN_OF") or None,
            "suite_seconds": suite_seconds(cases),
            "run_cost": run_cost(cases, suite_of),
            "cases": [asdict(c) for c in cases],
        }


def _basis(catalog: Catalog) -> list[dict[str, Any]]:
    """The tender documents the catalog quotes: file, size, SHA-256 and how many clauses quote each."""
    out = []
    for name in sorted({c.seed for c in catalog}):
        path = catalog.path.parent / "seeds" / name
        data = path.read_bytes() if path.is_file() else b""
        out.append(
            {
                "file": name,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest() if data else "missing",
                "clauses": sum(c.seed == name for c in catalog),
            }
        )
    return out


def _marked_custom(rows: list[dict[str, Any]], sha: str) -> list[dict[str, Any]]:
    """Rows judged against a catalog other than the shipped one say so, with the catalog's hash."""
    mark = f"judged against a custom catalog (sha256 {sha[:16]}…)"
    return [{**r, "custom_catalog": True, "reason": f"{mark}; {r['reason']}" if r["reason"] else mark} for r in rows]


def suite_of(nodeid: str) -> str:
    """The suite folder of a case (``suites/<suite>/…``), else its file."""
    parts = nodeid.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "suites" else parts[0].split("::")[0]


def suite_seconds(cases: list[CaseRecord]) -> dict[str, float]:
    """Seconds each suite folder took: its cases' set-up, call and tear-down, targets started for them included."""
    out: dict[str, float] = {}
    for c in cases:
        out[suite_of(c.nodeid)] = out.get(suite_of(c.nodeid), 0.0) + c.duration_s
    return {k: round(v, 1) for k, v in out.items()}
