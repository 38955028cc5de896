"""A target's own column encryption through [column_encryption] (clauseproof.encryption.colcrypt).

No target with SM4 column encryption can be built here, so the mechanism is proven with
stand-ins declared exactly as a vendor would: server-side encryption with pgcrypto
(PostgreSQL) and AES_ENCRYPT (MariaDB), keys taken per session, and — the positive control —
a "target" whose declared encryption stores plaintext, on which every check fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from clauseproof.core.errors import ClauseproofError
from clauseproof.encryption import colcrypt
from clauseproof.targets.single.external import ExternalTarget, load_profile
from clauseproof.targets.single.mariadb import EmbeddedMariaDB
from clauseproof.targets.single.postgres import EmbeddedPostgres
from tests.fix_targets import vendor_profile

#: Server-side encryption with pgcrypto, the key taken by the session into a setting of its own.
PGCRYPTO = """
[column_encryption]
algorithm = "AES-128 (pgcrypto OpenPGP symmetric), a stand-in"
setup = ["CREATE EXTENSION IF NOT EXISTS pgcrypto SCHEMA {namespace}"]
column_type = "bytea"
keyed_session = ["SELECT set_config('cp.{key}', '{secret_hex}', false)"]
write = "pgp_sym_encrypt({value}, current_setting('cp.{key}'))"
read = "pgp_sym_decrypt({column}, current_setting('cp.{key}'))"
"""

#: The same on MariaDB: AES_ENCRYPT with a key in a user variable.
AES_ENCRYPT = """
[column_encryption]
algorithm = "AES-128-ECB (AES_ENCRYPT), a stand-in"
column_type = "VARBINARY(64)"
keyed_session = ["SET @`cp_{key}` = UNHEX('{secret_hex}')"]
write = "AES_ENCRYPT({value}, @`cp_{key}`)"
read = "CAST(AES_DECRYPT({column}, @`cp_{key}`) AS CHAR)"
"""

#: The positive control: encryption declared, plaintext stored.
PLAINTEXT = """
[column_encryption]
algorithm = "SM4_SM3"
column_type = "text"
keyed_session = ["SELECT '{key}'"]
"""

SECRETS = {"id_number": "00112233445566778899aabbccddeeff", "phone": "ffeeddccbbaa99887766554433221100"}


def _target(tmp_path: Path, server: EmbeddedPostgres | EmbeddedMariaDB, section: str) -> ExternalTarget:
    profile = vendor_profile(tmp_path / "vendor.toml", server, section, name="vendor")
    return ExternalTarget.from_profile(profile, "clauseproof_colcrypt")


@contextmanager
def _vendor(tmp_path: Path, server: EmbeddedPostgres | EmbeddedMariaDB, section: str) -> Iterator[ExternalTarget]:
    """An external target through a profile with ``section``, started in its own namespace, stopped after."""
    t = _target(tmp_path, server, section)
    t.start()
    try:
        yield t
    finally:
        t.stop()


def _check(t: ExternalTarget) -> colcrypt.ColumnResult:
    assert t.profile is not None and t.profile.section("column_encryption") is not None
    return colcrypt.check(t, t.profile.section("column_encryption"), seed=7, secrets=SECRETS)


def _run(tmp_path: Path, server: EmbeddedPostgres | EmbeddedMariaDB, section: str) -> colcrypt.ColumnResult:
    with _vendor(tmp_path, server, section) as t:
        return _check(t)


def test_pgcrypto_stand_in_is_judged_part_by_part(tmp_path: Path, pg_server: EmbeddedPostgres) -> None:
    with _vendor(tmp_path, pg_server, PGCRYPTO) as vendor:
        r = _check(vendor)
        with vendor.connect() as conn, conn.cursor() as cur:  # its table is gone; its namespace stays until stop
            cur.execute("SELECT count(*) FROM pg_tables WHERE tablename = %s", (colcrypt.TABLE,))
            assert cur.fetchone()[0] == 0
    parts = list(r.parts.values())
    # stored bytes hold no plaintext and look like ciphertext, keyless and one-key sessions cannot read, a value
    # moved to the other column is refused and a wrong key reads nothing
    assert parts[:4] == [True, True, True, True], r.details
    assert "a session with a wrong id_number key reads id_number" in r.details["reads"]
    # pgcrypto binds a ciphertext to its key only: moved to another row it still decrypts (an honest FAIL);
    # altered, it is refused
    assert parts[4] is False
    reads = r.details["reads"]
    assert reads["moved to another row (row 1's id_number into row 2)"] == "read as plaintext"
    assert reads["moved to another column (row 3's id_number into its phone)"].startswith("refused: Wrong key")
    assert reads["altered (one byte of row 4's id_number flipped)"].startswith("refused:")
    assert reads["keyless session reads id_number"].startswith("refused: unrecognized configuration parameter")
    assert reads["phone-key-only session reads phone"] == "read as plaintext"
    text = json.dumps(r.details) + json.dumps(r.notes)
    assert not any(s in text for s in SECRETS.values())  # keys never recorded


def test_a_percent_sign_in_a_template_reaches_the_server_as_written(
    tmp_path: Path, pg_server: EmbeddedPostgres
) -> None:
    """The drivers' parameter style uses %: the templates' own % signs must not be taken for it."""
    section = PGCRYPTO.replace(
        "read = \"pgp_sym_decrypt({column}, current_setting('cp.{key}'))\"",
        "read = \"left(pgp_sym_decrypt({column}, current_setting('cp.{key}')) || '%', -1)\"",
    ).replace('write = "pgp_sym_encrypt({value},', "write = \"pgp_sym_encrypt(left({value} || '%', -1),")
    assert section.count("%") == 2
    r = _run(tmp_path, pg_server, section)
    assert r.details["keyed_round_trip"] is True


def test_plaintext_behind_an_encryption_declaration_fails_every_check(
    tmp_path: Path, pg_server: EmbeddedPostgres
) -> None:
    r = _run(tmp_path, pg_server, PLAINTEXT)
    assert list(r.parts.values()) == [False, False, False, False, False], r.details
    assert r.details["plaintexts_found_in_stored_bytes"] == colcrypt.ROWS
    assert r.details["rows_with_equal_ciphertext_in_both_columns"] == colcrypt.ROWS


_PG_KEYED = "keyed_session = [\"SELECT set_config('cp.{key}', '{secret_hex}', false)\"]\n"
#: Cheats a vendor could declare as column encryption, and the part each must fail.
CHEATS = {
    # one key for every column, randomised (pgp_sym_encrypt salts each value): the ciphertexts still differ
    "one-key": (
        PGCRYPTO.replace("'{secret_hex}'", "'one key for every column'"),
        "a key per column",
        "moved to another column (row 3's id_number into its phone): read as plaintext",
    ),
    # the harness's key taken, then ignored
    "ignored-key": (
        PGCRYPTO.replace("current_setting('cp.{key}')", "'fixed' || length(current_setting('cp.{key}'))"),
        "a key per column",
        "a session given a wrong id_number key read row 1's id_number as plaintext",
    ),
    # base64 called encryption
    "base64": (
        '[column_encryption]\nalgorithm = "SM4"\ncolumn_type = "text"\n'
        + _PG_KEYED
        + "write = \"encode(convert_to({value}, 'UTF8'), 'base64')\"\n"
        + "read = \"convert_from(decode({column}, 'base64'), 'UTF8')\"\n",
        "column-level encryption",
        "200 of 200 plaintexts found in the stored bytes (plain, encoded or compressed)",
    ),
    # a substitution: no plaintext form to find, but nothing like ciphertext either
    "substitution": (
        '[column_encryption]\nalgorithm = "SM4"\ncolumn_type = "text"\n'
        + _PG_KEYED
        + "write = \"translate({value}, '0123456789X', 'qwertyuiopZ')\"\n"
        + "read = \"translate({column}, 'qwertyuiopZ', '0123456789X')\"\n",
        "column-level encryption",
        "the stored values do not look like ciphertext",
    ),
}


#: Issue 30's cheat: real encryption under one shared key whatever the column, the per-column "keys" only names
#: bound into the plaintext and granted to a session by name (the target "holds the key material").
SHARED_KEY_NAMES_BOUND = """
[column_encryption]
algorithm = "SM4_SM3"
setup = ["CREATE EXTENSION IF NOT EXISTS pgcrypto SCHEMA {namespace}"]
column_type = "bytea"
keyed_session = ["SELECT set_config('cp.{key}', 'granted', false)"]
write = "pgp_sym_encrypt('{key}|' || {value}, 'one shared key')"
read = '''CASE WHEN current_setting('cp.{key}') = 'granted'
  AND split_part(pgp_sym_decrypt({column}, 'one shared key'), '|', 1) = '{key}'
  THEN substr(pgp_sym_decrypt({column}, 'one shared key'), length('{key}') + 2) END'''
