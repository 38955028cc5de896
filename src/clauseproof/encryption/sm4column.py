"""SM4 column encryption for SQLAlchemy models: SM4-GCM, one key per column, rows bound.

Each value is sealed as ``b"SM4G" | version | nonce (12) | ciphertext | tag (16)`` with a fresh
random nonce.  The associated data is ``table|column|row key``, so a ciphertext copied to another
row or column, or altered, fails authentication instead of decrypting.  Keys come from a key
provider (environment variables or a key file), one named key per column; a session whose
provider lacks a key cannot read that column's plaintext.

Usage::

    class Patient(Base):
        __tablename__ = "patient"
        patient_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
        id_number_sealed: Mapped[bytes | None] = mapped_column("id_number", LargeBinary)
        id_number = SM4Attribute("id_number_sealed", key="patient.id_number")

    install(session, EnvKeyProvider())   # keys from CLAUSEPROOF_KEY_PATIENT_ID_NUMBER=<32 hex>

The row key (primary key) must be assigned before the flush; plaintext is sealed at flush time.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from sqlalchemy import Table, event, inspect
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.orm.attributes import instance_state

from clauseproof.core import masking
from clauseproof.core.errors import ClauseproofError

MAGIC = b"SM4G"
VERSION = 1
NONCE = 12
TAG = 16
_HEADER = len(MAGIC) + 1


class KeyUnavailable(ClauseproofError):
    """The session's key provider has no key of that name (the value stays sealed)."""


class SealBroken(ClauseproofError):
    """A sealed value failed authentication: altered, or moved from another row or column."""


class KeyProvider(Protocol):
    def key(self, name: str) -> bytes:
        """The 16-byte SM4 key called ``name``; raises :class:`KeyUnavailable`."""
        ...


