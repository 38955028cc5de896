"""SX-SLA-1/2: availability from real requests, probed at a fixed interval for as long as the clause's period,
into an append-only log that survives restarts; judged with a confidence interval.

``clauseproof probe --for 30d --interval 10s --sql postgresql://... --http https://...`` probes every endpoint on a
fixed grid (``started + k x interval``): a SQL endpoint by a new connection running ``SELECT 1``, an HTTP endpoint
by a GET answered 2xx, each within its timeout.  Every result is one JSON line, flushed and synced, in the log;
the first line states what is probed.  Started again with the same log, the probe resumes (the endpoints and
interval must match); the slots nobody probed are a *gap*, reported as such: neither up nor down, because no
probe saw them.  A line cut off by a kill is dropped on resume, and said so.

Judgement (:func:`judge`): per endpoint (SX-SLA-2, core resources) and per round with every endpoint up
(SX-SLA-1, the system running), the share of successful probes with its exact (Clopper-Pearson) confidence
interval.  PASS needs the interval's lower bound at or above the threshold *and* the log to cover the clause's
period; FAIL when its upper bound is below the threshold (the run is long enough to disprove); otherwise NOT
EVIDENCE, saying how many probes — how long at this interval — would decide it.  The cheapest cheats: a short
run that happened to see no failure (NOT EVIDENCE: too short); a prober stopped during an outage (the gap is
reported and does not count as up); a health page that answers 200 while the database is down (probe the SQL
endpoint itself); a log written by hand or edited (every line carries an HMAC chained over the line before it,
keyed by the tester's signing key: a line changed, added, removed or moved, or a log made without that key, is
refused with its line number); a log of other endpoints than the target's (judged NOT SHOWN for that target); a
slot counted twice (refused).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from clauseproof.core.errors import ClauseproofError
from clauseproof.core.i18n import Text, joined, msg

LOG_VERSION = 2
MAX_FOR_S = 400 * 86400.0
MIN_INTERVAL_S = 0.1
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(text: str) -> float:
    """'30d', '12h', '10s', '500ms', '90' (seconds) → seconds."""
    m = _DURATION.match(text)
    if not m:
        raise ClauseproofError(f"{text!r} is not a duration", fix="write e.g. 30d, 12h, 15m, 10s or 500ms")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}[m.group(2)]


def human(seconds: float) -> str:
    return str(human_text(seconds))


def human_text(seconds: float) -> Text:
    """A duration in the largest unit that fits, in the report's language."""
    if seconds >= 86400:
        return msg("dur_days", n=f"{seconds / 86400:.1f}")
    if seconds >= 3600:
        return msg("dur_hours", n=f"{seconds / 3600:.1f}")
    if seconds >= 60:
        return msg("dur_minutes", n=f"{seconds / 60:.1f}")
    return msg("dur_seconds", n=f"{seconds:.1f}")


@dataclass(frozen=True)
class Endpoint:
    name: str
    kind: str  # sql | http
    url: str  # no password: it comes from password_env

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind, "url": self.url}


def endpoint(kind: str, url: str) -> Endpoint:
    """An endpoint from the command line; a password in a SQL URL is refused (it would be written to the log)."""
    parts = urlsplit(url)
    if kind == "http" and parts.scheme not in ("http", "https"):
        raise ClauseproofError(f"--http {url!r}: not an http(s) URL", fix="e.g. --http https://gw.example/health")
    if kind == "sql":
        if parts.scheme not in ("postgresql", "postgres", "mysql", "mariadb"):
            raise ClauseproofError(f"--sql {url!r}: not a postgresql:// or mysql:// URL",
                                   fix="e.g. --sql postgresql://user@db.example:5432/postgres")  # fmt: skip
        if parts.password:
            raise ClauseproofError(
                f"--sql {parts.scheme}://{parts.username}:***@{parts.hostname}...: a password in the URL would be "
                "written to the log",
                fix="put it in CLAUSEPROOF_PROBE_PASSWORD (or the variable --password-env names)",
            )
    return Endpoint(f"{kind} {parts.hostname}:{parts.port or ''}{parts.path or ''}".rstrip(":"), kind, url)