"""

#: The same with key material handed out: the target keeps every key it was given, and any of them opens every
#: column (one key behind the names); a wrong key opens nothing, a moved value is refused (its name is bound in).
SHARED_KEY_ANY_OF_THE_KEYS = """
[column_encryption]
algorithm = "SM4_SM3"
setup = ["CREATE EXTENSION IF NOT EXISTS pgcrypto SCHEMA {namespace}", "CREATE TABLE {namespace}.cp_keys (k text)"]
teardown = ["DROP TABLE IF EXISTS {namespace}.cp_keys"]
create_key = "INSERT INTO {namespace}.cp_keys VALUES ('{secret_hex}')"
column_type = "bytea"
keyed_session = ['''SELECT set_config('cp.{key}',
  (SELECT count(*) FROM {namespace}.cp_keys WHERE k = '{secret_hex}')::text, false)''']
write = "pgp_sym_encrypt('{key}|' || {value}, 'one shared key')"
read = '''CASE WHEN current_setting('cp.{key}') = '1'
  AND split_part(pgp_sym_decrypt({column}, 'one shared key'), '|', 1) = '{key}'
  THEN substr(pgp_sym_decrypt({column}, 'one shared key'), length('{key}') + 2) END'''
"""


def test_a_shared_key_with_column_names_bound_in_is_not_a_key_per_column(
    tmp_path: Path, pg_server: EmbeddedPostgres
) -> None:
    """It passed "a key per column" (the value moved between the columns is refused: its name is bound in).  With
    the key material held by the target, a key per column cannot be shown by access: NOT SHOWN, saying so."""
    r = _run(tmp_path, pg_server, SHARED_KEY_NAMES_BOUND)
    name = next(p for p in r.parts if p.startswith("a key per column"))
    assert r.parts[name] is None, (r.parts, r.details)
    assert "not shown by access" in r.why[name]
    assert r.parts[next(p for p in r.parts if p.startswith("column-level"))] is True  # it does encrypt


def test_a_key_handed_for_one_column_must_not_open_the_other(tmp_path: Path, pg_server: EmbeddedPostgres) -> None:
    """Where the harness hands out the material: the wrong key opens nothing and a moved value is refused, so only
    the id_number key handed under the phone key's name shows the columns share a key."""
    r = _run(tmp_path, pg_server, SHARED_KEY_ANY_OF_THE_KEYS)
    name = next(p for p in r.parts if p.startswith("a key per column"))
    assert r.parts[name] is False, (r.parts, r.details)
    assert str(r.why[name]) == (
        "a session handed the id_number key as the phone key read row 1's phone as plaintext: the columns share a key"
    )
    assert r.details["reads"]["a session with a wrong id_number key reads id_number"] != "read as plaintext"


