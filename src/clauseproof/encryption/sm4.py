"""SM4 (GB/T 32907-2016) through ``cryptography``, and its known-answer tests."""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

KAT_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")
KAT_ONE = bytes.fromhex("681edf34d206965e86b3e94f536e4246")
KAT_MILLION = bytes.fromhex("595298c7c6fd271f0402f804c33d3f66")


@dataclass(frozen=True)
class KnownAnswer:
    """One known-answer test: what was computed against what the standard gives."""

    name: str
    expected: str
    got: str

    @property
    def ok(self) -> bool:
        return self.expected == self.got


def encrypt_block(key: bytes, block: bytes) -> bytes:
    """SM4 of one 16-byte block (ECB: only for known-answer tests, never for data)."""
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def known_answers(iterations: int = 1_000_000) -> list[KnownAnswer]:
    """Both GB/T 32907-2016 examples: one encryption, and ``iterations`` chained encryptions."""
    enc = Cipher(algorithms.SM4(KAT_KEY), modes.ECB()).encryptor()
    one = enc.update(KAT_KEY)
    x = KAT_KEY
    for _ in range(iterations):
        x = enc.update(x)
    return [
        KnownAnswer("GB/T 32907-2016 example 1: one encryption", KAT_ONE.hex(), one.hex()),
        KnownAnswer(f"GB/T 32907-2016 example 2: {iterations:,} chained encryptions", KAT_MILLION.hex(), x.hex()),
    ]


def random_vectors(n: int) -> list[tuple[bytes, bytes, bytes]]:
    """``n`` (key, block, ciphertext) triples with a random key and block each, made for this run and
    encrypted by the harness's SM4: a target that only looked up the published example cannot answer them."""
    out = []
    for _ in range(n):
        key, block = os.urandom(16), os.urandom(16)
        out.append((key, block, encrypt_block(key, block)))
    return out
