"""One definition per signal: the KPIs, the friction hotspots, the model's features, the departmental
conflicts and the customer card count the same repeat contacts, checkout errors and failed payments.

A five-customer company is written as CSVs and loaded through ``ingest_file`` (on DuckDB and on
PostgreSQL). Its tickets hold same-topic contacts 1, 6 and 8 days apart, a tie at the same second
split over two sources, a repeat at exactly 7 days, topics differing only in case and blanks, and
tickets without a topic. Every expected count is worked out by hand in the comments and again with
plain pandas from the CSV text.
"""

from __future__ import annotations

import ast
import io
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash import journeys, metrics
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.metrics import signals
from cxdash.risk import card, customer_features, recent_signals
from cxdash.store.database import KIND_TABLES, customer_keys_table

CXDASH = Path(__file__).resolve().parents[1] / "cxdash"

CRM = """customer_id,email,signup_date
C1,c1@x.example,2024-01-01
C2,c2@x.example,2024-01-01
C3,c3@x.example,2024-01-01
C4,c4@x.example,2024-01-01
C5,c5@x.example,2024-01-01
"""
# The helpdesk keys tickets by email; the chat tool by customer id (loaded second).
HELPDESK = """ticket,email,opened,closed,topic,team
T1,c1@x.example,2024-03-01 09:00,2024-03-01 10:00,Billing,billing
T2,c1@x.example,2024-03-02 09:00,2024-03-02 10:00, billing ,support
T3,c1@x.example,2024-03-08 09:00,2024-03-08 10:00,BILLING,tech
T4,c1@x.example,2024-03-16 09:00,2024-03-16 10:00,billing,billing
T5,c1@x.example,2024-03-16 09:00,2024-03-16 10:00,login,tech
T6,c2@x.example,2024-03-05 10:00,2024-03-05 11:00,delivery,support
T9,c3@x.example,2024-03-03 09:00,2024-03-03 10:00,,support
T10,c3@x.example,2024-03-05 09:00,2024-03-05 10:00,,tech
T11,c3@x.example,2024-03-20 09:00,2024-03-20 10:00,refund,billing
T12,c3@x.example,2024-03-29 09:00,2024-03-29 10:00,refund,billing
T13,c4@x.example,2024-03-01 09:00,2024-03-01 10:00,billing,billing
T15,c5@x.example,2024-03-03 09:00,2024-03-03 10:00,billing,billing
"""
CHAT = """ticket,customer_id,opened,closed,topic,team
T7,C2,2024-03-05 10:00,2024-03-05 12:00,Delivery,billing
T8,C2,2024-03-12 10:00,2024-03-12 11:00,delivery ,tech
T14,C4,2024-03-04 09:00,2024-03-04 10:00,Billing,support
"""
# Repeat contacts by hand (same customer, same topic ignoring case and blanks, within 7 days of the
# customer's previous ticket on it; a tie keeps file order: the helpdesk was loaded first):
#   C1 billing: T1 -> T2 (1 day) repeat, T2 -> T3 (6 days) repeat, T3 -> T4 (8 days) not; T5 is login.
#   C2 delivery: T6 -> T7 (same second, T6 first in file order) repeat, T7 -> T8 (7 days exactly) repeat.
#   C3 no topic: T9 -> T10 (2 days) repeat (tickets without a topic count as one topic); refund T11 -> T12 9 days.
#   C4 billing: T13 (helpdesk, by email) -> T14 (chat, by id) 3 days: one stitched customer, repeat.
#   C5: one ticket. C4 and C5 both on billing 2 days apart are different customers.
REPEATS = 6
# leaked (the earlier ticket's team) -> absorbed (the repeat's team), one pair per repeat
REPEAT_PAIRS = sorted(
    [
        ("billing", "support"),
        ("support", "tech"),
        ("support", "billing"),
        ("billing", "tech"),
        ("support", "tech"),
        ("billing", "support"),
    ]
)

EVENTS = """customer_id,ts,activity,department,channel
C1,2024-03-10 12:00,checkout,web,web
C1,2024-03-10 12:01,checkout_error,web,web
C1,2024-03-10 12:01,checkout_error,web,app
C2,2024-03-11 08:00, App Error ,web,app
C3,2024-03-11 09:00,email delivery_error,marketing,email
C3,2024-03-12 09:00,cancel_page,web,web
C5,2024-03-12 10:00,page_view,,web
"""
# Checkout errors by hand: C1 two (the same second, two rows), C2 one ("App Error" in any case).
# The marketing department's delivery error is a campaign's, not the customer's: not counted.
CHECKOUT_ERRORS = {"C1": 2, "C2": 1}

