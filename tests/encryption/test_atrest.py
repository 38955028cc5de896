"""SM4 known answers and the at-rest canary scan, with the plain server as positive control."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from clauseproof.encryption.atrest import make_canaries, scan_files
from clauseproof.encryption.sm4 import encrypt_block, known_answers
from clauseproof.targets.single.mariadb import EmbeddedMariaDB
from clauseproof.targets.single.postgres import EmbeddedPostgres
from tests.fix_targets import vendor_profile


def test_sm4_known_answers_of_gb_t_32907() -> None:
    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    assert encrypt_block(key, key).hex() == "681edf34d206965e86b3e94f536e4246"
    results = known_answers()
    assert [r.ok for r in results] == [True, True]
    assert results[1].got == "595298c7c6fd271f0402f804c33d3f66"
    assert not known_answers(iterations=999_999)[1].ok  # the check can fail


def test_canaries_are_random_and_found_across_chunk_boundaries(tmp_path: Path) -> None:
    canaries = make_canaries(16)
    assert len(set(canaries)) == 16 and len({c[:4] for c in canaries}) == 1
    from clauseproof.encryption import atrest

    f = tmp_path / "blob"
    boundary = atrest.CHUNK - 10  # a canary straddling the 8 MiB read boundary
    data = bytearray(b"\0" * (atrest.CHUNK * 2))
    data[boundary : boundary + 28] = canaries[3]
    data[100:128] = canaries[0][:20] + b"x" * 8  # a near miss: prefix matches, canary does not
    f.write_bytes(bytes(data))
    hits, n = scan_files([f], canaries)
    assert n == len(data) and list(hits) == [canaries[3].decode()]


def test_plain_servers_fail_the_scan_and_say_where(project: pytest.Pytester) -> None:
    """Positive control: without at-rest encryption the canaries are found in data files, logs and backups."""
    result = project.runpytest(
        "suites/encryption/test_at_rest.py", "--cp-target=embedded-postgresql", "-k", "not encrypted"
    )
    result.assert_outcomes(passed=1, failed=1, skipped=1)  # the target-SM4 case needs a profile
    result.stdout.fnmatch_lines(["*BZ-DB-2 FAIL on embedded-postgresql: plaintext found in data files*"])
    doc = json.loads((project.path / "results" / "latest" / "evidence.json").read_text())
    case = next(c for c in doc["cases"] if "canary" in c["nodeid"])
    found = case["parameters"]["plaintext_found_in"]
    assert {"data files", "WAL", "physical backup"} <= set(found)
    assert any(p.startswith("base/") for p in found["data files"])
    assert any(p.startswith("pg_wal/") for p in found["WAL"])


def test_encrypted_mariadb_variant_passes_files_but_not_sm4(project: pytest.Pytester) -> None:
    """Data files, logs and backups hold no canary under MariaDB encryption; the cipher is AES, so SM4 fails."""
    result = project.runpytest("suites/encryption", "--cp-target=embedded-mariadb-encrypted", "-k", "canary_scan")
    result.assert_outcomes(failed=1, skipped=1)  # the extra encrypted case defers to the parametrised one
    doc = json.loads((project.path / "results" / "latest" / "evidence.json").read_text())
    case = next(c for c in doc["cases"] if c["nodeid"].endswith("test_canary_scan[embedded-mariadb-encrypted]"))
    verdicts = {m["statistic"].split(" encrypted")[0]: m["verdict"] for m in case["measurements"]}
    # BZ-SEC-1's storage part, from the same scan: the logical dump's plaintext fails it too
    assert verdicts.pop("storage: no plaintext canary in the data files, logs, temporary files or backups") == "FAIL"
    assert verdicts == {
        "part: data files": "PASS",
        "part: log files": "PASS",
        "part: physical backup files": "PASS",
        "part: logical backup files (a logical dump is plaintext by design)": "FAIL",
        "part: SM4 is the storage cipher": "FAIL",
    }
    sm4 = next(m for m in case["measurements"] if m["statistic"] == "part: SM4 is the storage cipher")
    assert sm4["reason"].startswith("MariaDB encrypts with AES")
    assert list(case["parameters"]["plaintext_found_in"]) == ["logical backup"]
    assert case["parameters"]["files_per_class"]["binary and relay logs"] >= 1  # the binary log was inspected
    assert not re.search(r"1;[0-9a-f]{64}", json.dumps(doc))  # the key never reaches results


def test_sm4_column_case_proves_each_part(project: pytest.Pytester) -> None:
    # a subprocess: the suite defines SQLAlchemy models, which must not be defined twice in one interpreter
    result = project.runpytest_subprocess("suites/encryption/test_column_sm4.py", "--cp-target=embedded-postgresql")
    result.assert_outcomes(passed=1, skipped=1)  # the target's own column encryption: no profile declares it
    doc = json.loads((project.path / "results" / "latest" / "evidence.json").read_text())
    case = next(c for c in doc["cases"] if "test_sm4_column_encryption" in c["nodeid"])
    assert [m["verdict"] for m in case["measurements"]] == ["PASS"] * 4
    assert not re.search(r"[0-9a-f]{32}", json.dumps(case))  # no key material in the evidence


def test_external_target_scanned_through_copy_files(project: pytest.Pytester, pg_server: EmbeddedPostgres) -> None:
    """A vendor's files reach the scan through the profile's copy_files command (here: cp of a data directory)."""
    profile = vendor_profile(
        project.path / "vendor.toml",
        pg_server,
        f'[commands]\ncopy_files = "cp -a {pg_server.data_dir}/. {{output_dir}}/"\n',
    )
    result = project.runpytest("suites/encryption/test_at_rest.py", f"--cp-target={profile}", "-k", "canary_scan")
    result.assert_outcomes(failed=1, skipped=1)
    doc = json.loads((project.path / "results" / "latest" / "evidence.json").read_text())
    case = next(c for c in doc["cases"] if c["nodeid"].endswith("test_canary_scan[vendor]"))
    params = case["parameters"]
    assert params["files_from"] == "the profile's copy_files command"
    assert {"data files", "WAL", "logical backup"} <= set(params["plaintext_found_in"])
    assert params["not_inspectable"] == {"physical backup": "the profile declares no [commands] backup"}
    parts = {m["statistic"].split(" encrypted")[0]: m["verdict"] for m in case["measurements"]
             if m["clause_id"] == "BZ-DB-2"}  # fmt: skip
    assert parts == {
        "part: data files": "FAIL",
        "part: log files": "FAIL",
        "part: physical backup files": "NOT SHOWN",  # a row that says so, never an absent row
        "part: logical backup files (a logical dump is plaintext by design)": "FAIL",
    }


@pytest.mark.parametrize(
    ("copy_files", "backup", "missing", "backup_why"),
    [
        # the cheapest cheat: a copy command that copies nothing, a backup command that writes nothing
        ("mkdir -p {output_dir}", "true", "no data files file was scanned", "the backup wrote 0 bytes"),
        # a copy and a backup taken before the canaries were written (an old snapshot of an unencrypted server)
        (
            "cp -a {stale}/. {output_dir}/",
            "cp -a {stale}/base {output_dir}/",
            "the canary table's relation file",
            "the profile declares no [commands] restore",
        ),
        # a current copy whose bytes are changed on the way (compressed here): no plaintext left to find
        (
            "cp -a {datadir}/. {output_dir}/ && find {output_dir} -type f -exec sh -c "
            "'for f; do gzip -c $f > $f.z && mv $f.z $f; done' _ {{}} +",
            "true",
            "bytes in the files scanned, the server has",
            "the backup wrote 0 bytes",
        ),
    ],
    ids=["empty-copy", "stale-copy", "changed-copy"],
)
def test_a_copy_that_is_not_current_shows_nothing(
    project: pytest.Pytester,
    pg_server: EmbeddedPostgres,
    tmp_path: Path,
    copy_files: str,
    backup: str,
    missing: str,
    backup_why: str,
) -> None:
    """No canary found in files that are not shown to be the target's current files is NOT SHOWN, never PASS."""
    stale = tmp_path / "stale"
    shutil.copytree(pg_server.data_dir, stale, ignore=shutil.ignore_patterns("postmaster.pid"))
    copy_files = copy_files.replace("{stale}", str(stale)).replace("{datadir}", str(pg_server.data_dir))
    profile = vendor_profile(
        project.path / "vendor.toml",
        pg_server,
        f'[commands]\ncopy_files = "{copy_files}"\nbackup = "{backup.replace("{stale}", str(stale))}"\n',
    )
    result = project.runpytest("suites/encryption/test_at_rest.py", f"--cp-target={profile}", "-k", "canary_scan")
    doc = json.loads((project.path / "results" / "latest" / "evidence.json").read_text())
    case = next(c for c in doc["cases"] if c["nodeid"].endswith("test_canary_scan[vendor]"))
    verdicts = {m["statistic"].split(" encrypted")[0]: (m["verdict"], m["reason"]) for m in case["measurements"]
                if m["clause_id"] == "BZ-DB-2"}  # fmt: skip
    assert {k: v for k, (v, _) in verdicts.items() if "logical" not in k} == {
        "part: data files": "NOT SHOWN",
        "part: log files": "NOT SHOWN",
        "part: physical backup files": "NOT SHOWN",
    }
    assert missing in verdicts["part: data files"][1]
    assert backup_why in verdicts["part: physical backup files"][1]
    assert "PASS" not in {v for v, _ in verdicts.values()}
    result.stdout.fnmatch_lines(["*NOT SHOWN*data files encrypted*"])


