"""Vectorised, deterministic generation of canonical row text.

Rows are built as a fixed-width ``uint8`` matrix in which pad bytes are ``0``; one boolean
mask then drops the pads, leaving variable-width text in exactly the form the servers print
for the same values (``bigint::text``, ``numeric(12,2)::text``, ISO timestamps).  Because the
file text *is* the canonical form, the content digest of a loaded table can be predicted from
the file alone.

Randomness is counter-based (SplitMix64 of seed, row number and column number), so row ``i``
depends only on ``(seed, i)`` and the output does not depend on the NumPy version.

Speed notes (measured on the 2-core CI class of machine): NumPy divides ``uint32`` arrays by a
scalar through libdivide, ~10x faster than ``uint64``, so digits are extracted in ``uint32``;
each field is built as a contiguous ``(width, n)`` block and transposed into place once.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_ZERO = np.uint8(ord("0"))
_TEN32 = np.uint32(10)
_E9 = np.uint64(10**9)


def splitmix64(x: U64) -> U64:
    """SplitMix64 finaliser over an array (wrapping uint64 arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def random_u64(seed: int, rows: U64, column: int) -> U64:
    """Deterministic 64-bit random values for ``rows`` of one column."""
    base = splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        key = rows * np.uint64(0x100) + np.uint64(column) + base
    return splitmix64(splitmix64(key))


def _digits(values: U64, width: int) -> U8:
    """``(width, n)`` ASCII digits of ``values`` (which must be < 10**width), zero-filled."""
    out = np.empty((width, len(values)), dtype=np.uint8)
    if width > 9:
        hi = values // _E9
        out[: width - 9] = _digits(hi, width - 9)
        out[width - 9 :] = _digits(values - hi * _E9, 9)
        return out
    q = values.astype(np.uint32)
    for k in range(width - 1, -1, -1):
        nq = q // _TEN32
        out[k] = q - nq * _TEN32
        q = nq
    out += _ZERO
    return out


class RowMatrix:
    """A fixed-width row buffer filled field by field, left to right."""

    def __init__(self, rows: int, width: int) -> None:
        self.m: U8 = np.zeros((rows, width), dtype=np.uint8)
        self.col = 0

    def uint(self, values: U64, width: int, *, pad: bool = True) -> None:
        """Decimal digits of ``values`` in ``width`` bytes.

        With ``pad`` leading zeros become pad bytes, giving the canonical integer text;
        without it they stay ``'0'`` (months, cents, fixed-width codes).
        """
        d = _digits(values, width)
        if pad:
            for k in range(width - 1):
                d[k][values < np.uint64(10 ** (width - 1 - k))] = 0
        self.m[:, self.col : self.col + width] = d.T
        self.col += width

    def byte(self, value: int | U8) -> None:
        """One constant byte, or one byte per row."""
        self.m[:, self.col] = value
        self.col += 1

    def text(self, s: str) -> None:
        """Constant ASCII text."""
        for ch in s.encode("ascii"):
            self.byte(ch)

    def compact(self) -> bytes:
        """The rows with pad bytes dropped."""
        if self.col != self.m.shape[1]:
            raise AssertionError(f"row matrix filled {self.col} of {self.m.shape[1]} bytes")
        flat = self.m.reshape(-1)
        return flat[flat != 0].tobytes()


def civil_from_days(days: U64) -> tuple[U64, U64, U64]:
    """(year, month, day) from days since 1970-01-01 (H. Hinnant's algorithm), vectorised."""
    z = days.astype(np.int64) + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = np.where(mp < 10, mp + 3, mp - 9)
    y = np.where(m <= 2, y + 1, y)
    return y.astype(np.uint64), m.astype(np.uint64), d.astype(np.uint64)