_STATUSES = [*signals.FAILED_PAYMENT_STATUSES, "paid", "refunded", "Paid"]
TRANSACTIONS = "customer_id,ts,amount,status\n" + "".join(
    f"C{1 + i % 5},2024-03-{10 + i:02d} 08:00,{10 + i},{s.upper() if i % 2 else s}\n" for i, s in enumerate(_STATUSES)
)
# Failed payments: one row per failed status (written in upper case on every other row), so every
# status of FAILED_PAYMENT_STATUSES must be recognised for the count to hold; paid and refunded are not.

MAPPINGS = {
    "crm": ("customers", CRM, {"customer_id": "customer_id", "email": "email", "signup_date": "signup_date"}),
    "helpdesk": (
        "tickets",
        HELPDESK,
        {
            "ticket_id": "ticket",
            "email": "email",
            "opened_at": "opened",
            "closed_at": "closed",
            "topic": "topic",
            "department": "team",
        },
    ),
    "chat": (
        "tickets",
        CHAT,
        {
            "ticket_id": "ticket",
            "customer_id": "customer_id",
            "opened_at": "opened",
            "closed_at": "closed",
            "topic": "topic",
            "department": "team",
        },
    ),
    "web": (
        "events",
        EVENTS,
        {
            "customer_id": "customer_id",
            "timestamp": "ts",
            "activity": "activity",
            "department": "department",
            "channel": "channel",
        },
    ),
    "billing": (
        "transactions",
        TRANSACTIONS,
        {"customer_id": "customer_id", "timestamp": "ts", "amount": "amount", "status": "status"},
    ),
}
MARCH = metrics.Period.from_dates(date(2024, 3, 1), date(2024, 3, 31))
NOW = datetime(2024, 4, 1)


@pytest.fixture
def company(store, tmp_path):
    for source, (kind, text, columns) in MAPPINGS.items():
        path = tmp_path / f"{source}.csv"
        path.write_text(text)
        ingest_file(store, path, source=source, mapping=Mapping.from_dict({"kind": kind, "columns": columns}))
    return store


def _csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def _pandas_repeats(days: float = 7) -> pd.DataFrame:
    """The repeat contacts worked out with pandas from the CSV text: one row per repeat, with the
    earlier ticket's team (leaked) and the repeat's (absorbed)."""
    crm = _csv(CRM)
    by_email = dict(zip(crm["email"], crm["customer_id"], strict=True))
    helpdesk = _csv(HELPDESK).assign(customer=lambda f: f["email"].map(by_email), load=0)
    chat = _csv(CHAT).assign(customer=lambda f: f["customer_id"], load=1)
    t = pd.concat([helpdesk, chat], ignore_index=True)
    t["row"] = t.groupby("load").cumcount()
    t["opened"] = pd.to_datetime(t["opened"])
    t["topic_key"] = t["topic"].str.strip().str.lower()
    t = t.sort_values(["customer", "topic_key", "opened", "load", "row"])
    grouped = t.groupby(["customer", "topic_key"])
    t["gap"] = grouped["opened"].diff()
    t["leaked"] = grouped["team"].shift()
    repeats = t[t["gap"].notna() & (t["gap"] <= pd.Timedelta(days=days))]
    return repeats.rename(columns={"team": "absorbed"})[["customer", "ticket", "leaked", "absorbed"]]


def test_the_pandas_count_agrees_with_the_hand_count():
    repeats = _pandas_repeats()
    assert len(repeats) == REPEATS
    assert sorted(zip(repeats["leaked"], repeats["absorbed"], strict=True)) == REPEAT_PAIRS
    assert sorted(repeats["ticket"]) == sorted(["T2", "T3", "T7", "T8", "T10", "T14"])


def _moments(conn, hotspot: str, days: float = 7) -> pd.DataFrame:
    m, names = journeys.friction_moments(repeat_days=days), journeys.case_names()
    rows = conn.execute(
        sa.select(names.c.name, m.c.leaked_department, m.c.absorbed_department)
        .join_from(m, names, names.c.case_id == m.c.cx_key)
        .where(m.c.hotspot == hotspot)
    ).fetchall()
    return pd.DataFrame(rows, columns=["cx_id", "leaked", "absorbed"])


