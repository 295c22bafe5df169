"""The fast ingest path gives exactly what the straightforward one gave.

Issue 8 made ingest faster by parsing ISO dates with Arrow, parsing each field once for both the
checks and the typed values, handing DuckDB Arrow tables, pruning the date-format search, and
preparing the next chunk in a worker thread. Each test here compares one of those with the plain
computation done independently (pandas, an exhaustive search, the earlier row-key formula), or
checks that a failure in the worker still leaves the store untouched.
"""

from __future__ import annotations

import random
import threading

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

import cxdash.ingest.chunks as chunks_module
import cxdash.ingest.load as ingest_module
import cxdash.ingest.validation as validation
from cxdash.ingest.formats import Formats, detect_date_format
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.ingest.parsers import DATE_FORMATS, _iso_fast, parse_datetime
from cxdash.ingest.validation import (
    _pandera_failures,
    build_schema,
    check,
    coerce,
    parse_fields,
)
from cxdash.store.database import ANALYTICS, KIND_TABLES, _as_arrow, bulk_insert
from cxdash.store.kinds import get_kind

ISO_EDGE_CASES = [
    "2024-01-31",
    "2024-01-31 14:05",
    "2024-01-31T14:05",
    "2024-01-31T14:05:06",
    "2024-01-31 14:05:06.123",
    "2024-01-31T14:05:06.123456",
    "2024-01-31T14:05:06.1234567",
    "2024-01-31T14:05:06Z",
    "2024-01-31T14:05:06+02:00",
    "2024-01-31T14:05:06+0200",
    "2024-01-31T14:05:06-05:30",
    "2024-01-31 14",
    "2024-01",
    "2024",
    "20240131",
    "2024-1-5",
    "2024-01-31 ",
    " 2024-01-31",
    "2024-02-30",
    "2024-02-29",
    "2023-02-29",
    "2024-01-31T24:00:00",
    "2024-01-31T23:59:60",
    "3000-01-01",
    "1600-01-01",
    "0001-01-01",
    "9999-12-31",
    "2024-01-31t14:05",
    "2024/01/31",
    "-2024-01-31",
    "2024-01-31T14:05:06 Z",
    "2024-13-01",
    "2024-00-10",
    "1e3",
    "",
    "nan",
    "yesterday",
]


def pandas_iso(values: pd.Series) -> pd.Series:
    """The reference: what pandas' own ISO 8601 parser makes of the text (as parse_datetime did before)."""
    out = pd.to_datetime(values, format="ISO8601", errors="coerce", utc=True)
    return out.dt.tz_localize(None).astype("datetime64[us]")


def same_instants(a: pd.Series, b: pd.Series) -> bool:
    return a.isna().equals(b.isna()) and bool((a[a.notna()] == b[b.notna()]).all())


def random_iso_like(rng: random.Random) -> str:
    pieces = ["-", ":", "T", " ", ".", "Z", "+02:00", "-0530", "0", "1", "12", "13", "24", "31", "59", "60", "123456"]
    date = f"{rng.choice(['2024', '1999', '0001', '9999'])}-{rng.choice(['01', '02', '12', '13', '1'])}-{rng.choice(['01', '29', '30', '31', '1'])}"
    return date + "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))


def test_iso_dates_read_by_arrow_are_the_instants_pandas_reads():
    rng = random.Random(8)
    values = ISO_EDGE_CASES + [random_iso_like(rng) for _ in range(1500)]
    accepted = 0
    for v in values:  # value by value: a column of one value takes the fast path whenever Arrow can
        one = pd.Series([v], dtype="str")
        accepted += _iso_fast(one) is not None
        assert same_instants(parse_datetime(one, "ISO8601"), pandas_iso(one)), v
    assert accepted > 80  # the comparison above did exercise the Arrow path
    column = pd.Series(values, dtype="str")
    assert same_instants(parse_datetime(column, "ISO8601"), pandas_iso(column))


