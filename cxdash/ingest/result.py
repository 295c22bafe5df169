"""What a load or a check reports: the result (counts, failures, duplicates, notes, impact) and the errors."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from cxdash.ingest.impact import LoadImpact
from cxdash.ingest.mapping import KindGuess, Mapping
from cxdash.ingest.validation import FAILURE_COLUMNS
from cxdash.store.kinds import get_kind

__all__ = [
    "IngestError",
    "IngestResult",
    "KindUnclearError",
]


class IngestError(ValueError):
    """The file was not loaded; ``result`` (when set) carries the validation report."""

    def __init__(self, message: str, result: IngestResult | None = None):
        super().__init__(message)
        self.result = result


class KindUnclearError(IngestError):
    """No kind was given, none is saved for the source, and no reading of the file is clearly
    right: ``guesses`` (best first, with reasons) name the candidates; nothing was stored."""

    def __init__(self, message: str, guesses: list[KindGuess]):
        super().__init__(message)
        self.guesses = guesses


@dataclass
class IngestResult:
    source: str
    kind: str
    file_name: str
    file_format: str
    mapping: Mapping
    rows_read: int = 0
    rows_valid: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rows_duplicate: int = 0
    rows_suppressed: int = 0  # rows of erased customers, dropped (see cxdash.governance.erasure)
    load_id: int | None = None
    failures: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FAILURE_COLUMNS))
    # every failure found; ``failures`` keeps the first ``max_failures`` of them (a note says so)
    failures_total: int = 0
    notes: list[str] = field(default_factory=list)
    stored: bool = False
    # Where the mapping came from: "given" (--mapping, the page), "saved" (the source's earlier
    # choice) or "guessed" (clearly one kind); per field, how its column was found.
    mapping_origin: str = "given"
    field_sources: dict[str, str] = field(default_factory=dict)
    guesses: list[KindGuess] = field(default_factory=list)
    # Duplicates: only on the kind's declared key (``duplicate_key``, e.g. "ticket_id ('Ticket ID')").
    duplicate_key: str | None = None
    rows_repeated_exact: int = 0  # same key, same values as an earlier line of the file
    rows_repeated_conflicting: int = 0  # same key, different values: the first line is kept
    conflicting_keys: list[str] = field(default_factory=list)
    rows_identical_kept: int = 0  # identical lines of a keyless kind, all kept (numbered #2, #3...)
    rows_already_loaded: int = 0  # rows the source already held from earlier loads
    refused: str | None = None  # why the file would not load (a check reports it, a load raises it)
    impact: LoadImpact | None = None  # a check's (cxdash.jobs.check_file: a dry run told how to count customers)
    # Rows of this load whose customer comes through a link (cxdash.identity.links.link_counts):
    # {"linked", "matched", "ambiguous", "unknown"}; empty without links.
    links: dict[str, int] = field(default_factory=dict)
    # Match rate of each declared link on the file's first rows, computed before loading
    # (cxdash.identity.links.LinkSuggestion); empty without links.
    link_rates: list = field(default_factory=list)
    # Seconds per stage of a load ("read, validate and write", "duplicates and bookkeeping",
    # "identity stitching", "commit"), for the log and the benchmark.
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        verb = "loaded" if self.stored else "NOT loaded"
        return (
            f"{self.file_name} -> {self.source} ({self.kind}): {verb}; read {self.rows_read:,}, "
            f"loaded {self.rows_loaded:,}, rejected {self.rows_rejected:,}, duplicates {self.rows_duplicate:,}"
            + (f", erased customers' rows dropped {self.rows_suppressed:,}" if self.rows_suppressed else "")
        )

    def mapping_table(self) -> pd.DataFrame:
        """The mapping used, column by column: ``field``, ``column``, ``found by``; fields the
        kind has but the file does not fill are listed with an empty column."""
        kind = get_kind(self.kind)
        return pd.DataFrame(
            [
                {
                    "field": f.name + (" *" if f.required else ""),
                    "column": self.mapping.columns.get(f.name, ""),
                    "found by": self.field_sources.get(f.name, "") if f.name in self.mapping.columns else "not mapped",
                }
                for f in kind.fields
            ]
        )

    def duplicate_lines(self) -> list[str]:
        """What happened to repeated rows, in sentences (empty when nothing repeated)."""
        out = []
        if self.duplicate_key:
            repeats = self.rows_repeated_exact + self.rows_repeated_conflicting
            if repeats:
                what = (
                    "the file is refused"
                    if self.refused
                    else "the first line of each key is kept; identical repeats are dropped, conflicting ones go to "
                    "the quarantine"
                )
                out.append(
                    f"{repeats:,} rows repeat a {self.duplicate_key} of an earlier line: "
                    f"{self.rows_repeated_exact:,} identical, {self.rows_repeated_conflicting:,} with different "
                    f"values ({what})."
                )
            else:
                out.append(f"No row repeats a {self.duplicate_key}.")
            if self.conflicting_keys:
                out.append(
                    "Keys with conflicting rows: "
                    + ", ".join(self.conflicting_keys)
                    + (" ..." if self.rows_repeated_conflicting > len(self.conflicting_keys) else "")
                )
        elif self.rows_identical_kept:
            out.append(
                f"{self.rows_identical_kept:,} lines repeat an earlier line exactly; {self.kind} declare no key, "
                "so all are kept."
            )
        if self.rows_already_loaded:
            out.append(f"{self.rows_already_loaded:,} rows were already loaded into {self.source} earlier (skipped).")
        return out

    def failure_counts(self) -> pd.DataFrame:
        """Failures per (column, rule): what an ops user reads first."""
        if self.failures.empty:
            return pd.DataFrame(columns=["column", "rule", "expected", "rows"])
        return (
            self.failures.groupby(["column", "rule", "expected"], dropna=False)["line"]
            .nunique()
            .rename("rows")
            .reset_index()
            .sort_values("rows", ascending=False, ignore_index=True)
        )