def check(ep: Endpoint, timeout_s: float, password: str | None) -> tuple[bool, float, str]:
    """One probe: (up, milliseconds, error).  Never raises for the endpoint's own failures."""
    t0 = time.perf_counter()
    try:
        if ep.kind == "http":
            import httpx

            r = httpx.get(ep.url, timeout=timeout_s)
            ok, err = 200 <= r.status_code < 300, "" if 200 <= r.status_code < 300 else f"HTTP {r.status_code}"
        else:
            ok, err = _sql(ep.url, timeout_s, password), ""
    except Exception as exc:  # every failure of the endpoint is a probe that failed, said why
        ok, err = False, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc) else ''}"
    return ok, round((time.perf_counter() - t0) * 1000, 2), err


def _sql(url: str, timeout_s: float, password: str | None) -> bool:
    p = urlsplit(url)
    db = p.path.lstrip("/") or None
    if p.scheme.startswith("postgres"):
        import psycopg

        with psycopg.connect(
            host=p.hostname, port=p.port or 5432, user=p.username, password=password, dbname=db or "postgres",
            connect_timeout=max(1, math.ceil(timeout_s)), options=f"-c statement_timeout={int(timeout_s * 1000)}",
            autocommit=True,
        ) as c:  # fmt: skip
            return c.execute("SELECT 1").fetchone() == (1,)
    from clauseproof.targets.pymysql_conn import connect as connect_mysql

    c = connect_mysql(
        host=p.hostname, port=p.port or 3306, user=p.username or "root", password=password or "", database=db,
        connect_timeout=timeout_s, read_timeout=timeout_s, write_timeout=timeout_s,
    )  # fmt: skip
    try:
        with c.cursor() as cur:
            cur.execute("SELECT 1")
            return cur.fetchone() == (1,)
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------------- the log


@dataclass(frozen=True)
class ProbeKey:
    """The key of a probe log's HMAC chain, derived from the tester's Ed25519 signing key (the one that signs the
    run's bundle): only its holder can write a log the judge accepts."""

    secret: bytes
    fingerprint: str

    @classmethod
    def from_signing_key(cls, key: Any) -> ProbeKey:
        from cryptography.hazmat.primitives import serialization

        from clauseproof.core.bundle import fingerprint

        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())  # fmt: skip
        return cls(hashlib.sha256(b"clauseproof-probe-log/2\0" + raw).digest(), fingerprint(key.public_key()))

    def mac(self, previous: str, row: dict[str, Any]) -> str:
        body = json.dumps(row, separators=(",", ":"), sort_keys=True).encode()
        return hmac.new(self.secret, previous.encode() + b"\0" + body, hashlib.sha256).hexdigest()


def default_probe_key(say: Callable[[str], None] = print) -> ProbeKey:
    """The tester's signing key (CLAUSEPROOF_SIGNING_KEY, else the default one, made on first use as a run does)."""
    from clauseproof.core.bundle import default_key_path, fingerprint, keygen, load_key

    given = os.environ.get("CLAUSEPROOF_SIGNING_KEY")
    path = Path(given) if given else default_key_path()
    if not given and not path.exists():
        made = keygen(path)
        say(f"made a signing key {path} ({fingerprint(made.public_key())}); keep it")
    return ProbeKey.from_signing_key(load_key(path))


@dataclass
class Log:
    header: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)  # {"t", "slot", "ep", "ok", "ms", "err"}
    events: list[dict[str, Any]] = field(default_factory=list)  # start / stop / resume / dropped
    dropped_partial: bool = False
    #: the last line's chained HMAC (the next line continues from it)
    head: str = ""


def _refuse(path: Path, line: int, what: str) -> ClauseproofError:
    return ClauseproofError(
        f"{path}:{line}: {what}: not one honest probe's record, so nothing in it is judged",
        checked="every line's HMAC chained over the one before, keyed by the tester's signing key; each line's "
        "shape; each slot on the probe's grid, once per endpoint",
        fix="judge the log `clauseproof probe` wrote with this signing key, as it wrote it",
    )