def _features(conn) -> pd.DataFrame:
    return customer_features(conn, cutoff=NOW).frame


def _kpi_repeats(conn, days: int = 7) -> int:
    row = metrics.kpi_table(conn, [MARCH], repeat_days=days).loc[0]
    return round(row["repeat_contact_rate"] * row["contacts"])


def _conflict_repeats(conn, days: int = 7) -> pd.Series:
    """Per support team: its resolved tickets followed by a repeat (share x tickets closed)."""
    f = metrics.conflicts(conn, repeat_days=days)
    support = f[f["shared_kpi"] == "repeat_after_close"].set_index("cohort")
    return (support["shared_value"] * support["departmental_value"]).round().astype(int)


def test_repeat_contacts_are_the_same_tickets_in_the_kpi_hotspot_features_and_conflicts(company):
    expected = _pandas_repeats()
    with company.connect() as conn:
        kpi_row = metrics.kpi_table(conn, [MARCH]).loc[0]
        moments = _moments(conn, "repeat contact")
        feats = _features(conn)
        by_team = _conflict_repeats(conn)
    assert kpi_row["contacts"] == 15  # every ticket was opened in March
    assert round(kpi_row["repeat_contact_rate"] * kpi_row["contacts"]) == len(expected) == REPEATS
    assert len(moments) == REPEATS
    assert feats["repeat_contacts"].sum() == REPEATS
    assert by_team.sum() == REPEATS
    # the hotspot's departments: the earlier ticket's team leaked the customer, the repeat's absorbed them
    assert sorted(zip(moments["leaked"], moments["absorbed"], strict=True)) == REPEAT_PAIRS
    # the conflicts charge each repeat to the team whose ticket it came after: the hotspot's leaked team
    assert by_team[by_team > 0].to_dict() == expected["leaked"].value_counts().to_dict()


@pytest.mark.parametrize("days", [0, 1, 6, 8])
def test_every_reader_follows_the_same_repeat_window(company, days):
    # 0 days: only the tie (T7); 1: + T2 (1 day); 6: + T3, T10, T14 (6, 2, 3 days), T8 (7) not yet;
    # 8: + T8 and T4 (8 days after T3).
    by_hand = {0: 1, 1: 2, 6: 5, 8: 7}[days]
    assert len(_pandas_repeats(days)) == by_hand
    with company.connect() as conn:
        assert _kpi_repeats(conn, days) == by_hand
        assert len(_moments(conn, "repeat contact", days)) == by_hand
        assert _conflict_repeats(conn, days).sum() == by_hand


def _card_counts(conn, signal_name: str) -> dict[str, int]:
    """Per cx_id: the card's count of the signal over the last 30 days (all of March here)."""
    out = {}
    for cx_id in conn.execute(sa.select(customer_keys_table.c.cx_id)).scalars().all():
        recent = recent_signals(conn, cx_id, now=NOW)
        hit = recent[recent["signal"] == signal_name]
        if not hit.empty:
            out[cx_id] = int(hit["count_30d"].iloc[0])
    return out


def _by_customer(conn, counts: dict) -> dict[str, int]:
    """Per CRM customer id (the test's names) from counts per cx_id, leaving out zeros."""
    c, im = KIND_TABLES["customers"], customer_keys_table
    ids = dict(
        conn.execute(
            sa.select(im.c.cx_id, c.c.customer_id).select_from(c.join(im, im.c.cx_key == c.c.cx_key))
        ).fetchall()
    )
    return {ids[k]: int(v) for k, v in counts.items() if v}


def test_checkout_errors_are_counted_alike_by_features_hotspot_and_card(company):
    events = _csv(EVENTS)
    product = events["department"].str.lower() != "marketing"
    expected = events[product & events["activity"].str.lower().str.contains("error")]["customer_id"].value_counts()
    assert expected.to_dict() == CHECKOUT_ERRORS
    with company.connect() as conn:
        feats = _features(conn)
        moments = _moments(conn, "checkout error")
        card_counts = _by_customer(conn, _card_counts(conn, "checkout_error"))
        feature_counts = _by_customer(conn, feats["checkout_errors"].to_dict())
        hotspot_counts = _by_customer(conn, moments["cx_id"].value_counts().to_dict())
    assert feature_counts == hotspot_counts == card_counts == CHECKOUT_ERRORS