@pytest.mark.parametrize("cheat", list(CHEATS))
def test_cheats_fail_the_part_they_fake(tmp_path: Path, pg_server: EmbeddedPostgres, cheat: str) -> None:
    section, part, because = CHEATS[cheat]
    r = _run(tmp_path, pg_server, section)
    name = next(p for p in r.parts if p.startswith(part))
    assert r.parts[name] is False, (r.parts, r.details)
    assert because in r.why[name], r.why[name]


def test_mariadb_stand_in(tmp_path: Path, mariadb_server: EmbeddedMariaDB) -> None:
    r = _run(tmp_path, mariadb_server, AES_ENCRYPT)
    assert list(r.parts.values())[:4] == [True, True, True, True], r.details
    assert r.parts["a ciphertext moved to another row, or altered, is rejected"] is False
    assert r.details["reads"]["keyless session reads id_number"] == "no value (NULL)"


def test_keys_are_hidden_in_error_messages(tmp_path: Path, pg_server: EmbeddedPostgres) -> None:
    """A statement that fails with the key in the server's message: the error names the step, not the key."""
    broken = PGCRYPTO.replace("set_config('cp.{key}', '{secret_hex}', false)", "'{secret_hex}'::int")
    with pytest.raises(ClauseproofError) as exc:
        _run(tmp_path, pg_server, broken)
    message = str(exc.value)
    assert "keyed_session failed" in message and "<key>" in message
    assert not any(s in message for s in SECRETS.values())