def test_a_column_mixing_zone_offsets_and_local_times_reads_as_pandas_reads_it():
    column = pd.Series(["2024-01-31T14:05:06Z", "2024-01-31 14:05", None, "2024-01-31T14:05:06+02:00"], dtype="str")
    assert _iso_fast(column) is None  # Arrow declines, pandas decides
    assert same_instants(parse_datetime(column, "ISO8601"), pandas_iso(column))
    offsets = pd.Series(["2024-01-31T14:05:06Z", "2024-01-31T14:05:06+02:00", None], dtype="str")
    assert _iso_fast(offsets) is not None
    assert parse_datetime(offsets, "ISO8601").tolist()[:2] == [
        pd.Timestamp("2024-01-31 14:05:06"),
        pd.Timestamp("2024-01-31 12:05:06"),
    ]


def exhaustive_date_format(sample: pd.Series) -> tuple[str | None, str | None]:
    """Every format scored on every value: the search as it was before pruning."""
    sample = sample.dropna()
    if sample.empty:
        return "ISO8601", None
    scores = {}
    for fmt in DATE_FORMATS:
        parsed = parse_datetime(sample, fmt)
        ok = parsed.notna()
        if fmt.startswith("epoch"):
            ok &= parsed.between(pd.Timestamp("1990-01-01"), pd.Timestamp("2100-01-01"))
            ok &= sample.str.fullmatch(r"\d{9,13}").fillna(False).astype(bool)
        scores[fmt] = int(ok.sum())
    best = max(scores.values())
    if best == 0:
        return None, None
    winners = [f for f in DATE_FORMATS if scores[f] == best]
    note = None
    if len(winners) > 1:
        note = f"every value also reads as {winners[1]}; chose {winners[0]} (day-first); check a few dates"
    return winners[0], note


@pytest.mark.parametrize(
    "values",
    [
        [f"2024-{m:02d}-{d:02d} 10:{d:02d}" for m in range(1, 13) for d in range(1, 29)],
        [f"{d:02d}/{m:02d}/2024" for m in range(1, 13) for d in range(1, 29)],
        [f"{d:02d}/{m:02d}/2024" for m in range(1, 13) for d in range(1, 13)] * 3,  # ambiguous: a tie, with a note
        [f"{m:02d}/{d:02d}/2024" for m in range(1, 13) for d in range(13, 29)],
        [str(1_700_000_000 + 3600 * i) for i in range(400)],
        [f"{d:02d}.{m:02d}.2024" for m in range(1, 13) for d in range(1, 29)] + ["junk"] * 150,
        ["junk"] * 150 + [f"2024-01-{d:02d}" for d in range(1, 29)] * 10,  # the head alone would mislead
        ["not a date", "n/a"] * 200,
    ],
)
def test_the_pruned_date_format_search_finds_what_the_exhaustive_one_finds(values):
    sample = pd.Series(values, dtype="str")
    assert detect_date_format(sample) == exhaustive_date_format(sample)


MESSY_TICKETS = pd.DataFrame(
    {
        "ticket_id": ["T1", "T2", None, "T4", "T5", "T6"],
        "email": [" Ann@Example.com", "bob@example.com", "c@x.org", None, "d@x.org", "e@x.org"],
        "opened_at": ["2024-01-02 10:00", "notadate", "2024-01-06", "2024-01-07", "1850-01-01", "2024-01-09"],
        "closed_at": ["2024-01-03 10:00", None, "2024-01-05", "2024-01-08", None, "2024-01-10"],
        "transfers": ["1", "-1", "2.5", "x", "3", "0"],
        "satisfaction": ["4", "4,5", None, "5", "3", "2"],
        "topic": [" billing ", "", "login", "bug", "bug", "bug"],
    },
    dtype="str",
)


def test_reusing_the_parse_in_the_checks_changes_no_failure(monkeypatch):
    kind = get_kind("tickets")
    present = list(MESSY_TICKETS.columns)
    formats = Formats()
    plain = _pandera_failures(build_schema(kind, present, formats), MESSY_TICKETS)
    reused = _pandera_failures(
        build_schema(kind, present, formats, parse_fields(kind, MESSY_TICKETS, formats)), MESSY_TICKETS
    )
    key = ["row", "field", "rule"]
    assert len(plain) >= 6  # the frame does break rules
    assert plain.sort_values(key).reset_index(drop=True).equals(reused.sort_values(key).reset_index(drop=True))

    parsed_columns = []
    real_parse = validation.parse_datetime
    monkeypatch.setattr(
        validation, "parse_datetime", lambda s, fmt: parsed_columns.append(len(s)) or real_parse(s, fmt)
    )
    failures, _ = check(kind, MESSY_TICKETS, formats)
    assert parsed_columns == [6, 6]  # opened_at and closed_at once each, though closed_at has gaps
    assert set(zip(failures["row"], failures["rule"], strict=True)) >= {
        (1, "date"),
        (1, "minimum"),
        (2, "whole_number"),
        (3, "number"),
        (4, "plausible_date"),
        (2, "date_order"),
        (2, "required"),
    }
    good = MESSY_TICKETS.drop(index=failures["row"].unique())
    typed = coerce(kind, good, formats)
    assert typed["email"].tolist() == ["ann@example.com", "e@x.org"]
    assert typed["topic"].tolist() == ["billing", "bug"]
    assert typed["transfers"].tolist() == [1, 0] and str(typed["transfers"].dtype) == "Int64"