def read_log(path: Path, key: ProbeKey) -> Log:
    """The log, its chain checked line by line with ``key`` and every row's shape and slot checked."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClauseproofError(
            f"cannot read the probe log {path}: {exc}", fix="name a log clauseproof probe wrote"
        ) from None
    lines = text.split("\n")
    partial = bool(lines and lines[-1])  # a last line without its newline: cut off by a kill
    rows: list[tuple[int, dict[str, Any]]] = []
    for i, line in enumerate(lines[:-1] if partial else lines):
        if not line:
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise _refuse(path, i + 1, "not a JSON line") from None
        if not isinstance(row, dict):
            raise _refuse(path, i + 1, "not a JSON object")
        rows.append((i + 1, row))
    if not rows or rows[0][1].get("kind") != "clauseproof-probe":
        raise ClauseproofError(f"{path} is not a clauseproof probe log (its first line must be its header)")
    header = rows[0][1]
    if header.get("version") != LOG_VERSION:
        raise _refuse(path, 1, f"a version {header.get('version')} log, without a keyed chain (probe again)")
    if header.get("keyed_by") != key.fingerprint:
        raise _refuse(path, 1, f"written with the key {header.get('keyed_by')}, not this tester's {key.fingerprint}")
    previous = ""
    for n, row in rows:
        mac = row.pop("h", None)
        if not isinstance(mac, str) or not hmac.compare_digest(mac, key.mac(previous, row)):
            raise _refuse(path, n, "its HMAC does not follow from the line before (changed, added, removed or moved)")
        previous = mac
    log = Log(header, dropped_partial=partial, head=previous)
    _check_shape(path, log, rows[1:])
    return log


def _check_shape(path: Path, log: Log, rows: list[tuple[int, dict[str, Any]]]) -> None:
    """Each result on the probe's grid, of an endpoint the header names, each (slot, endpoint) once, in order."""
    h = log.header
    try:
        started, interval, for_s = float(h["started"]), float(h["interval_s"]), float(h["for_s"])
        names = {str(e["name"]) for e in h["endpoints"]}
    except (KeyError, TypeError, ValueError):
        raise _refuse(path, 1, "its header lacks started, interval_s, for_s or endpoints") from None
    last_slot: dict[str, int] = {}
    for n, r in rows:
        if "ep" not in r:
            if not isinstance(r.get("event"), str):
                raise _refuse(path, n, "neither a probe result nor an event")
            log.events.append(r)
            continue
        slot, ep, ok = r.get("slot"), r.get("ep"), r.get("ok")
        if not isinstance(slot, int) or not isinstance(ok, bool) or ep not in names:
            raise _refuse(path, n, "a result without an integer slot, a known endpoint and ok true/false")
        off_grid = abs(float(r.get("t", -1)) - (started + slot * interval)) > 1
        if not 1 <= slot <= math.ceil(for_s / interval) or off_grid:
            raise _refuse(path, n, f"slot {slot} is not on the probe's grid (every {interval:g} s from its start)")
        if slot <= last_slot.get(str(ep), 0):
            raise _refuse(path, n, f"slot {slot} of {ep} again, or out of order: a slot counts once")
        last_slot[str(ep)] = slot
        log.results.append(r)


class Writer:
    """Appends lines to the log, each with its chained HMAC, flushed and synced (a kill loses at most the line being
    written)."""

    def __init__(self, path: Path, key: ProbeKey, head: str = "") -> None:
        self.f: IO[str] = open(path, "a", encoding="utf-8")  # closed by close()
        self.lock = threading.Lock()
        self.key, self.head = key, head

    def write(self, row: dict[str, Any]) -> None:
        with self.lock:
            self.head = self.key.mac(self.head, row)
            self.f.write(json.dumps({**row, "h": self.head}, separators=(",", ":"), sort_keys=True) + "\n")
            self.f.flush()
            os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


def probes_target(log: Log, host: str, port: int) -> bool:
    """Whether the log's SQL endpoints include ``host:port`` (the target a run judges it for)."""
    for e in log.header.get("endpoints", []):
        parts = urlsplit(str(e.get("url", "")))
        default = 5432 if parts.scheme.startswith("postgres") else 3306
        if e.get("kind") == "sql" and parts.hostname == host and (parts.port or default) == port:
            return True
    return False


