"""What the sync checker found for one mapped table: each differing key (:class:`RowDiff`) and the table's outcome
(:class:`TableCheck`), with its summary in the report's language and its evidence."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from clauseproof.core.i18n import Text, joined, msg


@dataclass(frozen=True)
class RowDiff:
    """One differing key: its kind, the differing columns, and both sides' canonical values."""

    key: int | str  # the integer key, or a hashed key's values as text ("a, b" of a composite key)
    kind: str  # missing | extra | duplicated | changed | moved
    columns: tuple[str, ...] = ()
    source: tuple[Any, ...] | None = None
    target: tuple[Any, ...] | None = None
    detail: str = ""

    def describe(self) -> str:
        return str(self.describe_text())

    def describe_text(self) -> Text:
        """The difference in the report's language (keys, columns and counts as they are)."""
        if self.kind == "changed":
            return msg("diff_changed", row=self.key, columns=", ".join(self.columns))
        if self.kind == "duplicated":
            return msg("diff_duplicated", row=self.key, detail=self.detail)
        if self.kind == "moved":
            return msg("diff_moved", row=self.key, to=self.detail.removeprefix("to key "))
        return msg("diff_missing" if self.kind == "missing" else "diff_extra", row=self.key)


@dataclass
class TableCheck:
    """The outcome of comparing one mapped table."""

    table: str
    source_rows: int = 0
    target_rows: int = 0
    source_null_keys: int = 0
    target_null_keys: int = 0
    missing_columns: list[str] = field(default_factory=list)  # mapped but absent on the target
    extra_columns: list[str] = field(default_factory=list)  # on the target but not mapped (exact_columns)
    diffs: list[RowDiff] = field(default_factory=list)
    truncated: bool = False  # stopped after MAX_LISTED differing keys
    chunks: int = 0
    queries: int = 0
    rows_fetched: int = 0
    seconds: float = 0.0
    first_diff_s: float | None = None  # from the start until the first differing key was named
    side_seconds: dict[str, float] = field(default_factory=dict)
    #: with a :class:`Settle`: its column, window, cut-off, the young keys read on each side, the servers' clocks
    settle: dict[str, Any] | None = None
    young_diffs: list[RowDiff] = field(default_factory=list)  # differences of keys inside the settle window
    young_keys: set[int | str] = field(default_factory=set, repr=False)
    settle_us: tuple[int, int] | None = field(default=None, repr=False)  # the cut-off and the source's clock, µs
    jobs: int = 1  # parts of the key range checked at once, each on a pair of sessions of its own
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def counts_equal(self) -> bool:
        # the young keys' rows on one side only (an insert not yet copied) explain that many rows of the counts
        delta = 0
        for d in self.young_diffs:
            if d.kind == "missing":
                delta += 1
            elif d.kind == "extra":
                delta -= 1
            elif d.kind == "duplicated":
                a, _, b = d.detail.partition(" : ")
                delta += int(a) - int(b)
        return self.source_rows - self.target_rows == delta and self.source_null_keys == self.target_null_keys

    @property
    def equal(self) -> bool:
        return (
            self.counts_equal
            and not self.diffs
            and not self.missing_columns
            and not self.extra_columns
            and not self.truncated
        )

    def kinds(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.diffs:
            out[d.kind] = out.get(d.kind, 0) + 1
        return out

    def summary(self, limit: int = 5) -> str:
        """One line: equal, or what differs with the first keys (English; :meth:`summary_text` for the report)."""
        return str(self.summary_text(limit))

    def summary_text(self, limit: int = 5) -> Text:
        head = dict(table=self.table, source=self.source_rows, target=self.target_rows)
        young = None
        if self.settle is not None:
            young = msg("check_young", n=len(self.young_diffs), column=self.settle["column"],
                        age=f"{self.settle['min_age_s']:g}",
                        first=joined([d.describe_text() for d in self.young_diffs[:limit]]) or "-")  # fmt: skip
        if self.equal:
            return msg("check_equal", **head) if young is None else msg("and_also", first=msg("check_equal", **head),
                                                                          then=young)  # fmt: skip
        parts: list[Text | str] = []
        if self.missing_columns:
            parts.append(msg("check_columns_missing", columns=", ".join(self.missing_columns)))
        if self.extra_columns:
            parts.append(msg("check_columns_extra", columns=", ".join(self.extra_columns)))
        if self.source_null_keys or self.target_null_keys:
            parts.append(msg("check_null_keys", source=self.source_null_keys, target=self.target_null_keys))
        if self.diffs:
            more = "+" if self.truncated else ""
            # diff_kind_missing, diff_kind_extra, diff_kind_duplicated, diff_kind_changed, diff_kind_moved
            kinds = joined([msg("diff_kind_count", n=n, kind=msg(f"diff_kind_{k}"))
                            for k, n in sorted(self.kinds().items())])  # fmt: skip
            first = joined([d.describe_text() for d in self.diffs[:limit]])
            parts.append(msg("check_differing", n=f"{len(self.diffs)}{more}", kinds=kinds, first=first))
        if young is not None:
            parts.append(young)
        return msg("check_differs", **head, what=joined(parts))

    def evidence(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "equal": self.equal,
            "source_rows": self.source_rows,
            "target_rows": self.target_rows,
            "rows_without_key": {"source": self.source_null_keys, "target": self.target_null_keys},
            "missing_columns": self.missing_columns,
            "extra_columns": self.extra_columns,
            "differing_keys": len(self.diffs),
            "listing_truncated": self.truncated,
            "kinds": self.kinds(),
            "first_differences": [
                {"key": d.key, "kind": d.kind, "columns": list(d.columns), "detail": d.detail}
                | ({"source": [str(v) for v in d.source]} if d.source else {})
                | ({"target": [str(v) for v in d.target]} if d.target else {})
                for d in self.diffs[:20]
            ],
            "chunks": self.chunks,
            "checksum_queries": self.queries,
            "rows_fetched": self.rows_fetched,
            "seconds": round(self.seconds, 3),
            "first_difference_s": None if self.first_diff_s is None else round(self.first_diff_s, 3),
            "side_seconds": {k: round(v, 3) for k, v in self.side_seconds.items()},
            "parts_at_once": self.jobs,
        } | (
            {}
            if self.settle is None
            else {
                "settle": self.settle,
                "young_differing_keys": len(self.young_diffs),
                "young_differences": [{"key": d.key, "kind": d.kind} for d in self.young_diffs[:20]],
            }
        )