def test_failed_payments_are_counted_alike_for_every_failed_status(company):
    tx = _csv(TRANSACTIONS)
    failed = tx[tx["status"].str.lower().isin(["failed", "declined", "error", "payment_failed", "rejected"])]
    assert len(failed) == 5 and set(failed["status"].str.lower()) == set(signals.FAILED_PAYMENT_STATUSES)
    expected = failed["customer_id"].value_counts().to_dict()  # C1..C5 one each
    with company.connect() as conn:
        feats = _features(conn)
        moments = _moments(conn, "payment failed")
        card_counts = _by_customer(conn, _card_counts(conn, "failed_payment"))
        feature_counts = _by_customer(conn, feats["failed_payments"].to_dict())
        hotspot_counts = _by_customer(conn, moments["cx_id"].value_counts().to_dict())
        paid = metrics.kpi_table(conn, [MARCH]).loc[0, "revenue"]
    assert feature_counts == hotspot_counts == card_counts == expected
    # revenue leaves the failed payments out: 10+11+... over the paid and refunded rows only
    assert paid == pytest.approx(
        sum(10 + i for i, s in enumerate(_STATUSES) if s not in signals.FAILED_PAYMENT_STATUSES)
    )


def test_hotspot_descriptions_are_the_registry_words():
    for hotspot, text in journeys.HOTSPOT_DESCRIPTIONS.items():
        assert signals.by_hotspot(hotspot).description == text
    assert set(journeys.HOTSPOT_DESCRIPTIONS) == {
        "repeat contact",
        "help page then contact",
        "transferred ticket",
        "checkout error",
        "payment failed",
        "rework",
        "long wait",
        "dead end",
    }


def test_the_model_reads_the_registry_intent_signals():
    from cxdash.risk import INTENT_SIGNALS

    assert INTENT_SIGNALS == {
        "cancel_page": ("events", ("%cancel%",)),
        "competitor_compare": ("events", ("%competitor%", "%compare%")),
        "downgrade_page": ("events", ("%downgrade%",)),
        "cancellation_ticket": ("tickets", ("%cancel%",)),
        "complaint": ("tickets", ("%complain%",)),
    }


def test_a_signal_over_several_rows_has_no_one_row_reading():
    with pytest.raises(ValueError, match="repeat_contact"):
        signals.occurrences("repeat_contact")
    with pytest.raises(ValueError, match="long_wait"):
        signals.matches("long_wait", sa.column("activity"))


def test_the_masks_are_one_implementation():
    from cxdash.governance import privacy

    assert card.mask_email is journeys.mask_email is privacy.mask_email
    assert card.mask_phone is journeys.mask_phone is privacy.mask_phone


# ----------------------------------------------------------------------------- no second definition


def _modules() -> list[Path]:
    return sorted(p for p in CXDASH.rglob("*.py") if p.name != "signals.py")


def test_no_module_but_the_registry_spells_a_signal_pattern_or_the_failed_statuses():
    patterns = {p for s in signals.SIGNALS.values() for p in s.patterns}
    assert {"%error%", "%cancel%"} <= patterns
    failed = set(signals.FAILED_PAYMENT_STATUSES)
    found = []
    for path in _modules():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found += [(path.name, node.lineno, p) for p in patterns if p in node.value]
            elif isinstance(node, ast.Tuple | ast.List | ast.Set):
                words = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                if len(words & failed) >= 2:
                    found.append((path.name, node.lineno, sorted(words & failed)))
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = {t.id for t in targets if isinstance(t, ast.Name)}
                declared = {
                    "FAILED_PAYMENT_STATUSES",
                    "CHURN_ACTIVITIES",
                    "COMPLAINT_MAX_SATISFACTION",
                    "REPEAT_WINDOW_DAYS",
                }
                if names & declared:
                    found.append((path.name, node.lineno, sorted(names & declared)))
    assert found == []


def test_only_privacy_defines_the_email_and_phone_masks():
    defined = [
        (path.name, node.name)
        for path in sorted(CXDASH.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.FunctionDef) and node.name in {"mask_email", "mask_phone"}
    ]
    assert defined == [("privacy.py", "mask_email"), ("privacy.py", "mask_phone")]
