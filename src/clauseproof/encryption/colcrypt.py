"""A target's own column encryption, as its profile declares it, proven or disproven (BZ-DB-2).

Targets encrypt columns in two ways: in their client driver (openGauss's fully encrypted
database: ``ENCRYPTED WITH (COLUMN_ENCRYPTION_KEY = …)`` columns, read in plaintext only by a
connection made with ``enable_ce=1``), or on the server with functions and a key the session
holds.  ``[column_encryption]`` in a profile declares either as SQL templates; the harness then
makes a table of two encrypted columns in its own namespace, one key per column, writes the
same plaintext into both, and checks what the clause asks:

- stored bytes hold no plaintext (read by a session without keys) and a session with the keys
  reads every value back;
- the same plaintext in two columns gives different ciphertexts;
- a session without a key cannot read plaintext, and — where keys are given per key — a session
  holding one column's key cannot read the other column;
- a ciphertext moved to another row, to another column, or altered is rejected (an error or no
  value, never a plaintext).

Key material the templates need (``{secret_hex}``) is generated per run and never recorded:
statements are recorded as templates, and error messages have every key replaced by ``<key>``.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from clauseproof.core.commands import template_problem
from clauseproof.core.errors import ClauseproofError
from clauseproof.core.i18n import Text, joined, msg
from clauseproof.encryption.stored import _Session, ciphertext_shape, plaintext_found
from clauseproof.targets.base import open_endpoint
from clauseproof.targets.roles import Database
from clauseproof.targets.sections import Section

TABLE = "cp_column_encryption"
COLUMNS = ("id_number", "phone")
ROWS = 200

#: The keys of [column_encryption], their types, and the placeholders each template may use.
KEYS: dict[str, type | tuple[type, ...]] = {
    "algorithm": str,
    "column_type": str,
    "setup": list,
    "create_key": str,
    "drop_key": str,
    "teardown": list,
    "keyed_options": dict,
    "keyed_session": list,
    "write": str,
    "read": str,
}
PLACEHOLDERS = {
    "column_type": {"key", "namespace"},
    "setup": {"namespace"},
    "create_key": {"key", "secret_hex", "namespace"},
    "drop_key": {"key", "namespace"},
    "teardown": {"namespace"},
    "keyed_session": {"key", "secret_hex", "namespace"},
    "write": {"value", "key", "namespace"},
    "read": {"column", "key", "namespace"},
}


@dataclass(frozen=True)
class ColumnEncryption:
    """``[column_encryption]`` of a profile."""

    #: The cipher as the target names it (SM4_SM3, say); recorded as the target's declaration.
    algorithm: str
    #: The column's type in CREATE TABLE, naming its key: ``{key}``.
    column_type: str
    #: Statements run once on a keyed session before the keys are made (``{namespace}``).
    setup: tuple[str, ...] = ()
    #: Makes one column's key (``{key}``, ``{secret_hex}``: 16 random bytes of this run, as hex).
    create_key: str = ""
    #: Drops one column's key at the end, also after a failure.
    drop_key: str = ""
    #: Statements run once at the end, also after a failure (drop what ``setup`` made).
    teardown: tuple[str, ...] = ()
    #: Driver connection options of a session that holds the keys (``enable_ce = "1"``, say).
    keyed_options: dict[str, str] = field(default_factory=dict)
    #: Statements by which a session takes one key (run once per key it holds).
    keyed_session: tuple[str, ...] = ()
    #: The SQL expression that writes a value (``{value}`` is the bound parameter).
    write: str = "{value}"
    #: The SQL expression that reads a column (``{column}``).
    read: str = "{column}"

    @property
    def per_key_sessions(self) -> bool:
        """A session can be given one key and not the other."""
        return any("{key}" in s for s in self.keyed_session)


def parse(body: dict[str, Any], err: Any) -> ColumnEncryption | None:
    """Validate ``[column_encryption]``; ``err(section, key, msg, fix)`` makes the error naming file and line."""
    if not body:
        return None
    sec = "column_encryption"
    for key in ("algorithm", "column_type"):
        if key not in body:
            raise err(sec, None, f"missing key {key!r}", f"add {key} = ... under [{sec}]")
    for key in ("setup", "teardown", "keyed_session"):
        if any(not isinstance(s, str) for s in body.get(key, [])):
            raise err(sec, key, "must be a list of SQL statements (strings)", f'write {key} = ["...", "..."]')
    options = body.get("keyed_options", {})
    if any(not isinstance(v, str | int) or isinstance(v, bool) for v in options.values()):
        raise err(
            sec, "keyed_options", "values must be strings or integers", 'write keyed_options = { enable_ce = "1" }'
        )
    for key, allowed in PLACEHOLDERS.items():
        for template in body.get(key, []) if key in ("setup", "teardown", "keyed_session") else [body.get(key, "")]:
            problem = template_problem(template, allowed, shell=False)
            if problem:
                raise err(sec, key, problem, f"{key} may use {', '.join('{' + a + '}' for a in sorted(allowed))} bare; "
                          "write {{ }} for braces")  # fmt: skip
    if "{value}" not in body.get("write", "{value}"):
        raise err(sec, "write", "does not contain {value}", "write it as an expression of {value}")
    if "{column}" not in body.get("read", "{column}"):
        raise err(sec, "read", "does not contain {column}", "write it as an expression of {column}")
    named = [body.get(k, "") for k in ("column_type", "create_key", "write", "read")] + list(
        body.get("keyed_session", [])
    )
    if not any("{key}" in t for t in named):
        raise err(
            sec,
            None,
            "no template names the column's key ({key}), so the columns cannot have keys of their own",
            "name {key} in column_type (ENCRYPTED WITH (COLUMN_ENCRYPTION_KEY = {key})) or in write/read",
        )
    return ColumnEncryption(
        algorithm=body["algorithm"],
        column_type=body["column_type"],
        setup=tuple(body.get("setup", ())),
        create_key=body.get("create_key", ""),
        drop_key=body.get("drop_key", ""),
        teardown=tuple(body.get("teardown", ())),
        keyed_options={k: str(v) for k, v in options.items()},
        keyed_session=tuple(body.get("keyed_session", ())),
        write=body.get("write", "{value}"),
        read=body.get("read", "{column}"),
    )


@dataclass
class ColumnResult:
    """What the checks showed: each part True (shown), False (disproven) or None (not shown); ``why`` says
    what disproved a part, or why it could not be shown."""

    parts: dict[str, bool | None]
    details: dict[str, Any]
    notes: list[Text | str]
    #: For a disproven part, what showed it; for a part not shown, why not.
    why: dict[str, Text | str] = field(default_factory=dict)
    #: each part's name in the report's language (the keys of ``parts`` are its English)
    names: dict[str, Text] = field(default_factory=dict)


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, memoryview | bytearray | bytes):
        return bytes(v).decode("utf-8", "replace")
    return str(v)


def _raw(v: Any) -> bytes:
    if v is None:
        return b""
    if isinstance(v, memoryview | bytearray | bytes):
        return bytes(v)
    return str(v).encode("utf-8")


def plaintexts(seed: int) -> list[str]:
    """Identity-number-like values, random per seed so none can match stored bytes by chance."""
    rnd = random.Random(seed)
    return [f"61{rnd.randrange(10**15):015d}X" for _ in range(ROWS)]


def check(
    target: Database, spec: ColumnEncryption, *, seed: int, secrets: dict[str, str] | None = None
) -> ColumnResult:
    """Run the checks against ``target`` (a started target with its own namespace): set up the keys and the
    table, then judge what is stored, who can read it, and what a key holder accepts; clean up whatever
    happened."""
    run = _Check(target, spec, seed, secrets)
    try:
        run.set_up()
        run.store()
        run.judge_storage()
        run.judge_key_per_user()
        run.judge_tampering()
        return run.result()
    finally:  # clean-up notes still reach the result: it holds the same list
        run.clean_up()


class _Check:
    """The state of one column-encryption check, step by step."""

    def __init__(self, target: Database, spec: ColumnEncryption, seed: int, secrets: dict[str, str] | None) -> None:
        self.target, self.spec = target, spec
        ns = self.ns = target.namespace
        self.keys = {c: f"{ns}_{c}" for c in COLUMNS}
        self.secret = secrets or {c: os.urandom(16).hex() for c in COLUMNS}
        self.hidden = [self.secret[c] for c in COLUMNS]
        self.ep = target.address()
        pg = target.dialect == "postgresql"
        self.database = self.ep.database if pg else ns
        self.pg_options = f"-c search_path={ns}" if pg else ""
        self.pg = pg
        self.values = plaintexts(seed)
        self.sessions: list[_Session] = []
        self.parts: dict[str, bool | None] = {}
        self.why: dict[str, Text | str] = {}
        self.names: dict[str, Text] = {}
        self.notes: list[Text | str] = []
        self.reads: dict[str, str] = {}
        self.made_keys: list[str] = []
        self.table_made = self.set_up_started = False
        self.keyed: _Session | None = None
        self.bare: _Session | None = None
        self.raw: dict[tuple[int, str], Any] = {}
        self.facts: dict[str, Any] = {}

    # -- sessions and templates ---------------------------------------------------------------
    def take_keys(self, s: _Session, held: tuple[str, ...]) -> None:
        for c in held:
            for stmt in self.spec.keyed_session:
                s.run(
                    stmt.format(key=self.keys[c], secret_hex=self.secret[c], namespace=self.ns),
                    step="keyed_session",
                    template=stmt,
                )

    def open_session(self, label: str, held: tuple[str, ...], *, take: bool = True) -> _Session:
        extra: dict[str, Any] = dict(self.spec.keyed_options) if held else {}
        opts = self.pg_options
        if self.pg and "options" in extra:
            opts = f"{opts} {extra.pop('options')}"
        try:
            conn = open_endpoint(self.target.dialect, self.ep, self.database, opts, extra)
        except Exception as exc:
            raise ClauseproofError(
                f"[column_encryption] could not open the {label} session: "
                f"{_Session(None, self.hidden, label).error_line(exc)}",
                checked=f"keyed_options {sorted(self.spec.keyed_options)}" if held else "",
                fix="check keyed_options: they are passed to the driver's connect() (psycopg: libpq parameters; "
                "a vendor's own parameter, such as openGauss's enable_ce, needs psycopg built on the vendor's libpq)",
            ) from None
        s = _Session(conn, self.hidden, label)
        self.sessions.append(s)
        if take:
            self.take_keys(s, held)
        return s

    def w(self, c: str) -> str:
        """The write expression, with the driver's placeholder and literal % doubled."""
        return self.spec.write.replace("%", "%%").format(value="%s", key=self.keys[c], namespace=self.ns)

    def r(self, c: str) -> str:
        return self.spec.read.replace("%", "%%").format(column=c, key=self.keys[c], namespace=self.ns)

    def judge(self, name: Text, ok: bool | None, failed_because: Text | str, unshown: Text | str = "") -> None:
        part = str(name)
        self.parts[part], self.names[part] = ok, name
        if ok is False:
            self.why[part] = failed_because
        elif ok is None:
            self.why[part] = unshown

    # -- steps ----------------------------------------------------------------------------------
    def set_up(self) -> None:
        """The keyed session, the profile's setup, one key per column."""
        spec, ns = self.spec, self.ns
        keyed = self.keyed = self.open_session("keyed", COLUMNS, take=False)  # it takes the keys once made
        self.set_up_started = True  # teardown runs even when setup fails part-way
        for stmt in spec.setup:
            keyed.run(stmt.format(namespace=ns), step="setup", template=stmt)
        if spec.create_key:
            for c in COLUMNS:
                keyed.run(
                    spec.create_key.format(key=self.keys[c], secret_hex=self.secret[c], namespace=ns),
                    step="create_key",
                    template=spec.create_key,
                )
                self.made_keys.append(c)
        self.take_keys(keyed, COLUMNS)

    def store(self) -> None:
        """The table with two encrypted columns, the same plaintexts written into both, read back keyed."""
        keyed, spec, values = self.keyed, self.spec, self.values
        assert keyed is not None
        cols = ", ".join(f"{c} {spec.column_type.format(key=self.keys[c], namespace=self.ns)}" for c in COLUMNS)
        keyed.run(
            f"CREATE TABLE {TABLE} (row_id BIGINT PRIMARY KEY, {cols})", step="CREATE TABLE", template=spec.column_type
        )
        self.table_made = True
        keyed.run(
            f"INSERT INTO {TABLE} (row_id, {', '.join(COLUMNS)}) "
            f"VALUES (%s, {self.w(COLUMNS[0])}, {self.w(COLUMNS[1])})",
            [(i, v, v) for i, v in enumerate(values, 1)],
            step="INSERT",
            template=spec.write,
            many=True,
        )
        back = keyed.run(
            f"SELECT row_id, {self.r(COLUMNS[0])}, {self.r(COLUMNS[1])} FROM {TABLE} ORDER BY row_id",
            (),  # no parameters, but the drivers must still turn the template's %% back into %
            step="keyed SELECT",
            template=spec.read,
        )
        self.facts["keyed_round_trip"] = len(back) == ROWS and all(
            _text(a) == v and _text(b) == v for (_, a, b), v in zip(back, values, strict=False)
        )

    def judge_storage(self) -> None:
        """What a session without keys sees: no plaintext in any form, bytes that look like ciphertext."""
        bare = self.bare = self.open_session("keyless", ())
        stored = bare.run(f"SELECT row_id, {', '.join(COLUMNS)} FROM {TABLE} ORDER BY row_id", step="keyless SELECT")
        raw = self.raw = {(int(row[0]), c): row[k] for row in stored for k, c in enumerate(COLUMNS, 1)}
        stored_bytes = [_raw(v) for v in raw.values()]
        leaked = plaintext_found(self.values, stored_bytes)
        shaped, shape = ciphertext_shape(stored_bytes)
        same = sum(1 for i in range(1, ROWS + 1) if _raw(raw.get((i, COLUMNS[0]))) == _raw(raw.get((i, COLUMNS[1]))))
        failures: list[Text | str] = []
        if leaked:
            failures.append(msg("cc_plaintext_found", leaked=leaked, rows=ROWS))
        if not shaped:
            failures.append(msg("cc_not_ciphertext", shape=shape))
        if not self.facts["keyed_round_trip"]:
            failures.append(msg("cc_not_read_back"))
        self.judge(msg("cc_part_storage"), not failures, joined(failures))
        self.facts.update(
            plaintexts_found_in_stored_bytes=leaked,
            ciphertext_shape=shape,
            rows_with_equal_ciphertext_in_both_columns=same,
        )

    def judge_key_per_user(self) -> None:
        """A session without keys reads no plaintext; one holding one column's key reads that column only."""
        bare, values, r = self.bare, self.values, self.r
        assert bare is not None
        outcome, got = bare.try_read(f"SELECT {r(COLUMNS[0])} FROM {TABLE} WHERE row_id = %s", (1,))
        keyless_reads = outcome == "value" and _text(got) == values[0]
        self.reads["keyless session reads id_number"] = _outcome(outcome, got, values[0])
        partial: bool | None = None
        if self.spec.per_key_sessions:
            one = self.open_session("phone-key-only", (COLUMNS[1],))
            o1, g1 = one.try_read(f"SELECT {r(COLUMNS[0])} FROM {TABLE} WHERE row_id = %s", (1,))
            o2, g2 = one.try_read(f"SELECT {r(COLUMNS[1])} FROM {TABLE} WHERE row_id = %s", (1,))
            self.reads["phone-key-only session reads id_number"] = _outcome(o1, g1, values[0])
            self.reads["phone-key-only session reads phone"] = _outcome(o2, g2, values[0])
            partial = not (o1 == "value" and _text(g1) == values[0]) and o2 == "value" and _text(g2) == values[0]
        self.judge(msg("cc_part_keyless"), not keyless_reads, msg("cc_keyless_read"))
        self.judge(
            msg("cc_part_one_key"),
            partial,
            msg("cc_one_key_read", id_number=str(self.reads.get("phone-key-only session reads id_number")),
                phone=str(self.reads.get("phone-key-only session reads phone"))),
            msg("cc_one_key_unshown"),
        )  # fmt: skip

    def judge_tampering(self) -> None:
        """Someone with table access but no keys moves ciphertexts around and alters one; and, where the harness
        hands out the key material, a session given a wrong key."""
        bare, keyed, raw, values, r = self.bare, self.keyed, self.raw, self.values, self.r
        assert bare is not None and keyed is not None
        moves = [
            ("moved to another row (row 1's id_number into row 2)", COLUMNS[0], 2, raw[(1, COLUMNS[0])], values[0]),
            (
                "moved to another column (row 3's id_number into its phone)",
                COLUMNS[1],
                3,
                raw[(3, COLUMNS[0])],
                values[2],
            ),
            ("altered (one byte of row 4's id_number flipped)", COLUMNS[0], 4, _alter(raw[(4, COLUMNS[0])]), values[3]),
        ]
        for _what, col, row_id, value, _plain in moves:
            bare.run(f"UPDATE {TABLE} SET {col} = %s WHERE row_id = %s", (value, row_id), step="UPDATE (tamper)")
        accepted: dict[str, str] = {}  # refused means an error or no value; any value read is an acceptance
        for what, col, row_id, _value, plain in moves:
            outcome, got = keyed.try_read(f"SELECT {r(col)} FROM {TABLE} WHERE row_id = %s", (row_id,))
            self.reads[what] = _outcome(outcome, got, plain)
            if outcome == "value" and got is not None:
                accepted[what] = f"{what}: {self.reads[what]}"
        cross = moves[1][0]
        # What only distinct keys give: a value sealed under the id_number key is not opened through the phone
        # column's key; and where the harness hands out the key material, a wrong key opens nothing.
        key_failures: list[Text | str] = [accepted[cross]] if cross in accepted else []
        handed = self.spec.per_key_sessions and any("{secret_hex}" in t for t in self.spec.keyed_session)
        if handed:
            key_failures += self._wrong_key_reads() + self._cross_key_reads()
        else:
            self.notes.append(msg("note_keys_not_tried"))
        # Without key material the harness can hand out, a key per column cannot be shown by access: a shared key
        # with the column's name bound into each value passes every other check (issue 30's cheat).
        self.judge(
            msg("cc_part_per_column"),
            (not key_failures) if handed else (False if key_failures else None),
            joined(key_failures),
            msg("cc_per_column_unshown"),
        )
        rest = [v for k, v in accepted.items() if k != cross]
        self.judge(msg("cc_part_tamper"), not rest, "; ".join(rest))

    def _cross_key_reads(self) -> list[Text | str]:
        """A session handed id_number's key material as the phone column's key must read no phone value: columns
        that share one key (their names only bound into the values) give it away here."""
        s = self.open_session("id-key-as-phone", ())
        for stmt in self.spec.keyed_session:
            s.run(
                stmt.format(key=self.keys[COLUMNS[1]], secret_hex=self.secret[COLUMNS[0]], namespace=self.ns),
                step="keyed_session (the other column's key)",
                template=stmt,
            )
        o, g = s.try_read(f"SELECT {self.r(COLUMNS[1])} FROM {TABLE} WHERE row_id = %s", (1,))
        self.reads["a session handed the id_number key as the phone key reads phone"] = _outcome(o, g, self.values[0])
        if o == "value" and _text(g) == self.values[0]:
            return [msg("cc_shared_key")]
        return []

    def _wrong_key_reads(self) -> list[Text | str]:
        wrong = self.open_session("wrong-key", ())
        for stmt in self.spec.keyed_session:
            wrong.run(
                stmt.format(key=self.keys[COLUMNS[0]], secret_hex=os.urandom(16).hex(), namespace=self.ns),
                step="keyed_session (a wrong key)",
                template=stmt,
            )
        o, g = wrong.try_read(f"SELECT {self.r(COLUMNS[0])} FROM {TABLE} WHERE row_id = %s", (1,))
        self.reads["a session with a wrong id_number key reads id_number"] = _outcome(o, g, self.values[0])
        if o == "value" and _text(g) == self.values[0]:
            return [msg("cc_wrong_key_read")]
        return []

    def result(self) -> ColumnResult:
        spec = self.spec
        details = {
            "rows": ROWS,
            "columns": list(COLUMNS),
            "algorithm_declared": spec.algorithm,
            "templates": {k: v for k, v in asdict(spec).items() if k not in ("algorithm", "keyed_options")}
            | {"keyed_options": sorted(spec.keyed_options)},  # option names only
            "key_names": list(self.keys.values()),
            "key_material": "16 random bytes per column for this run, never recorded"
            if any("{secret_hex}" in t for t in (spec.create_key, *spec.keyed_session))
            else "held by the target",
            "plaintexts_found_in_stored_bytes": self.facts["plaintexts_found_in_stored_bytes"],
            "ciphertext_shape": self.facts["ciphertext_shape"],
            "rows_with_equal_ciphertext_in_both_columns": self.facts["rows_with_equal_ciphertext_in_both_columns"],
            "keyed_round_trip": self.facts["keyed_round_trip"],
            "reads": self.reads,
        }
        return ColumnResult(parts=self.parts, details=details, notes=self.notes, why=self.why, names=self.names)

    def clean_up(self) -> None:
        """Drop the table and keys, run the teardown (each failure a note), close every session."""
        keyed = self.keyed
        cleanup = keyed if keyed is not None and not keyed.conn_broken() else None
        if cleanup is not None:
            if self.table_made:
                _quiet(cleanup, f"DROP TABLE IF EXISTS {TABLE}", self.notes)
            for c in self.made_keys:
                if self.spec.drop_key:
                    _quiet(cleanup, self.spec.drop_key.format(key=self.keys[c], namespace=self.ns), self.notes)
            if self.set_up_started:
                for stmt in self.spec.teardown:
                    _quiet(cleanup, stmt.format(namespace=self.ns), self.notes)
        for s in self.sessions:
            s.close()


def _quiet(s: _Session, sql: str, notes: list[Text | str]) -> None:
    try:
        s.run(sql, step="clean-up")
    except ClauseproofError as exc:
        notes.append(msg("note_cleanup_error", error=exc.what))


def _alter(v: Any) -> Any:
    """``v`` with its middle byte (or, for text, character) changed."""
    if isinstance(v, str):  # a text column (base64 or hex ciphertext, say): stay valid text
        if not v:
            return v
        i = len(v) // 2
        return v[:i] + ("A" if v[i] != "A" else "B") + v[i + 1 :]
    b = bytearray(_raw(v))
    if b:
        b[len(b) // 2] ^= 0x01
    return bytes(b) if b else v


def _outcome(outcome: str, got: Any, plain: str) -> str:
    if outcome == "error":
        return f"refused: {got}"
    if got is None:
        return "no value (NULL)"
    text = _text(got)
    return "read as plaintext" if text == plain else f"a value that is not the plaintext ({len(_raw(got))} bytes)"


#: ``[column_encryption]`` of a profile, registered in pyproject.toml (entry point group ``clauseproof.sections``).
SECTION = Section("column_encryption", KEYS, parse)