SM4_PLPGSQL = Path(__file__).parents[1] / "sql" / "sm4_plpgsql.sql"
PUBLISHED = "0123456789abcdeffedcba9876543210"


@pytest.mark.parametrize(
    ("encrypt_sql", "outcome", "says"),
    [
        # a real SM4 on the target's side (PL/pgSQL, written from the standard)
        ("SELECT public.cp_sm4_encrypt('{key_hex}', '{plaintext_hex}')", "passed", ""),
        # the cheapest cheat: the published example's answer looked up, anything for the rest
        (
            f"SELECT CASE WHEN '{{key_hex}}' = '{PUBLISHED}' AND '{{plaintext_hex}}' = '{PUBLISHED}' "
            "THEN '681edf34d206965e86b3e94f536e4246' ELSE md5('{plaintext_hex}') END",
            "failed",
            "*published example is right but 8 of 8 random vectors are wrong*",
        ),
        # AES called SM4
        (
            "SELECT cp_aes.encrypt(decode('{plaintext_hex}', 'hex'), decode('{key_hex}', 'hex'), 'aes-ecb/pad:none')",
            "failed",
            "*9 of 9 vectors wrong, the published example among them*",
        ),
    ],
    ids=["plpgsql-sm4", "looked-up-answer", "aes"],
)
def test_target_sm4_known_answer_through_profile_sql(
    project: pytest.Pytester, pg_server: EmbeddedPostgres, encrypt_sql: str, outcome: str, says: str
) -> None:
    """The target's SM4 is compared with the harness's on random keys and blocks: a real SM4 passes, the
    looked-up published answer and another cipher fail."""
    with pg_server.connect(in_namespace=False) as conn, conn.cursor() as cur:
        cur.execute(SM4_PLPGSQL.read_text())
        cur.execute("CREATE SCHEMA cp_aes; CREATE EXTENSION pgcrypto SCHEMA cp_aes")  # kept apart, dropped after
    try:
        profile = vendor_profile(project.path / "vendor.toml", pg_server, f'[sm4]\nencrypt_sql = "{encrypt_sql}"\n')
        result = project.runpytest("suites/encryption/test_at_rest.py", f"--cp-target={profile}", "-k", "target_sm4")
    finally:
        with pg_server.connect(in_namespace=False) as conn, conn.cursor() as cur:
            cur.execute("DROP SCHEMA cp_aes CASCADE")
            cur.execute("DROP FUNCTION public.cp_sm4_encrypt(text, text), public.cp_sm4_tau(bigint)")
            cur.execute("DROP FUNCTION public.cp_sm4_rotl(bigint, int)")
    result.assert_outcomes(**{outcome: 1})
    if says:
        result.stdout.fnmatch_lines([f"*BZ-DB-2 FAIL on *: {says}"])
    doc = json.loads((project.path / "results" / "latest" / "evidence.json").read_text())
    vectors = next(c for c in doc["cases"] if "target_sm4" in c["nodeid"])["parameters"]["vectors"]
    assert len(vectors) == 9 and len({v["key"] for v in vectors}) == 9  # random per run


