"""SX-RDS-1: the MySQL engine, told by behaviour — the protocol greeting, GTIDs, authentication plugins, the data
dictionary, MySQL 8 functions, SQL modes, and the look-alikes' features absent — never by ``@@version``.

The embedded MariaDB is the control that must be told apart: it is not MySQL, and its verdict says what differed.
The probes are in ``clauseproof.db_service.engine``."""

from __future__ import annotations

import pytest

from clauseproof.core.evidence import CaseEvidence
from clauseproof.db_service.engine import check_mysql_engine
from clauseproof.targets.roles import Database


@pytest.mark.clause("SX-RDS-1")
def test_mysql_engine_by_behaviour(target: Database, evidence: CaseEvidence) -> None:
    check_mysql_engine(target, evidence)
    evidence.require_pass()
