"""BZ-DB-2: SM4 storage encryption of data files, logs and backups — proven or disproven part by part; the same scan
is BZ-SEC-1's storage part (any cipher: the seed 003 clause asks for security, not SM4).

Known-answer tests check the harness's own SM4.  The canary scan writes 16 random canaries
through the server (table rows, an index, a temporary table, an update whose old values go to
the logs), forces them to disk, takes a physical backup, and searches the raw bytes of every
file class for them (``clauseproof.encryption.canary_scan``).  A class holding a canary is not encrypted.  The
plain embedded servers are the positive control: they must fail, naming where the plaintext was found.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import msg, skip
from clauseproof.encryption import canary_scan
from clauseproof.encryption.sm4 import KAT_KEY, KAT_ONE, known_answers, random_vectors
from clauseproof.run.plugin import RUN_KEY
from clauseproof.targets.roles import Database, DataFiles


@pytest.mark.clause("BZ-DB-2")
def test_sm4_known_answers(evidence: CaseEvidence) -> None:
    """The harness's SM4 (``cryptography``) against both GB/T 32907-2016 examples."""
    started = time.perf_counter()
    results = known_answers()
    evidence.parameters(
        known_answers=[{"name": r.name, "expected": r.expected, "got": r.got} for r in results],
        seconds=round(time.perf_counter() - started, 3),
    )
    evidence.measure(
        "BZ-DB-2",
        all(r.ok for r in results),
        "bool",
        statistic=msg("part_sm4_known_answers"),
    )
    evidence.require_pass()


#: Random (key, block) pairs per run beside the published example: a looked-up answer cannot pass.
RANDOM_VECTORS = 8


@pytest.mark.clause("BZ-DB-2")
def test_target_sm4_known_answer(target: Database, evidence: CaseEvidence) -> None:
    """The target's own SM4, through the profile's [sm4] encrypt_sql: GB/T 32907-2016 example 1 and
    random keys and blocks made for this run, each compared with the harness's SM4 (cryptography)."""
    sql = target.profile.sm4.get("encrypt_sql") if target.profile else None
    if not sql:
        skip(msg("skip_no_sm4_sql"))
    vectors = [(KAT_KEY, KAT_KEY, KAT_ONE), *random_vectors(RANDOM_VECTORS)]
    results = []
    with target.connect() as conn, conn.cursor() as cur:
        for key, block, expected in vectors:
            cur.execute(sql.format(key_hex=key.hex(), plaintext_hex=block.hex()))
            row = cur.fetchone()
            got = _ciphertext_hex(row[0] if row else "")
            results.append({"key": key.hex(), "plaintext": block.hex(), "expected": expected.hex(), "got": got})
    wrong = [r for r in results if r["got"] != r["expected"]]
    published_ok = results[0]["got"] == results[0]["expected"]
    evidence.parameters(
        encrypt_sql=sql,
        vectors=results,
        vectors_from="GB/T 32907-2016 example 1, then random keys and blocks made for this run (test keys that "
        "protect nothing, recorded so the check can be repeated), expected values from the harness's SM4",
    )
    if not wrong:
        why = ""
    elif published_ok:
        why = (
            f"the published example is right but {len(wrong)} of {RANDOM_VECTORS} random vectors are wrong "
            "(a looked-up answer is not an SM4 implementation)"
        )
    else:
        why = f"{len(wrong)} of {len(results)} vectors wrong, the published example among them"
    evidence.measure(
        "BZ-DB-2",
        not wrong,
        "bool",
        statistic=msg("part_target_sm4", n=RANDOM_VECTORS),
        why=why,
    )
    evidence.require_pass()


def _ciphertext_hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):  # a binary result: the ciphertext itself
        return bytes(value).hex()
    return str(value).strip().lower().removeprefix("\\x")  # text: hex, possibly with PostgreSQL's bytea prefix


@pytest.mark.clause("BZ-DB-2", "BZ-SEC-1")
def test_canary_scan(target: Database, evidence: CaseEvidence) -> None:
    """Plaintext canaries in data files, logs, temporary files and backups (each a part of BZ-DB-2).

    Embedded targets are scanned in place; an external target needs the profile's
    ``[commands] copy_files`` (which copies the data directory to ``{output_dir}``), and its
    ``backup`` command if physical backups are to be scanned too.
    """
    commands = target.profile.commands if target.profile else {}
    if not isinstance(target, DataFiles) and "copy_files" not in commands:
        pytest.skip(
            "the raw files of an external target are reachable only through the profile's "
            "[commands] copy_files (placeholders {host} {port} {user} {database} {output_dir})"
        )
    canary_scan.scan(target, evidence)
    evidence.require_pass()


@pytest.fixture(scope="module")
def encrypted_mariadb(request: pytest.FixtureRequest) -> Iterator[Database]:
    run = request.config.stash[RUN_KEY]
    spec = "embedded-mariadb-encrypted"
    if spec in run.settings.targets:
        pytest.skip(f"{spec} is a target of this run: test_canary_scan covers it")
    if not any(t.startswith("embedded-") for t in run.settings.targets):
        pytest.skip("the encrypted MariaDB variant runs beside embedded targets only")
    t = run.target(spec)
    try:
        yield t
    finally:
        run.stop_target(spec)


@pytest.mark.clause("BZ-DB-2", "BZ-SEC-1")
def test_canary_scan_encrypted_mariadb(encrypted_mariadb: Database, evidence: CaseEvidence) -> None:
    """The same scan on MariaDB with data-at-rest encryption (file key management, AES_CTR)."""
    evidence.record.target = encrypted_mariadb.label
    canary_scan.scan(encrypted_mariadb, evidence)
    evidence.require_pass()
