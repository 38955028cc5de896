"""BZ-DB-2, column level: SM4 column encryption with a key per column and per user.

On the embedded default the harness's own SM4-GCM column type (``clauseproof.encryption.sm4column``)
is what is proven: it is client-side encryption, so the server only ever stores ciphertext.
A target whose profile declares its own column encryption (``[column_encryption]``) is proven
or disproven with the same checks through that declaration (``clauseproof.encryption.colcrypt``).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from sqlalchemy import URL, BigInteger, LargeBinary, create_engine, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from clauseproof.core.evidence import CaseEvidence
from clauseproof.core.i18n import msg, skip
from clauseproof.encryption import colcrypt
from clauseproof.encryption import stored as stored_values
from clauseproof.encryption.sm4column import (
    EnvKeyProvider,
    KeyUnavailable,
    SealBroken,
    SM4Attribute,
    aad,
    install,
    unseal,
)
from clauseproof.run.plugin import RUN_KEY
from clauseproof.targets.base import Target


class _Base(DeclarativeBase):
    pass


class InsuredPerson(_Base):
    __tablename__ = "insured_person"
    person_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id_number_sealed: Mapped[bytes | None] = mapped_column("id_number", LargeBinary)
    phone_sealed: Mapped[bytes | None] = mapped_column("phone", LargeBinary)
    id_number = SM4Attribute("id_number_sealed", key="insured_person.id_number")
    phone = SM4Attribute("phone_sealed", key="insured_person.phone")


def _url(target: Target) -> URL:
    """The target as a SQLAlchemy URL, with its password (masked whenever the URL is printed)."""
    ep = target.address()
    return URL.create(
        "postgresql+psycopg" if target.dialect == "postgresql" else "mysql+pymysql",
        username=ep.user,
        password=ep.password or None,
        host=ep.host,
        port=ep.port,
        database=ep.database if target.dialect == "postgresql" else target.namespace,
    )


@pytest.mark.clause("BZ-DB-2")
def test_sm4_column_encryption(target: Target, evidence: CaseEvidence) -> None:
    """Same plaintext in two columns differs; stored bytes hold no plaintext; a user without a column's
    key cannot read it; a ciphertext moved to another row or column, or altered, is rejected."""
    keys = {
        EnvKeyProvider.variable("insured_person.id_number"): os.urandom(16).hex(),
        EnvKeyProvider.variable("insured_person.phone"): os.urandom(16).hex(),
    }
    opts: dict[str, Any] = {"options": f"-c search_path={target.namespace}"} if target.dialect == "postgresql" else {}
    engine = create_engine(_url(target), connect_args=opts)
    _Base.metadata.create_all(engine)
    people = [(i, f"61010219900101{i:04d}", f"1380000{i:04d}") for i in range(1, 201)]
    try:
        with Session(engine) as s:
            install(s, EnvKeyProvider(keys))
            s.add_all(InsuredPerson(person_id=i, id_number=idn, phone=idn) for i, idn, _ in people)
            s.commit()
        with engine.connect() as c:
            stored = c.execute(text("SELECT person_id, id_number, phone FROM insured_person")).all()
        values = [bytes(r[k]) for r in stored for k in (1, 2)]
        leaked = stored_values.plaintext_found([idn for _, idn, _ in people], values)
        shaped, shape = stored_values.ciphertext_shape(values)
        # a key per column, shown as only distinct keys show it: row 1's id_number opens under its own key
        # and not under the phone column's key, with the same associated data
        sealed = bytes(next(r[1] for r in stored if r[0] == 1))
        bound = aad("insured_person", "id_number", 1)
        id_key, phone_key = (
            bytes.fromhex(keys[EnvKeyProvider.variable(f"insured_person.{c}")]) for c in ("id_number", "phone")
        )
        own_key = unseal(id_key, sealed, bound) == people[0][1].encode()
        try:
            unseal(phone_key, sealed, bound)
            other_key_refused = False
        except SealBroken:
            other_key_refused = True
        with Session(engine) as s:
            install(s, EnvKeyProvider(keys))
            round_trip = all(s.get(InsuredPerson, i).id_number == idn for i, idn, _ in people[:20])  # type: ignore[union-attr]
        phone_only = {k: v for k, v in keys.items() if "PHONE" in k}
        with Session(engine) as s:
            install(s, EnvKeyProvider(phone_only))  # a user holding the phone column's key only
            p = s.get(InsuredPerson, 1)
            assert p is not None
            try:
                _ = p.id_number
                per_user = False
            except KeyUnavailable:
                per_user = p.phone == people[0][1]
        with engine.begin() as c:  # someone with table access moves ciphertexts around
            c.execute(text("UPDATE insured_person SET id_number = :v WHERE person_id = 2"), {"v": bytes(stored[0][1])})
            c.execute(text("UPDATE insured_person SET phone = :v WHERE person_id = 3"), {"v": bytes(stored[2][1])})
        rejected = 0
        with Session(engine) as s:
            install(s, EnvKeyProvider(keys))
            for pid, attr in ((2, "id_number"), (3, "phone")):
                try:
                    getattr(s.get(InsuredPerson, pid), attr)
                except SealBroken:
                    rejected += 1
    finally:
        _Base.metadata.drop_all(engine)
        engine.dispose()
    evidence.parameters(
        rows=len(people),
        cipher="SM4-GCM (cryptography), 12-byte random nonce per value, 16-byte tag",
        associated_data="table|column|row key",
        keys="one 16-byte key per column from the environment (generated for this run, never recorded)",
        where="client side: the server stores only ciphertext",
    )
    evidence.parameters(plaintexts_found_in_stored_bytes=leaked, ciphertext_shape=shape)
    parts = [
        (msg("part_column_sm4"), leaked == 0 and shaped and round_trip, msg("plaintexts_found", n=leaked, shape=shape)),
        (msg("part_key_per_column"), own_key and other_key_refused,
         msg("other_key_opened" if not other_key_refused else "other_key_did_not_open")),
        (msg("part_key_per_user"), per_user, msg("phone_session_read")),
        (msg("part_ciphertext_moved"), rejected == 2, msg("moved_accepted", n=2 - rejected)),
    ]  # fmt: skip
    for part, ok, why in parts:
        evidence.measure("BZ-DB-2", ok, "bool", statistic=part, why=why)
    evidence.require_pass()


@pytest.mark.clause("BZ-DB-2")
def test_target_column_encryption(request: pytest.FixtureRequest, target: Target, evidence: CaseEvidence) -> None:
    """The target's own column encryption, as its profile's [column_encryption] declares it: the same four
    checks, and whether the declared cipher is SM4."""
    spec = target.profile.section("column_encryption") if target.profile else None
    if spec is None:
        skip(msg("skip_no_column_encryption"))
    result = colcrypt.check(target, spec, seed=request.config.stash[RUN_KEY].settings.seed)
    evidence.parameters(**result.details)
    for note in result.notes:
        evidence.note(note)
    sm4 = "SM4" in spec.algorithm.upper()
    evidence.note(msg("note_cipher_declared", algorithm=repr(spec.algorithm)))
    evidence.measure(
        "BZ-DB-2",
        sm4,
        "bool",
        statistic=msg("part_column_cipher", declared=spec.algorithm),
        why=msg("declares_other_cipher"),
    )
    for part, ok in result.parts.items():  # a part not shown is a row that says so
        reason = result.why.get(part, "")
        name = result.names.get(part, part)
        evidence.part("BZ-DB-2", ok, statistic=msg("part_named", part=name), why=reason, not_shown=reason)
    evidence.require_pass()