def open_log(
    path: Path, endpoints: list[Endpoint], interval_s: float, for_s: float, key: ProbeKey
) -> tuple[Writer, Log]:
    """Start a log, or resume one that probes the same endpoints at the same interval (its chain checked first)."""
    if path.exists() and path.stat().st_size:
        log = read_log(path, key)
        h = log.header
        mine = [e.describe() for e in endpoints]
        if h["endpoints"] != mine or h["interval_s"] != interval_s:
            raise ClauseproofError(
                f"{path} probes {[e['url'] for e in h['endpoints']]} every {h['interval_s']} s, not what was asked",
                fix="resume with the same --sql/--http and --interval, or give another --log",
            )
        if log.dropped_partial:  # the cut-off line is removed so that the log stays one JSON object per line
            with open(path, "r+", encoding="utf-8") as f:
                text = f.read()
                f.seek(0)
                f.truncate()
                f.write(text[: text.rfind("\n") + 1])
        w = Writer(path, key, log.head)
        w.write({"event": "resume", "t": time.time(), "pid": os.getpid(), "dropped_partial_line": log.dropped_partial})
        return w, log
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "kind": "clauseproof-probe", "version": LOG_VERSION, "started": time.time(), "interval_s": interval_s,
        "for_s": for_s, "endpoints": [e.describe() for e in endpoints], "host": os.uname().nodename,
        "probe_id": secrets.token_hex(8), "keyed_by": key.fingerprint,
    }  # fmt: skip
    w = Writer(path, key)
    w.write(header)
    w.write({"event": "start", "t": header["started"], "pid": os.getpid()})
    return w, Log(header)


def run_probe(
    path: Path,
    endpoints: list[Endpoint],
    *,
    interval_s: float,
    for_s: float,
    password: str | None = None,
    timeout_s: float | None = None,
    stop: threading.Event | None = None,
    say: Callable[[str], None] = print,
    key: ProbeKey | None = None,
) -> Log:
    """Probe until ``started + for_s`` (resuming ``path`` if it holds this probe), or until ``stop`` is set."""
    if not endpoints:
        raise ClauseproofError("nothing to probe", fix="give --sql URL and/or --http URL")
    if not MIN_INTERVAL_S <= interval_s <= 3600 or not 0 < for_s <= MAX_FOR_S:
        raise ClauseproofError(
            f"--interval {interval_s:g} s / --for {human(for_s)} is out of range",
            checked=f"interval {MIN_INTERVAL_S:g} s to 1 h; for up to {human(MAX_FOR_S)}",
        )
    timeout = min(timeout_s or 5.0, interval_s * 0.9)
    w, log = open_log(path, endpoints, interval_s, for_s, key or default_probe_key(say))
    stop = stop or threading.Event()
    started, end = log.header["started"], log.header["started"] + log.header["for_s"]
    done = {r["slot"] for r in log.results}
    say(f"probing {len(endpoints)} endpoint(s) every {interval_s:g} s until {time.ctime(end)} into {path}"
        + (f" (resumed: {len(done)} rounds already logged)" if done else ""))  # fmt: skip
    pool = ThreadPoolExecutor(max_workers=len(endpoints), thread_name_prefix="clauseproof-probe")
    try:
        while not stop.is_set():
            now = time.time()
            if now >= end:
                break
            slot = math.floor((now - started) / interval_s) + 1
            at = started + slot * interval_s
            if stop.wait(max(0.0, at - time.time())) or at >= end:
                break
            # every endpoint at once, each within its timeout (< the interval): a slow one delays no other
            answers = list(pool.map(lambda e: check(e, timeout, password), endpoints))
            for ep, (ok, ms, err) in zip(endpoints, answers, strict=True):
                row = {"t": round(at, 3), "slot": slot, "ep": ep.name, "ok": ok, "ms": ms}
                if err:
                    row["err"] = err
                w.write(row)
                log.results.append(row)
    finally:
        pool.shutdown(wait=True)
        w.write({"event": "stop", "t": time.time(), "pid": os.getpid(), "complete": time.time() >= end})
        w.close()
    return log


