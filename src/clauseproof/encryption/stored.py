"""What a stored column value shows: plaintext under any reversible encoding (hex, base64, compression), or
bytes that look like ciphertext; and the session the column checks run statements through (keys hidden in its
errors)."""

from __future__ import annotations

import base64
import binascii
import bz2
import contextlib
import gzip
import lzma
import math
import re
import zlib
from collections import Counter
from typing import Any

from clauseproof.core.errors import ClauseproofError, first_line

#: What replaces a key quoted in an error.
REDACTED = "<key>"
_HEX_RUN = re.compile(r"[0-9A-Fa-f]{8,}")

#: A stored value must hold at least one cipher block, and all of them together look random: Shannon
#: entropy of their bytes (hex and base64 text decoded first) at least this many bits per byte.  Random
#: bytes give ~7.9 over a few kB; identity numbers in any reversible encoding give at most ~4.
MIN_CIPHERTEXT_BYTES = 16
MIN_ENTROPY_BITS = 6.0


def _decodings(raw: bytes) -> list[bytes]:
    """``raw`` and what it decodes to as hex, base64 (standard and URL-safe), and each of those
    decompressed (zlib, gzip, bz2, lzma): the encodings a store could hide plaintext under."""
    out = [raw]
    text = raw.strip()
    if text[:2] in (b"\\x", b"0x"):
        text = text[2:]
    with contextlib.suppress(ValueError):
        out.append(bytes.fromhex(text.decode("ascii")))
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        with contextlib.suppress(ValueError, binascii.Error):
            out.append(decode(text + b"=" * (-len(text) % 4)))
    for b in list(out):
        for inflate in (zlib.decompress, gzip.decompress, bz2.decompress, lzma.decompress):
            with contextlib.suppress(Exception):
                out.append(inflate(b))
    return out


def plaintext_forms(value: str) -> list[bytes]:
    """The plaintext as a store could hold it without encrypting it: UTF-8, UTF-16, reversed, hex, base64."""
    utf8 = value.encode()
    return [
        utf8,
        value.encode("utf-16-le"),
        value.encode("utf-16-be"),
        utf8[::-1],
        utf8.hex().encode(),
        utf8.hex().upper().encode(),
        base64.b64encode(utf8).rstrip(b"="),
    ]


def plaintext_found(values: list[str], stored: list[bytes]) -> int:
    """How many of ``values`` appear in ``stored`` in plain or under a common encoding or compression."""
    blobs = [d for raw in stored for d in _decodings(raw)]
    return sum(1 for v in values if any(form in blob for form in plaintext_forms(v) for blob in blobs))


def _best_decoding(raw: bytes) -> bytes:
    """The bytes a hex or base64 text stands for (the text itself otherwise)."""
    text = raw.strip()
    if text[:2] in (b"\\x", b"0x"):
        text = text[2:]
    if text and re.fullmatch(rb"[0-9A-Fa-f]+", text) and len(text) % 2 == 0:
        return bytes.fromhex(text.decode())
    if text and re.fullmatch(rb"[A-Za-z0-9+/=_-]+", text) and len(text) % 4 == 0:
        with contextlib.suppress(ValueError, binascii.Error):
            return base64.b64decode(text, altchars=b"-_" if b"-" in text or b"_" in text else None)
    return raw


def ciphertext_shape(stored: list[bytes]) -> tuple[bool, str]:
    """Whether stored values look like ciphertext: each at least a cipher block long, together near-random
    bytes.  Returns (ok, what was seen)."""
    decoded = [_best_decoding(v) for v in stored if v]
    if not decoded:
        return False, "no stored value"
    short = sum(1 for d in decoded if len(d) < MIN_CIPHERTEXT_BYTES)
    blob = b"".join(decoded)
    counts = Counter(blob)
    entropy = -sum(n / len(blob) * math.log2(n / len(blob)) for n in counts.values())
    seen = (
        f"{entropy:.2f} bits per byte over {len(blob):,} stored bytes (at least {MIN_ENTROPY_BITS:g} wanted), "
        f"{short} of {len(decoded)} values shorter than {MIN_CIPHERTEXT_BYTES} bytes"
    )
    return entropy >= MIN_ENTROPY_BITS and short == 0, seen


class _Session:
    """One connection whose statements fail with a ClauseproofError that names the step and hides keys."""

    def __init__(self, conn: Any, secrets: list[str], label: str) -> None:
        self.conn = conn
        self.secrets = secrets
        self.label = label

    def hide(self, text: str) -> str:
        """``text`` with every run of hex digits that holds 8 digits of a key replaced: servers quote
        statements in errors, sometimes cut short (MySQL's "near '…'")."""

        keys = [k.lower() for k in self.secrets]

        def sub(m: re.Match[str]) -> str:  # a run holding 8 digits of a key goes whole (cut pieces too)
            run = m.group(0).lower()
            return REDACTED if any(run[i : i + 8] in k for i in range(len(run) - 7) for k in keys) else m.group(0)

        return _HEX_RUN.sub(sub, text)

    def error_line(self, exc: BaseException) -> str:
        return self.hide(first_line(exc))

    def run(self, sql: str, params: Any = None, *, step: str, template: str = "", many: bool = False) -> list[Any]:
        try:
            with self.conn.cursor() as cur:
                if many:
                    cur.executemany(sql, params)
                    return []
                cur.execute(sql, params)
                return list(cur.fetchall()) if cur.description else []
        except Exception as exc:
            raise ClauseproofError(
                f"[column_encryption] {step} failed on the {self.label} session: {self.error_line(exc)}",
                checked=f"the profile's template {template!r}" if template else "",
                fix="correct that template in the profile (keys appear here as <key>)",
            ) from None

    def try_read(self, sql: str, params: Any) -> tuple[str, Any]:
        """('value', v) or ('error', message): a read that may be refused."""
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql, params)
                row = cur.fetchone()
            return "value", (row[0] if row else None)
        except Exception as exc:
            if self.conn_broken():
                raise ClauseproofError(
                    f"the {self.label} session was lost during a read: {self.error_line(exc)}",
                    fix="check the target's log",
                ) from None
            return "error", self.error_line(exc)

    def conn_broken(self) -> bool:
        closed = getattr(self.conn, "closed", None)  # psycopg
        if isinstance(closed, bool):
            return closed
        return not getattr(self.conn, "open", True)  # PyMySQL

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass
