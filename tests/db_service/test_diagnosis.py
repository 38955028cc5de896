"""SX-RDS-5 on the embedded PostgreSQL: the real slow log and catalogs pass, and each cheap imitation of a
diagnosis facility — a slow log that lists every statement, one that lists nothing, one that makes up the time, a
status that always says healthy, one that never does — is judged FAIL on the part it fakes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from clauseproof.core.catalog import load_catalog
from clauseproof.core.evidence import CaseEvidence, CaseRecord
from clauseproof.db_service import diagnosis
from clauseproof.targets.roles import Diagnosis, Health, SlowQuery
from clauseproof.targets.single.postgres import EmbeddedPostgres
from tests.fix_targets import CATALOG

#: The imitations that never change wait this long (the suite waits 15 s); a real change is seen at once.
WAIT_S = 3.0


def _evidence() -> CaseEvidence:
    record = CaseRecord("suites/db_service/test_diagnosis.py::t[x]", ["SX-RDS-5"], "selftest")
    return CaseEvidence(record, load_catalog(CATALOG), 1.0)


def _verdicts(ev: CaseEvidence) -> dict[str, str]:
    return {m.statistic.split(" (")[0].split(",")[0]: m.verdict for m in ev.record.measurements}


class Imitation:
    """The real embedded server's diagnosis, with one behaviour replaced."""

    def __init__(self, real: Diagnosis, **replace: object) -> None:
        self.real, self.replace = real, replace
        self.diagnosis_source = "an imitation"

    def slow_query_start(self) -> float:
        return self.real.slow_query_start()

    def slow_queries(self) -> list[SlowQuery]:
        fake = self.replace.get("slow_queries")
        return fake(self.real.slow_queries()) if callable(fake) else self.real.slow_queries()

    def health(self) -> Health:
        fake = self.replace.get("health")
        return fake if isinstance(fake, Health) else self.real.health()

    def diagnosis_stop(self) -> None:
        self.real.diagnosis_stop()


@pytest.fixture()
def server(pg_server: EmbeddedPostgres) -> Iterator[EmbeddedPostgres]:
    yield pg_server
    pg_server.diagnosis_stop()


def test_the_real_slow_log_and_catalogs_pass(server: EmbeddedPostgres) -> None:
    ev = _evidence()
    diagnosis.check_slow_queries(server, server, ev, delay_s=10)
    diagnosis.check_health(server, server, ev, fill_allowed="not in this test", wait_s=WAIT_S)
    verdicts = [m.verdict for m in ev.record.measurements]
    assert verdicts == ["PASS"] * 5 + ["NOT SHOWN"], _verdicts(ev)


class _Start(Imitation):
    """The real diagnosis, started its own way."""

    def __init__(self, real: Diagnosis, start: Callable[[], float]) -> None:
        super().__init__(real)
        self._start = start

    def slow_query_start(self) -> float:
        return self._start()


def test_a_slow_log_listing_every_statement_fails(server: EmbeddedPostgres) -> None:
    """A real misconfiguration as the cheat: log_min_duration_statement = 0 while the service claims 1 s."""

    def start_listing_everything() -> float:
        threshold = server.slow_query_start()
        conn = server.connect(in_namespace=False)
        with conn.cursor() as cur:
            cur.execute("ALTER SYSTEM SET log_min_duration_statement = 0")
            cur.execute("SELECT pg_reload_conf()")
        conn.close()
        time.sleep(0.5)  # the reload reaches new sessions
        return threshold

    ev = _evidence()
    diagnosis.check_slow_queries(server, _Start(server, start_listing_everything), ev, delay_s=10)
    v = _verdicts(ev)
    assert v["slow-query analysis lists none of the 20 fast statements run beside it"] == "FAIL", v
    assert "lists 20 of them" in ev.record.measurements[-1].reason


def test_a_slow_log_listing_nothing_or_a_made_up_time_fails(server: EmbeddedPostgres) -> None:
    ev = _evidence()
    diagnosis.check_slow_queries(server, Imitation(server, slow_queries=lambda real: []), ev, delay_s=1)
    assert ev.record.measurements[0].verdict == "FAIL" and "not listed" in ev.record.measurements[0].reason
    made_up = Imitation(server, slow_queries=lambda real: [SlowQuery(q.text, 0.05) for q in real])
    ev = _evidence()
    diagnosis.check_slow_queries(server, made_up, ev, delay_s=10)
    assert ev.record.measurements[0].verdict == "FAIL" and "listed with 0.050 s" in ev.record.measurements[0].reason


def test_a_status_that_always_says_healthy_fails(server: EmbeddedPostgres) -> None:
    ev = _evidence()
    diagnosis.check_health(
        server, Imitation(server, health=Health(True)), ev, fill_allowed="not in this test", wait_s=WAIT_S
    )
    v = [m.verdict for m in ev.record.measurements]
    assert v == ["PASS", "FAIL", "PASS", "NOT SHOWN"], _verdicts(ev)
    assert "it stayed healthy" in ev.record.measurements[1].reason


def test_a_status_that_never_says_healthy_fails(server: EmbeddedPostgres) -> None:
    ev = _evidence()
    always = Health(False, ("lock wait: session 1 2 3 4 5 6 7 8 9 0 ... something is wrong",))
    diagnosis.check_health(server, Imitation(server, health=always), ev, fill_allowed="not in this test", wait_s=WAIT_S)
    v = [m.verdict for m in ev.record.measurements]
    assert v[0] == "FAIL" and v[2] == "FAIL", _verdicts(ev)