@contextlib.contextmanager
def stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP end the probe cleanly: the current round finishes, a stop line is written."""
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# ---------------------------------------------------------------------------------------------------- judging


def clopper_pearson(k: int, n: int, confidence: float) -> tuple[float, float]:
    from scipy.stats import beta

    a = 1 - confidence
    lo = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def probes_needed(share: float, threshold: float, confidence: float, limit: int = 10**9) -> int | None:
    """The fewest probes at the observed success ``share`` whose interval's lower bound clears ``threshold``
    (None when the share itself is not above it: no number of such probes proves the clause)."""
    if share <= threshold:
        return None
    lo_n, hi_n = 1, 2
    while clopper_pearson(round(share * hi_n), hi_n, confidence)[0] < threshold:
        lo_n, hi_n = hi_n, hi_n * 2
        if hi_n > limit:
            return None
    while lo_n < hi_n:
        mid = (lo_n + hi_n) // 2
        if clopper_pearson(round(share * mid), mid, confidence)[0] >= threshold:
            hi_n = mid
        else:
            lo_n = mid + 1
    return hi_n


@dataclass
class Judgement:
    what: str
    up: int
    probes: int
    share: float
    ci: tuple[float, float]
    verdict: str  # PASS | FAIL | NOT EVIDENCE
    reason: Text | str
    failures: list[dict[str, Any]]

    def statistic(self) -> Text:
        return msg("avail_statistic", what=msg("avail_system") if self.what == SYSTEM else self.what,
                   up=f"{self.up:,}", probes=f"{self.probes:,}", share=f"{self.share * 100:.4f}",
                   lo=f"{self.ci[0] * 100:.4f}", hi=f"{self.ci[1] * 100:.4f}", interval=self.reason_ci)  # fmt: skip

    reason_ci: Text | str = ""


#: the series of rounds in which every endpoint answered
SYSTEM = "every endpoint up (the system)"


def judge(log: Log, threshold_pct: float, period_s: float, confidence: float) -> list[Judgement]:
    """One judgement per endpoint, and one for rounds with every endpoint up (first)."""
    h = log.header
    interval = float(h["interval_s"])
    names = [e["name"] for e in h["endpoints"]]
    by_slot: dict[int, dict[str, bool]] = {}
    for r in log.results:
        by_slot.setdefault(int(r["slot"]), {})[r["ep"]] = bool(r["ok"])
    complete = {s: v for s, v in by_slot.items() if len(v) == len(names)}
    covered_s = len(complete) * interval
    span_s = (max(by_slot) - min(by_slot) + 1) * interval if by_slot else 0.0
    gaps_s = span_s - covered_s
    thr = threshold_pct / 100
    out = []
    series: list[tuple[str, list[bool], list[dict[str, Any]]]] = [
        (SYSTEM, [all(v.values()) for v in complete.values()],
         [{"slot": s, "down": [n for n, ok in v.items() if not ok]} for s, v in complete.items()
          if not all(v.values())]),
    ]  # fmt: skip
    for n in names:
        rows = [r for r in log.results if r["ep"] == n]
        series.append((n, [bool(r["ok"]) for r in rows], [r for r in rows if not r["ok"]]))
    for what, oks, fails in series:
        k, n = sum(oks), len(oks)
        if n == 0:
            out.append(Judgement(what, 0, 0, float("nan"), (0.0, 1.0), "NOT EVIDENCE", msg("avail_no_probe"), []))
            continue
        share = k / n
        lo, hi = clopper_pearson(k, n, confidence)
        need = probes_needed(share, thr, confidence)
        long_enough = covered_s >= period_s
        reason: Text | str
        if hi < thr:
            verdict, reason = "FAIL", msg("avail_upper_below", hi=f"{hi * 100:.4f}", thr=f"{threshold_pct:g}",
                                          failed=n - k)  # fmt: skip
        elif lo >= thr and long_enough:
            verdict, reason = "PASS", ""
        else:
            why: list[Text | str] = []
            if not long_enough:
                why.append(msg("avail_short", covered=human_text(covered_s), period=human_text(period_s)))
            if lo < thr:
                if need is None:
                    why.append(msg("avail_not_above", share=f"{share * 100:.4f}", thr=f"{threshold_pct:g}"))
                else:
                    took = human_text(need * interval)
                    why.append(msg("avail_lower_under", lo=f"{lo * 100:.4f}", thr=f"{threshold_pct:g}",
                                   need=f"{need:,}", took=took, interval=f"{interval:g}"))  # fmt: skip
            verdict, reason = "NOT EVIDENCE", joined(why)
        j = Judgement(what, k, n, share, (lo, hi), verdict, reason, fails[:20])
        conf = f"{confidence * 100:g}"
        j.reason_ci = (
            msg("avail_ci_gaps", conf=conf, covered=human_text(covered_s), gaps=human_text(gaps_s))
            if gaps_s > 0
            else msg("avail_ci", conf=conf, covered=human_text(covered_s))
        )
        out.append(j)
    return out