EVENTS_CSV = (
    "user,when,what,session,browser,campaign\n"
    "U1,2024-01-01T10:00:00,login,s1,firefox,spring\n"
    "U1,2024-01-01T10:00:00,login,s1,firefox,spring\n"  # an identical line: kept, numbered #2
    "U2,2024-01-02 11:30,checkout,,chrome,\n"
    " u3 ,2024-01-03,help_page,s3,,summer\n"
    "U4,2024-01-04T08:00:00,pricing,s4,safari,spring\n"
)
EVENTS_MAPPING = {"customer_id": "user", "timestamp": "when", "activity": "what", "case_id": "session"}


def test_row_keys_are_the_ones_the_earlier_formula_gave(store, tmp_path):
    """Rows loaded before this change must still be recognised when the same file comes again."""
    p = tmp_path / "events.csv"
    p.write_text(EVENTS_CSV, encoding="utf-8")
    ingest_file(store, p, source="web", mapping=Mapping("events", dict(EVENTS_MAPPING)))
    t = KIND_TABLES["events"]
    with store.connect() as conn:
        got = conn.execute(sa.select(t.c.row_number, t.c.row_key).order_by(t.c.row_number)).all()

    raw = pd.read_csv(p, dtype="str", keep_default_na=False).replace("", pd.NA)
    canon = pd.DataFrame({f: raw[c] for f, c in EVENTS_MAPPING.items()})
    typed = coerce(get_kind("events"), canon, Formats.from_dict({"dates": {"timestamp": "ISO8601"}}))
    attrs = (
        raw[["browser", "campaign"]].to_json(orient="records", lines=True, force_ascii=False).rstrip("\n").split("\n")
    )
    content = typed.copy()
    content["attrs"] = pd.Series(attrs, index=typed.index, dtype="string")
    h = pd.util.hash_pandas_object(content, index=False).to_numpy()
    expected = list(np.char.add(h.astype(str), "#1"))
    expected[1] += "#2"  # the second identical line gets its occurrence number (see _deduplicate)
    assert [k for _, k in got] == expected
    assert [n for n, _ in got] == [2, 3, 4, 5, 6]


def test_duckdb_receives_the_same_values_through_arrow(duck):
    frame = pd.DataFrame(
        {
            "source": pd.Series(["s"] * 4, dtype="str"),
            "load_id": np.arange(4, dtype="int64"),
            "row_number": np.arange(2, 6, dtype="int64"),
            "row_key": pd.Series(["a", "b", "c", "d"], dtype="string"),
            "ticket_id": pd.Series(["T1", None, "", "T4"], dtype="string"),
            "opened_at": pd.Series(
                pd.to_datetime(["2024-01-01 10:00", None, "1901-05-06 00:00", "2099-12-31 23:59:59"], format="ISO8601")
            ).astype("datetime64[us]"),
            "transfers": pd.array([1, None, 0, -3], dtype="Int64"),
            "satisfaction": [4.5, np.nan, np.inf, -0.0],
        }
    )
    arrow = _as_arrow(frame)
    assert arrow is not frame and all(col.num_chunks == 1 for col in arrow.columns)
    t = KIND_TABLES["tickets"]
    with duck.begin() as conn:
        bulk_insert(conn, t, frame)
    with duck.connect() as conn:
        got = conn.execute(
            sa.select(t.c.ticket_id, t.c.opened_at, t.c.transfers, t.c.satisfaction).order_by(t.c.row_number)
        ).all()
    assert [tuple(r) for r in got] == [
        ("T1", pd.Timestamp("2024-01-01 10:00").to_pydatetime(), 1, 4.5),
        (None, None, None, None),  # NaN and every missing value arrive as NULL, as with a pandas scan
        ("", pd.Timestamp("1901-05-06").to_pydatetime(), 0, float("inf")),
        ("T4", pd.Timestamp("2099-12-31 23:59:59").to_pydatetime(), -3, -0.0),
    ]
    mixed = pd.DataFrame({"value": pd.Series([1, "x", None], dtype=object)})
    assert _as_arrow(mixed) is mixed  # Arrow cannot type it: DuckDB scans the frame as before