def test_the_encryption_suite_changes_no_server_wide_setting(
    project: pytest.Pytester, mariadb_server: EmbeddedMariaDB
) -> None:
    """On an external target the canary scan forces its table to disk without a global setting (it used to set
    innodb_max_dirty_pages_pct = 0 and leave it so)."""

    def globals_now() -> dict[str, str]:
        with mariadb_server.connect(in_namespace=False) as conn, conn.cursor() as cur:
            cur.execute("SHOW GLOBAL VARIABLES")
            return {k: v for k, v in cur.fetchall() if "gtid" not in k}

    before = globals_now()
    profile = vendor_profile(
        project.path / "vendor.toml",
        mariadb_server,
        f'[commands]\ncopy_files = "cp -a {mariadb_server.data_dir}/. {{output_dir}}/"\n',
        name="vendor-mariadb",
    )
    project.runpytest("suites/encryption/test_at_rest.py", f"--cp-target={profile}", "-k", "canary_scan")
    after = globals_now()
    assert {k: (before[k], after.get(k)) for k in before if before[k] != after.get(k)} == {}
    doc = json.loads((project.path / "results" / "latest" / "evidence.json").read_text())
    case = next(c for c in doc["cases"] if c["nodeid"].endswith("test_canary_scan[vendor]"))
    assert case["parameters"]["canaries_forced_to_disk"] is True
    verdicts = {m["statistic"].split(" encrypted")[0]: m["verdict"] for m in case["measurements"]}
    assert verdicts["part: data files"] == "FAIL"  # plain MariaDB: the flushed canary table holds plaintext
