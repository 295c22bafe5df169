"""Data health on the demo company: every source has an activation latency with a unit (computed
here from the demo's own rows and loads), its department and owner in words, the age of its newest
record and the time since its last load apart (each with its unit), and the verdict's grammar; and
the p50/p95 count only the records that were new in their load."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from cxdash.governance.health import governance
from cxdash.store.database import KIND_TABLES, loads_table, open_store
from tests.conftest import seed_session

REPO = Path(__file__).resolve().parents[1]
# When each kind's record happened, as the README's data model says (written out, not imported).
WHEN = {
    "customers": "signup_date",
    "events": "timestamp",
    "tickets": "opened_at",
    "transactions": "timestamp",
    "subscriptions": "start",
    "opportunities": "created_at",
    "churn": "churned_at",
}
UNIT = re.compile(r"^\d[\d,]*(\.\d)? (s|min|h|days)$")


def _newest_record_delay(url: str) -> dict[str, float]:
    """Per source: hours from its newest record (not dated after the load) to the end of that load."""
    store = open_store(url)
    try:
        with store.connect() as conn:
            loads = pd.read_sql(sa.select(loads_table.c.load_id, loads_table.c.finished_at), conn)
            frames = [
                pd.read_sql(
                    sa.select(t.c.source, t.c.load_id, t.c[WHEN[kind]].label("at")).where(t.c[WHEN[kind]].is_not(None)),
                    conn,
                )
                for kind, t in KIND_TABLES.items()
            ]
    finally:
        store.dispose()
    rows = pd.concat([f for f in frames if len(f)]).merge(loads, on="load_id")
    rows = rows[pd.to_datetime(rows["at"]) <= rows["finished_at"]]
    last = rows[rows["load_id"] == rows.groupby("source")["load_id"].transform("max")]
    newest = last.groupby("source").agg(at=("at", "max"), finished=("finished_at", "first"))
    return ((newest["finished"] - pd.to_datetime(newest["at"])).dt.total_seconds() / 3600).to_dict()


def _newest_record_and_last_load(url: str) -> dict[str, tuple[datetime, datetime]]:
    """Per source: when its newest record happened (any load) and when its last load finished."""
    store = open_store(url)
    try:
        with store.connect() as conn:
            loads = pd.read_sql(sa.select(loads_table.c.source, loads_table.c.finished_at), conn)
            frames = [
                pd.read_sql(sa.select(t.c.source, sa.func.max(t.c[WHEN[kind]]).label("at")).group_by(t.c.source), conn)
                for kind, t in KIND_TABLES.items()
            ]
    finally:
        store.dispose()
    newest = pd.concat([f for f in frames if len(f)]).groupby("source")["at"].max()
    finished = loads.groupby("source")["finished_at"].max()
    return {
        s: (pd.Timestamp(newest[s]).to_pydatetime(), pd.Timestamp(finished[s]).to_pydatetime()) for s in newest.index
    }


# A span as the page writes it, read back into seconds (to compare with the store by another route).
SECONDS_PER = {"s": 1, "min": 60, "h": 3600, "days": 86400}
SPAN = re.compile(r"(\d[\d,]*(?:\.\d)?) (s|min|h|days)")


def _seconds(shown: str, pattern: str) -> float:
    match = re.fullmatch(pattern.replace("SPAN", SPAN.pattern), shown)
    assert match, shown
    return float(match.group(1).replace(",", "")) * SECONDS_PER[match.group(2)]


def test_every_demo_source_has_the_activation_latency_of_its_newest_record(small_demo):
    expected = _newest_record_delay(small_demo)
    assert set(expected) == {"crm", "web", "marketing", "helpdesk", "billing", "subscriptions", "sales"}
    store = open_store(small_demo)
    try:
        with store.connect() as conn:
            gov = governance(conn).set_index("name")
    finally:
        store.dispose()
    for source, hours in expected.items():
        assert gov.loc[source, "latency_newest_hours"] == pytest.approx(hours, abs=1 / 60), source
        # the demo's records end on 31 Oct 2026 and it was loaded today: at least that long
        assert hours >= (datetime.now(UTC).replace(tzinfo=None) - datetime(2026, 11, 1)).total_seconds() / 3600 - 1


# Each demo source's department and owner as the Sources table says them, written by hand: the demo
# names no owner, so each load recorded its department's code as owner and the department's team answers.
DEMO_OWNERS = {
    "crm": "Sales (sales), owner not set: the Sales team",
    "web": "Web / digital (web), owner not set: the Web / digital team",
    "marketing": "Marketing (marketing), owner not set: the Marketing team",
    "helpdesk": "Customer support (support), owner not set: the Customer support team",
    "billing": "Billing (billing), owner not set: the Billing team",
    "subscriptions": "Billing (billing), owner not set: the Billing team",
    "sales": "Sales (sales), owner not set: the Sales team",
}


def test_the_page_shows_latency_with_units_record_age_and_load_time_apart_and_a_grammatical_verdict(
    small_demo, monkeypatch
):
    monkeypatch.setenv("CXDASH_DB_URL", small_demo)
    expected = _newest_record_delay(small_demo)
    times = _newest_record_and_last_load(small_demo)
    at = AppTest.from_file(str(REPO / "pages" / "data_health.py"), default_timeout=120)
    seed_session(at, "health-ops", "ops")
    before = datetime.now(UTC).replace(tzinfo=None)
    at.run()
    after = datetime.now(UTC).replace(tzinfo=None)
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "activation" in d.value.columns).set_index("source")
    assert list(table.columns[:1]) == ["department and owner"]
    assert {"newest record", "loaded"} <= set(table.columns) and "freshness" not in table.columns
    for source, hours in expected.items():
        shown = table.loc[source, "activation"]
        assert UNIT.match(shown), shown
        days = hours / 24  # the demo's delays are weeks: shown in days to one decimal
        assert shown == f"{days:,.1f} days", (source, shown)
        assert table.loc[source, "department and owner"] == DEMO_OWNERS[source]
        # the newest record's age and the last load's, each in its own column with its unit, and each
        # the time since the store's own newest record / last load (rounded as shown: to 0.1 of the unit)
        newest, finished = times[source]
        age = _seconds(table.loc[source, "newest record"], "SPAN old")
        assert (
            (before - newest).total_seconds() - 0.05 * 86400 <= age <= (after - newest).total_seconds() + 0.05 * 86400
        )
        ago = _seconds(table.loc[source, "loaded"], "loaded SPAN ago")
        slack = 0.5 * SECONDS_PER[re.search(r"(s|min|h|days) ago$", table.loc[source, "loaded"]).group(1)]
        assert (before - finished).total_seconds() - slack <= ago <= (after - finished).total_seconds() + slack
    slowest = next(m for m in at.metric if m.label == "Slowest activation latency")
    assert slowest.value == f"{max(expected.values()) / 24:,.1f} days"
    verdict = at.markdown[0].value
    n = int(re.match(r"(\d+) thing", verdict).group(1))
    assert verdict.startswith(f"{n} thing needs attention" if n == 1 else f"{n} things need attention"), verdict
    text = " ".join(str(v) for d in at.dataframe for v in d.value.astype(str).to_numpy().ravel())
    text += " ".join(m.value for m in at.markdown) + " ".join(str(m.value) for m in at.metric)
    for bad in ("n/a", "None", "nan", "NaT"):
        assert bad not in text.split(), bad
    for d in at.dataframe:
        assert not [c for c in d.value.columns if "_" in str(c)], list(d.value.columns)


def test_p50_and_p95_count_only_records_new_in_their_load(duck, tmp_path):
    from cxdash.ingest.load import ingest_file
    from cxdash.ingest.mapping import Mapping

    mapping = Mapping.from_dict(
        {"kind": "events", "columns": {"customer_id": "who", "timestamp": "at", "activity": "what"}}
    )
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)

    def load(name: str, times: list[datetime]) -> None:
        path = tmp_path / name
        path.write_text("who,at,what\n" + "".join(f"C{i},{t:%Y-%m-%d %H:%M:%S},visit\n" for i, t in enumerate(times)))
        ingest_file(duck, path, source="web", mapping=mapping)

    load("first.csv", [now - timedelta(days=12)])
    with duck.begin() as conn:  # the first delivery arrived ten days ago
        conn.execute(loads_table.update().values(finished_at=now - timedelta(days=10)))
    # the second delivery: two records since the first, and one it repeats from before it
    load("second.csv", [now - timedelta(hours=2), now - timedelta(hours=6), now - timedelta(days=11)])
    with duck.connect() as conn:
        gov = governance(conn).set_index("name")
        finished = conn.execute(sa.select(sa.func.max(loads_table.c.finished_at))).scalar()
    # new in their load: the first delivery's record (2 days old when it arrived) and the second's two
    # records since the first; the repeated record from before the first delivery is not news
    lags = [
        48.0,
        *((finished - t).total_seconds() / 3600 for t in (now - timedelta(hours=2), now - timedelta(hours=6))),
    ]
    assert gov.loc["web", "latency_p50_hours"] == pytest.approx(np.percentile(lags, 50), abs=0.01)
    assert gov.loc["web", "latency_p95_hours"] == pytest.approx(np.percentile(lags, 95), abs=0.01)
    assert gov.loc["web", "latency_newest_hours"] == pytest.approx(min(lags), abs=0.01)