def _check_key(name: str, raw: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(raw.strip())
    except ValueError:
        raise ClauseproofError(
            f"the SM4 key {name!r} in {where} is not hex", fix="give 32 hex digits (16 bytes)"
        ) from None
    if len(key) != 16:
        raise ClauseproofError(
            f"the SM4 key {name!r} in {where} has {len(key)} bytes, not 16", fix="give 32 hex digits (16 bytes)"
        )
    return key


class EnvKeyProvider:
    """Keys from ``CLAUSEPROOF_KEY_<NAME>`` (name upper-cased, non-alphanumerics as ``_``)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self._keys: dict[str, bytes] = {}  # each key is read once, at its first use

    @staticmethod
    def variable(name: str) -> str:
        return "CLAUSEPROOF_KEY_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()

    def key(self, name: str) -> bytes:
        cached = self._keys.get(name)
        if cached is not None:
            return cached
        var = self.variable(name)
        if var not in self.environ:
            raise KeyUnavailable(
                f"no SM4 key {name!r} for this session",
                checked=f"environment variable {var}",
                fix=f"set {var} to 32 hex digits to read this column",
            )
        masking.remember(self.environ[var])
        key = self._keys[name] = _check_key(name, self.environ[var], f"environment variable {var}")
        return key


class FileKeyProvider:
    """Keys from a file of ``name = hex`` lines; the file must not be readable by others."""

    def __init__(self, path: Path) -> None:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ClauseproofError(
                f"the key file {path} is readable by other users (mode {oct(mode & 0o777)})", fix=f"chmod 600 {path}"
            )
        self.path = path
        self.keys: dict[str, bytes] = {}
        for n, line in enumerate(path.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, value = line.partition("=")
            if not sep:
                raise ClauseproofError(f"{path}:{n}: expected 'name = hex'", fix="write one key per line")
            self.keys[name.strip()] = _check_key(name.strip(), value, f"{path}:{n}")

    def key(self, name: str) -> bytes:
        if name not in self.keys:
            raise KeyUnavailable(f"no SM4 key {name!r} for this session", checked=f"the key file {self.path}")
        return self.keys[name]


def aad(table: str, column: str, row_key: object) -> bytes:
    """Associated data binding a value to its table, column and row."""
    return f"{table}|{column}|{row_key}".encode()


@functools.lru_cache(maxsize=64)
def _sm4(key: bytes) -> algorithms.SM4:
    return algorithms.SM4(key)


def seal(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """SM4-GCM encryption with a fresh random nonce."""
    nonce = os.urandom(NONCE)
    enc = Cipher(_sm4(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(associated)
    body = enc.update(plaintext) + enc.finalize()
    return MAGIC + bytes([VERSION]) + nonce + body + enc.tag


def unseal(key: bytes, sealed: bytes, associated: bytes) -> bytes:
    """Decrypt and authenticate; a wrong key, row, column or any altered byte raises :class:`SealBroken`."""
    if len(sealed) < _HEADER + NONCE + TAG or not sealed.startswith(MAGIC) or sealed[len(MAGIC)] != VERSION:
        raise SealBroken("the value is not an SM4-GCM envelope of version 1")
    nonce = sealed[_HEADER : _HEADER + NONCE]
    dec = Cipher(_sm4(key), modes.GCM(nonce, sealed[-TAG:])).decryptor()
    dec.authenticate_additional_data(associated)
    try:
        return dec.update(sealed[_HEADER + NONCE : -TAG]) + dec.finalize()
    except InvalidTag:
        raise SealBroken(
            "the sealed value failed authentication: altered, or moved from another row or column, "
            "or sealed under another key"
        ) from None


_PENDING = b""


class SM4Attribute:
    """A plaintext ``str`` attribute backed by a sealed ``LargeBinary`` column of the same model."""

    def __init__(self, backing: str, *, key: str) -> None:
        self.backing = backing
        self.key_name = key
        self.name = ""
        self._layouts: dict[type, tuple[str, str, tuple[str, ...]]] = {}

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        registry = owner.__dict__.get("__sm4_attributes__")
        if registry is None:
            registry = []
            owner.__sm4_attributes__ = registry  # type: ignore[attr-defined]
        registry.append(self)

    def _slot(self) -> str:
        return f"_sm4_plain_{self.name}"

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        if self._slot() in obj.__dict__:
            return obj.__dict__[self._slot()]
        sealed = getattr(obj, self.backing)
        if sealed is None:
            return None
        provider = _provider_of(obj)
        value = unseal(provider.key(self.key_name), sealed, self._aad(obj)).decode()
        obj.__dict__[self._slot()] = value
        return value

    def __set__(self, obj: Any, value: str | None) -> None:
        obj.__dict__[self._slot()] = value
        obj.__dict__[f"_sm4_dirty_{self.name}"] = True
        if value is None or instance_state(obj).key is not None:
            # a persistent row must be marked dirty; a new one is sealed at its first flush anyway
            setattr(obj, self.backing, None if value is None else _PENDING)

    def _layout(self, cls: type) -> tuple[str, str, tuple[str, ...]]:
        """(table, column, primary-key attribute names) of ``cls``, looked up once per class."""
        cached = self._layouts.get(cls)
        if cached is None:
            mapper: Mapper[Any] = inspect(cls)
            table = cast(Table, mapper.local_table).name
            column = mapper.get_property(self.backing).columns[0].name
            keys = tuple(mapper.get_property_by_column(c).key for c in mapper.primary_key)
            cached = self._layouts[cls] = (table, column, keys)
        return cached

    def _aad(self, obj: Any) -> bytes:
        table, column, keys = self._layout(type(obj))
        pk = [getattr(obj, k) for k in keys]
        if any(v is None for v in pk):
            raise ClauseproofError(
                f"{type(obj).__name__}.{self.name}: the row key must be set before the flush",
                fix="assign the primary key explicitly; the seal binds the value to it",
            )
        return aad(table, column, pk[0] if len(pk) == 1 else tuple(pk))

    def seal_pending(self, obj: Any, provider: KeyProvider) -> None:
        if not obj.__dict__.pop(f"_sm4_dirty_{self.name}", False):
            return
        value = obj.__dict__.get(self._slot())
        if value is not None:
            setattr(obj, self.backing, seal(provider.key(self.key_name), value.encode(), self._aad(obj)))


def _provider_of(obj: Any) -> KeyProvider:
    session = Session.object_session(obj)
    provider = session.info.get("sm4_keys") if session is not None else None
    if provider is None:
        raise KeyUnavailable(
            "this object is in no session with SM4 keys installed",
            fix="call clauseproof.encryption.sm4column.install(session, provider)",
        )
    return provider


def install(session: Session, provider: KeyProvider) -> None:
    """Give ``session`` its key provider and seal pending plaintext at every flush."""
    session.info["sm4_keys"] = provider
    if not event.contains(session, "before_flush", _before_flush):
        event.listen(session, "before_flush", _before_flush)


def _before_flush(session: Session, flush_context: Any, instances: Any) -> None:
    provider: KeyProvider = session.info["sm4_keys"]
    for obj in list(session.new) + list(session.dirty):
        for attr in getattr(type(obj), "__sm4_attributes__", ()):
            attr.seal_pending(obj, provider)