def in_pieces(monkeypatch, rows_per_piece: int = 2) -> None:
    """Make ingest see the file in many small chunks (a real file only splits every 8 MB)."""
    whole = ingest_module.iter_chunks

    def pieces(*args, **kwargs):
        for chunk in whole(*args, **kwargs):
            for start in range(0, len(chunk), rows_per_piece):
                yield chunk.iloc[start : start + rows_per_piece]

    monkeypatch.setattr(ingest_module, "iter_chunks", pieces)


def stored(store) -> list[tuple]:
    t = KIND_TABLES["events"]
    with store.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.select(
                    t.c.row_number, t.c.row_key, t.c.id_key, t.c.customer_id, t.c.timestamp, t.c.activity, t.c.attrs
                ).order_by(t.c.row_number)
            ).all()
        ]


def snapshot(store) -> dict[str, int]:
    with store.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() for t in ANALYTICS.sorted_tables
        }


def read_ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "cxdash-ingest-read-ahead"]


def test_many_chunks_store_exactly_what_one_chunk_stores(store, tmp_path, monkeypatch):
    p = tmp_path / "events.csv"
    p.write_text(EVENTS_CSV, encoding="utf-8")
    m = Mapping("events", dict(EVENTS_MAPPING))
    one = ingest_file(store, p, source="web", mapping=m)
    whole = stored(store)
    ingest_file(store, p, source="web", mapping=m, mode="replace")
    in_pieces(monkeypatch)
    seen = []
    many = ingest_file(
        store, p, source="web", mapping=m, mode="replace", chunk_rows=2, progress=lambda n, _size: seen.append(n)
    )
    assert seen == [2, 4, 5]  # three chunks went through the worker
    assert stored(store) == whole and len(whole) == 5
    assert (many.rows_read, many.rows_loaded) == (one.rows_read, one.rows_loaded) == (5, 5)
    assert not read_ahead_threads()


@pytest.mark.parametrize("where", ["validating", "writing"])
def test_a_failure_after_the_first_chunk_was_written_stores_nothing(store, tmp_path, monkeypatch, where):
    good = tmp_path / "good.csv"
    good.write_text(EVENTS_CSV, encoding="utf-8")
    m = Mapping("events", dict(EVENTS_MAPPING))
    ingest_file(store, good, source="web", mapping=m)
    before, rows_before = snapshot(store), stored(store)
    in_pieces(monkeypatch)
    calls = {"n": 0}
    # validation runs where each chunk is prepared, writing where the load writes
    module, name = (chunks_module, "check") if where == "validating" else (ingest_module, "bulk_insert")
    real = getattr(module, name)

    def fails_on_the_third_call(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, fails_on_the_third_call)
    other = tmp_path / "other.csv"
    other.write_text(EVENTS_CSV.replace("U", "V"), encoding="utf-8")
    with pytest.raises(OSError, match="disk full"):  # rows written in groups of a chunk's size: a write per chunk
        ingest_file(store, other, source="web2", mapping=m, chunk_rows=2, write_rows=2)
    assert calls["n"] == 3  # two chunks were validated / written before the failure
    assert snapshot(store) == before and stored(store) == rows_before
    assert not read_ahead_threads()


def test_now_and_today_are_not_dates():
    """pandas parses "now" and "today" as the current time; a cell saying so is not a date."""
    import pandas as pd

    from cxdash.ingest.parsers import parse_datetime

    got = parse_datetime(pd.Series(["2024-01-31", "now", " Today ", "yesterday", "2024-02-01 10:00"]), "ISO8601")
    assert got.isna().tolist() == [False, True, True, True, False]
    assert got.iloc[0] == pd.Timestamp("2024-01-31")
