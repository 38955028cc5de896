"""SM4 column encryption: per-column keys, row binding, tampering, sessions without the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import BigInteger, Engine, LargeBinary, create_engine, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from clauseproof.core.errors import ClauseproofError
from clauseproof.encryption.sm4column import (
    EnvKeyProvider,
    FileKeyProvider,
    KeyUnavailable,
    SealBroken,
    SM4Attribute,
    aad,
    install,
    seal,
    unseal,
)

KEYS = {
    "CLAUSEPROOF_KEY_PATIENT_ID_NUMBER": "00112233445566778899aabbccddeeff",
    "CLAUSEPROOF_KEY_PATIENT_PHONE": "ffeeddccbbaa99887766554433221100",
}


class Base(DeclarativeBase):
    pass


class Patient(Base):
    __tablename__ = "patient"
    patient_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id_number_sealed: Mapped[bytes | None] = mapped_column("id_number", LargeBinary)
    phone_sealed: Mapped[bytes | None] = mapped_column("phone", LargeBinary)
    id_number = SM4Attribute("id_number_sealed", key="patient.id_number")
    phone = SM4Attribute("phone_sealed", key="patient.phone")


@pytest.fixture()
def engine() -> Engine:
    e = create_engine("sqlite://")
    Base.metadata.create_all(e)
    return e


def test_round_trip_and_stored_bytes_hold_no_plaintext(engine: Engine) -> None:
    with Session(engine) as s:
        install(s, EnvKeyProvider(KEYS))
        s.add(Patient(patient_id=1, id_number="610102199001011234", phone="610102199001011234"))
        s.commit()
    with engine.connect() as c:
        idn, phone = c.execute(text("SELECT id_number, phone FROM patient")).one()
    assert b"610102199001011234" not in idn and b"610102199001011234" not in phone
    assert idn != phone  # same plaintext, two columns: different keys and nonces
    with Session(engine) as s:
        install(s, EnvKeyProvider(KEYS))
        p = s.get(Patient, 1)
        assert p is not None and p.id_number == "610102199001011234" and p.phone == "610102199001011234"


def test_same_plaintext_same_column_differs_by_nonce() -> None:
    key = bytes.fromhex(KEYS["CLAUSEPROOF_KEY_PATIENT_PHONE"])
    a, b = seal(key, b"13800000000", aad("t", "c", 1)), seal(key, b"13800000000", aad("t", "c", 1))
    assert a != b and unseal(key, a, aad("t", "c", 1)) == unseal(key, b, aad("t", "c", 1)) == b"13800000000"


def test_session_without_the_key_cannot_read(engine: Engine) -> None:
    with Session(engine) as s:
        install(s, EnvKeyProvider(KEYS))
        s.add(Patient(patient_id=2, id_number="X1", phone="Y1"))
        s.commit()
    only_phone = {"CLAUSEPROOF_KEY_PATIENT_PHONE": KEYS["CLAUSEPROOF_KEY_PATIENT_PHONE"]}
    with Session(engine) as s:
        install(s, EnvKeyProvider(only_phone))  # a user holding one column's key only
        p = s.get(Patient, 2)
        assert p is not None and p.phone == "Y1"
        with pytest.raises(KeyUnavailable) as exc:
            _ = p.id_number
        assert "CLAUSEPROOF_KEY_PATIENT_ID_NUMBER" in str(exc.value)
        assert KEYS["CLAUSEPROOF_KEY_PATIENT_ID_NUMBER"] not in str(exc.value)  # keys never in messages
    wrong = dict(KEYS, CLAUSEPROOF_KEY_PATIENT_ID_NUMBER="0" * 32)
    with Session(engine) as s:
        install(s, EnvKeyProvider(wrong))
        p = s.get(Patient, 2)
        assert p is not None
        with pytest.raises(SealBroken):
            _ = p.id_number


def test_moved_or_altered_ciphertext_is_rejected(engine: Engine) -> None:
    with Session(engine) as s:
        install(s, EnvKeyProvider(KEYS))
        s.add_all(
            [Patient(patient_id=3, id_number="A3", phone="P3"), Patient(patient_id=4, id_number="A4", phone="P4")]
        )
        s.commit()
    with engine.begin() as c:  # an attacker with table access: copy row 3's value into row 4, and a column swap
        c.execute(
            text(
                "UPDATE patient SET id_number = (SELECT id_number FROM patient WHERE patient_id = 3) "
                "WHERE patient_id = 4"
            )
        )
        c.execute(text("UPDATE patient SET phone = id_number WHERE patient_id = 3"))
    with Session(engine) as s:
        install(s, EnvKeyProvider(KEYS))
        p3, p4 = s.get(Patient, 3), s.get(Patient, 4)
        assert p3 is not None and p4 is not None
        assert p3.id_number == "A3"
        for read in (lambda: p4.id_number, lambda: p3.phone):
            with pytest.raises(SealBroken):
                read()
    key = bytes.fromhex(KEYS["CLAUSEPROOF_KEY_PATIENT_PHONE"])
    sealed = bytearray(seal(key, b"13800000000", aad("patient", "phone", 9)))
    sealed[-20] ^= 1
    with pytest.raises(SealBroken):
        unseal(key, bytes(sealed), aad("patient", "phone", 9))


def test_update_reseals_and_row_key_is_required(engine: Engine) -> None:
    with Session(engine) as s:
        install(s, EnvKeyProvider(KEYS))
        p = Patient(patient_id=5, id_number="old", phone=None)
        s.add(p)
        s.commit()
        p.id_number = "new"
        s.commit()
    with Session(engine) as s:
        install(s, EnvKeyProvider(KEYS))
        got = s.get(Patient, 5)
        assert got is not None and got.id_number == "new" and got.phone is None
        s.add(Patient(id_number="no key yet"))
        with pytest.raises(ClauseproofError, match="row key must be set"):
            s.flush()


def test_key_file_provider(tmp_path: Path) -> None:
    f = tmp_path / "keys"
    f.write_text("# per column keys\npatient.id_number = 00112233445566778899aabbccddeeff\n")
    f.chmod(0o644)
    with pytest.raises(ClauseproofError, match="chmod 600"):
        FileKeyProvider(f)
    f.chmod(0o600)
    assert FileKeyProvider(f).key("patient.id_number") == bytes.fromhex("00112233445566778899aabbccddeeff")
    with pytest.raises(KeyUnavailable):
        FileKeyProvider(f).key("patient.phone")
    f.write_text("patient.id_number = 0011\n")
    with pytest.raises(ClauseproofError, match="has 2 bytes, not 16"):
        FileKeyProvider(f)
