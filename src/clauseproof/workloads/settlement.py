"""Medical-insurance settlement rows (医保结算明细): the table the insert/import clauses load.

Each row is one settlement of one hospital visit: a sequential key, the insured person,
the medical institution's national code (``H`` + 11 digits), an ICD-10 diagnosis code,
the insurance type (310 employee basic, 390 resident basic, 510 maternity), the total
amount, the part paid by the fund, the part paid by the patient, and the settlement time.
Amounts are consistent (``fund_paid + self_paid = total_amount``).
"""

from __future__ import annotations

import numpy as np

from clauseproof.bulk_load import textgen as tg

NAME = "settlement"
#: Column names in file and DDL order.
COLUMNS = (
    "settlement_id",
    "patient_id",
    "hospital_code",
    "diagnosis_code",
    "insurance_type",
    "total_amount",
    "fund_paid",
    "self_paid",
    "settled_at",
)
KEY = "settlement_id"
#: Bumped whenever the bytes produced for a given (rows, seed) change.
GENERATOR_VERSION = 1

_INSURANCE_TYPES = np.array([310, 390, 510], dtype=np.uint64)
_EPOCH_2024 = 19723  # days from 1970-01-01 to 2024-01-01
_SPAN_SECONDS = 731 * 86400  # 2024-01-01 .. 2025-12-31


def generate_chunk(seed: int, start: int, count: int) -> bytes:
    """Rows ``start .. start+count-1`` (0-based) as tab-separated text, one per line."""
    u = np.uint64
    rows = np.arange(start, start + count, dtype=np.uint64)
    r = [tg.random_u64(seed, rows, c) for c in range(7)]
    b = tg.RowMatrix(count, ROW_MATRIX_WIDTH)
    b.uint(rows + u(1), 10)
    b.byte(9)
    b.uint(u(100_000_000_000) + r[0] % u(900_000_000_000), 12)
    b.byte(9)
    # Institution code: H + province 61 (Shaanxi) + city 01..10 + 7-digit institution number.
    b.text("H61")
    city = r[1] % u(10) + u(1)
    b.uint(city * u(10_000_000) + (r[1] >> u(8)) % u(3000) + u(1), 9, pad=False)
    b.byte(9)
    # ICD-10 code: letter, two digits, '.', three digits (e.g. J18.900).
    b.byte((r[2] % u(26)).astype(np.uint8) + np.uint8(ord("A")))
    b.uint((r[2] >> u(8)) % u(100), 2, pad=False)
    b.text(".")
    b.uint((r[2] >> u(20)) % u(1000), 3, pad=False)
    b.byte(9)
    b.uint(_INSURANCE_TYPES[(r[3] % u(3)).astype(np.intp)], 3)
    b.byte(9)
    total = u(100) + r[4] % u(2_000_000)  # cents: 1.00 .. 20000.99
    fund = total * (r[5] % u(91)) // u(100)
    for cents in (total, fund, total - fund):
        b.uint(cents // u(100), 5)
        b.text(".")
        b.uint(cents % u(100), 2, pad=False)
        b.byte(9)
    secs = r[6] % u(_SPAN_SECONDS)
    y, mo, d = tg.civil_from_days(secs // u(86400) + u(_EPOCH_2024))
    tod = secs % u(86400)
    b.uint(y, 4, pad=False)
    b.text("-")
    b.uint(mo, 2, pad=False)
    b.text("-")
    b.uint(d, 2, pad=False)
    b.text(" ")
    b.uint(tod // u(3600), 2, pad=False)
    b.text(":")
    b.uint(tod // u(60) % u(60), 2, pad=False)
    b.text(":")
    b.uint(tod % u(60), 2, pad=False)
    b.text("\n")
    return b.compact()


ROW_MATRIX_WIDTH = 10 + 1 + 12 + 1 + 12 + 1 + 7 + 1 + 3 + 1 + 3 * (5 + 1 + 2 + 1) + 19 + 1