def test_keys_are_hidden_when_the_server_quotes_them_cut_short(tmp_path: Path, mariadb_server: EmbeddedMariaDB) -> None:
    """MariaDB quotes at most 80 characters of a statement in a syntax error: a cut key is hidden too."""
    with pytest.raises(ClauseproofError) as exc:
        _run(
            tmp_path,
            mariadb_server,
            AES_ENCRYPT.replace(
                "SET @`cp_{key}` = UNHEX('{secret_hex}')", "SELECT FROM 'xx{secret_hex}{secret_hex}{secret_hex}'"
            ),
        )
    message = str(exc.value)
    assert "'xx<key>..." in message, message
    assert not any(s[i : i + 8] in message.lower() for s in SECRETS.values() for i in range(25))


#: The manual's openGauss-style example (docs/targets.md), as a vendor would copy it.
README = (Path(__file__).resolve().parents[2] / "docs" / "targets.md").read_text(encoding="utf-8")
OPENGAUSS = "[column_encryption]" + README.split("\n[column_encryption]", 1)[1].split("```", 1)[0]


def test_a_driver_that_does_not_know_the_keyed_options_is_named(tmp_path: Path, pg_server: EmbeddedPostgres) -> None:
    """The manual's openGauss example against stock libpq: a clear error naming the option and the fix."""
    with pytest.raises(ClauseproofError) as exc:
        _run(tmp_path, pg_server, OPENGAUSS)
    assert 'could not open the keyed session: invalid connection option "enable_ce"' in str(exc.value)
    assert "vendor's libpq" in str(exc.value)


def test_teardown_runs_after_a_failure(tmp_path: Path, pg_server: EmbeddedPostgres) -> None:
    broken = PGCRYPTO.replace('write = "pgp_sym_encrypt', 'write = "no_such_function')
    broken += 'teardown = ["DROP TABLE {namespace}.cp_marker"]\n'
    broken = broken.replace("setup = [", 'setup = ["CREATE TABLE {namespace}.cp_marker (i int)", ')
    with _vendor(tmp_path, pg_server, broken) as t:
        with pytest.raises(ClauseproofError, match="INSERT failed on the keyed session: function no_such_function"):
            _check(t)
        with t.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s", (t.namespace,))
            assert cur.fetchone()[0] == 0  # neither the case's table nor the one setup made


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[column_encryption]\ncolumn_type = "bytea"\n', "missing key 'algorithm'"),
        (
            '[column_encryption]\nalgorithm = "SM4"\ncolumn_type = "bytea {keyname}"\n',
            ":8: [column_encryption] column_type: {keyname} is not one of",
        ),
        ('[column_encryption]\nalgorithm = "SM4"\ncolumn_type = "bytea"\n', "no template names the column's key"),
        (
            '[column_encryption]\nalgorithm = "SM4"\ncolumn_type = "bytea"\nwrite = "enc({key})"\n',
            "write: does not contain {value}",
        ),
        (
            '[column_encryption]\nalgorithm = "SM4"\ncolumn_type = "x"\nsetup = "one"\n',
            "setup: 'one' is not of type list",
        ),
    ],
)
def test_malformed_column_encryption_is_named(tmp_path: Path, body: str, expected: str) -> None:
    p = tmp_path / "vendor.toml"
    p.write_text(f'[target]\ndialect = "postgresql"\nhost = "127.0.0.1"\nuser = "u"\n\n{body}')
    with pytest.raises(ClauseproofError) as exc:
        load_profile(p)
    assert expected in str(exc.value)


def test_suite_case_reports_the_parts(project: pytest.Pytester, pg_server: EmbeddedPostgres) -> None:
    """Through the suite: the stand-in FAILs (not SM4; a moved row accepted), with every part named."""
    profile = vendor_profile(project.path / "vendor.toml", pg_server, PGCRYPTO)
    result = project.runpytest("suites/encryption/test_column_sm4.py", f"--cp-target={profile}", "-k", "target_column")
    result.assert_outcomes(failed=1)
    doc = json.loads((project.path / "results" / "latest" / "evidence.json").read_text())
    case = next(c for c in doc["cases"] if "test_target_column_encryption" in c["nodeid"])
    verdicts = {m["statistic"]: m["verdict"] for m in case["measurements"]}
    assert (
        verdicts["part: the column cipher is SM4 (declared: AES-128 (pgcrypto OpenPGP symmetric), a stand-in)"]
        == "FAIL"
    )
    assert verdicts[next(k for k in verdicts if k.startswith("part: a key per column"))] == "PASS"
    assert verdicts["part: a ciphertext moved to another row, or altered, is rejected"] == "FAIL"
    assert case["parameters"]["key_material"].endswith("never recorded")
