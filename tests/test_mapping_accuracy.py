"""How well auto-mapping does on real exports: a hand-written mapping per file, scored.

Each case is an export (a public file under ../shared/data/public, or a small file under
tests/fixtures/exports shaped like a real system's export, with invented values) with its kind
given (guessing the kind is another test's business) and the fields a person would map, written
by hand from the file's header and first rows. The score of a file is the fields
``suggest_mapping`` maps to the right column out of those fields. ``IDENTITY`` stands for "some
customer identifier field takes this column" (customer_id or account_id: either is right).
The table is written to the test artifacts as markdown and is the README's "How well
auto-mapping does".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from cxdash.ingest.mapping import suggest_mapping
from cxdash.ingest.readers import iter_chunks, read_header, sniff_format
from cxdash.store.kinds import IDENTITY_FIELDS
from tests.conftest import FIXTURES, PUBLIC, REPO

EXPORTS = FIXTURES / "exports"
IDENTITY = "(customer identifier)"


@dataclass
class Case:
    label: str
    path: str  # "public:<relative>" or a file name under tests/fixtures/exports
    kind: str
    expected: dict[str, str | tuple[str, ...]]  # field -> column (or the columns that are all right)
    critical: tuple[str, ...] = ()  # fields that must be right for the load to mean anything
    forbidden: dict[str, tuple[str, ...]] = field(default_factory=dict)  # field -> columns it must never take


CASES = [
    Case(
        "Telco customer churn (IBM sample)",
        "public:telco_churn/WA_Fn-UseC_-Telco-Customer-Churn.csv",
        "customers",
        {"customer_id": "customerID", "churn_label": "Churn", "plan": "Contract"},
        ("customer_id", "churn_label"),
    ),
    Case(
        "Online Retail (UCI) sample",
        "public:online_retail/online_retail_sample.csv",
        "transactions",
        {
            "transaction_id": "InvoiceNo",
            "customer_id": "CustomerID",
            "timestamp": "InvoiceDate",
            "quantity": "Quantity",
            "unit_price": "UnitPrice",
            "product": ("Description", "StockCode"),
        },
        ("customer_id", "timestamp", "quantity", "unit_price"),
    ),
    Case(
        "Customer support tickets (Kaggle, as shared)",
        "public:support_tickets/customer_support_tickets.csv",
        "tickets",
        {
            "ticket_id": "Ticket ID",
            "email": "Customer Email",
            "opened_at": "First Response Time",
            "closed_at": "Time to Resolution",
            "channel": "Ticket Channel",
            "topic": ("Ticket Type", "Ticket Subject"),
            "status": "Ticket Status",
            "satisfaction": "Customer Satisfaction Rating",
        },
        ("ticket_id", "email", "opened_at"),
        {"opened_at": ("Date of Purchase",)},
    ),
    Case(
        "Customer support tickets (original format)",
        "public:support_tickets/customer_support_tickets_first999_original_format.csv",
        "tickets",
        {
            "ticket_id": "Ticket ID",
            "email": "Customer Email",
            "opened_at": "First Response Time",
            "closed_at": "Time to Resolution",
            "channel": "Ticket Channel",
            "topic": ("Ticket Type", "Ticket Subject"),
            "status": "Ticket Status",
            "satisfaction": "Customer Satisfaction Rating",
        },
        ("ticket_id", "email", "opened_at"),
        {"opened_at": ("Date of Purchase",)},
    ),
    Case(
        "CRM sales pipeline (Maven)",
        "public:crm_sales_opportunities/sales_pipeline.csv",
        "opportunities",
        {
            "opportunity_id": "opportunity_id",
            "customer_id": "account",
            "created_at": "engage_date",
            "closed_at": "close_date",
            "stage": "deal_stage",
            "amount": "close_value",
            "owner": "sales_agent",
            "product": "product",
        },
        ("opportunity_id", "customer_id", "stage", "amount"),
    ),
    Case(
        "CRM accounts (Maven)",
        "public:crm_sales_opportunities/accounts.csv",
        "customers",
        {"customer_id": "account", "segment": "sector", "region": "office_location"},
        ("customer_id",),
    ),
    Case(
        "CDNOW customer summary (lifetimes)",
        "public:cdnow/cdnow_customers_summary.csv",
        "customers",
        {"customer_id": "ID"},
        ("customer_id",),
    ),
    Case(
        "CDNOW summary with transactions (lifetimes)",
        "public:cdnow/cdnow_customers_summary_with_transactions.csv",
        "customers",
        {"customer_id": "ID"},
        ("customer_id",),
    ),
    # A person maps the case as the customer to load this log; auto-mapping does not guess that
    # (a case is not always a customer: tests/test_public_files.py wants such a log refused).
    Case(
        "pm4py running example (CSV)",
        "public:pm4py_running_example/running-example.csv",
        "events",
        {
            "timestamp": "time:timestamp",
            "activity": ("concept:name", "Activity"),
            "case_id": "case:concept:name",
            "customer_id": "case:concept:name",
            "department": ("org:resource", "Resource"),
        },
        ("timestamp", "activity", "case_id"),
    ),
    Case(
        "SaaS accounts with a churn flag",
        "saas_accounts.csv",
        "customers",
        {
            IDENTITY: "account_id",
            "name": "account_name",
            "segment": "industry",
            "region": "country",
            "plan": "plan_tier",
            "signup_date": "signup_date",
            "churn_label": "churn_flag",
        },
        (IDENTITY, "churn_label", "name"),
    ),
    Case(
        "SaaS subscriptions",
        "saas_subscriptions.csv",
        "subscriptions",
        {
            "subscription_id": "subscription_id",
            IDENTITY: "account_id",
            "plan": "plan_tier",
            "start": "start_date",
            "end": "end_date",
            "mrr": "mrr_amount",
        },
        ("subscription_id", IDENTITY, "start", "end", "mrr"),
    ),
    Case(
        "SaaS tickets keyed by account",
        "saas_tickets.csv",
        "tickets",
        {
            "ticket_id": "ticket_id",
            IDENTITY: "account_id",
            "opened_at": "submitted_at",
            "closed_at": "closed_at",
            "topic": "category",
            "satisfaction": "satisfaction_score",
        },
        ("ticket_id", IDENTITY, "opened_at", "closed_at"),
        {
            "transfers": ("escalation_flag",),
            "closed_at": ("resolution_time_hours",),
            "opened_at": ("first_response_time_minutes",),
        },
    ),
    Case(
        "SaaS feature usage keyed by subscription",
        "saas_feature_usage.csv",
        "events",
        {"timestamp": "usage_date", "activity": "feature_name"},
        ("timestamp", "activity"),
    ),
    Case(
        "SaaS churn events with reasons",
        "saas_churn_events.csv",
        "events",
        {IDENTITY: "account_id", "timestamp": "churn_date"},
        (IDENTITY, "timestamp"),
    ),
    Case(
        "European transactions (semicolons, decimal comma)",
        "eu_transactions.csv",
        "transactions",
        {
            "transaction_id": "order_id",
            "customer_id": "customer_number",
            "timestamp": "order_date",
            "amount": "total_amount",
            "currency": "currency",
        },
        ("customer_id", "timestamp", "amount"),
    ),
    Case(
        "Clickstream (web analytics export)",
        "clickstream.csv",
        "events",
        {
            "case_id": "session_id",
            "customer_id": "user_id",
            "visitor_id": "anonymous_id",
            "timestamp": "event_time",
            "activity": "event_type",
            "channel": "device",
        },
        ("customer_id", "visitor_id", "timestamp", "activity"),
    ),
    Case(
        "retentioneering simple_shop shape",
        "retentioneering_simple_shop_shape.csv",
        "events",
        {"customer_id": "user_id", "activity": "event", "timestamp": "timestamp"},
        ("customer_id", "activity", "timestamp"),
    ),
    Case(
        "lifetimes example transactions shape",
        "lifetimes_transactions_shape.csv",
        "transactions",
        {"customer_id": "id", "timestamp": "date"},
        ("customer_id", "timestamp"),
    ),
    Case(
        "Bank customer churn (Exited) shape",
        "bank_churn_shape.csv",
        "customers",
        {"customer_id": "CustomerId", "name": "Surname", "region": "Geography", "churn_label": "Exited"},
        ("customer_id", "churn_label"),
        {"consent_marketing": ("HasCrCard", "IsActiveMember")},
    ),
    Case(
        "Consumer complaints (CFPB) shape",
        "complaints_shape.csv",
        "tickets",
        {
            "ticket_id": "Complaint ID",
            "opened_at": "Date received",
            "topic": ("Issue", "Product"),
            "channel": "Submitted via",
        },
        ("ticket_id", "opened_at"),
        {"closed_at": ("Date sent to company",)},
    ),
    Case(
        "ServiceNow incidents shape",
        "servicenow_incidents_shape.csv",
        "tickets",
        {
            "ticket_id": "number",
            "customer_id": "caller_id",
            "opened_at": "opened_at",
            "closed_at": ("closed_at", "resolved_at"),
            "topic": "category",
            "status": "state",
            "department": "assignment_group",
            "transfers": "reassignment_count",
        },
        ("ticket_id", "customer_id", "opened_at", "transfers"),
        {"transfers": ("made_sla",)},
    ),
    Case(
        "Stripe charges export shape",
        "stripe_charges_shape.csv",
        "transactions",
        {
            "transaction_id": "id",
            "timestamp": "Created (UTC)",
            "amount": "Amount",
            "currency": "Currency",
            "status": "Status",
            "product": "Description",
            "customer_id": "Customer ID",
            "email": "Customer Email",
        },
        ("transaction_id", "timestamp", "amount", "customer_id"),
    ),
    Case(
        "Helpdesk tickets with durations",
        "helpdesk_durations_shape.csv",
        "tickets",
        {
            "ticket_id": "Ticket ID",
            "email": "Customer Email",
            "opened_at": "Created",
            "status": "Status",
            "channel": "Channel",
            "satisfaction": "CSAT",
        },
        ("ticket_id", "opened_at"),
        {"closed_at": ("Time to Resolution",), "opened_at": ("First Response Time",), "transfers": ("Escalated",)},
    ),
]

# Files of the public folder that are not scored, and why (so the table says what it leaves out).
NOT_SCORED = {
    "crm_sales_opportunities/products.csv": "a product price list, not customer data",
    "crm_sales_opportunities/sales_teams.csv": "the sales agents and their managers, not customer data",
    "crm_sales_opportunities/data_dictionary.csv": "a description of the other files",
    "cdnow/CDNOW_master.txt, CDNOW_sample.txt": "fixed-width text without delimiters: not a CSV export",
    "pm4py_running_example/running-example.xes": "XES (XML) event log: cxdash reads CSV and Excel",
}


def _path(case: Case) -> Path:
    if case.path.startswith("public:"):
        return PUBLIC / case.path.removeprefix("public:")
    return EXPORTS / case.path


def _score(case: Case) -> dict:
    path = _path(case)
    fmt = sniff_format(path)
    header = read_header(path, fmt)
    sample = next(iter_chunks(path, fmt, chunk_rows=2000))
    got = suggest_mapping(case.kind, header, sample).columns
    right, misses, missed = [], [], []
    for name, want in case.expected.items():
        allowed = (want,) if isinstance(want, str) else want
        if name == IDENTITY:
            ok = any(got.get(f) in allowed for f in IDENTITY_FIELDS)
            shown = {f: got[f] for f in IDENTITY_FIELDS if f in got}
        else:
            ok = got.get(name) in allowed
            shown = got.get(name)
        (right if ok else misses).append(name)
        if not ok:
            missed.append(name)
            misses[-1] = f"{name} (wanted {' or '.join(allowed)}, got {shown or 'nothing'})"
    forbidden_hits = [f"{f} <- {got[f]}" for f, cols in case.forbidden.items() if got.get(f) in cols]
    return {
        "case": case,
        "mapping": got,
        "right": right,
        "missed": missed,
        "misses": misses,
        "forbidden": forbidden_hits,
    }


def _available(case: Case) -> bool:
    return _path(case).is_file()


@pytest.fixture(scope="module")
def scores(public_data) -> list[dict]:
    return [_score(c) for c in CASES if _available(c)]


def test_the_table_covers_at_least_fifteen_exports(scores):
    assert len(scores) >= 15
    assert sum(c.path.startswith("public:") for c in (s["case"] for s in scores)) >= 9


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_critical_fields_of_each_export_are_mapped_right_and_nothing_forbidden_is(case, public_data):
    if not _available(case):
        pytest.skip(f"{_path(case)} is not here")
    s = _score(case)
    wrong_critical = [m for name, m in zip(s["missed"], s["misses"], strict=True) if name in case.critical]
    assert not wrong_critical, wrong_critical
    assert not s["forbidden"], s["forbidden"]


def test_overall_share_of_fields_mapped_right_is_at_least_ninety_percent_and_the_table_is_written(scores, artifacts):
    right = sum(len(s["right"]) for s in scores)
    total = sum(len(s["case"].expected) for s in scores)
    share = right / total
    lines = [
        "| Export | Kind | Fields mapped right | Share | Missed |",
        "|---|---|---|---|---|",
    ]
    for s in scores:
        n, k = len(s["right"]), len(s["case"].expected)
        missed = "; ".join(s["misses"]) or "-"
        lines.append(f"| {s['case'].label} | {s['case'].kind} | {n} of {k} | {n / k:.0%} | {missed} |")
    lines.append(f"| **All {len(scores)} exports** | | **{right} of {total}** | **{share:.1%}** | |")
    lines.append("")
    lines.append("Not scored: " + "; ".join(f"`{p}` ({why})" for p, why in NOT_SCORED.items()) + ".")
    (artifacts / "mapping_accuracy.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert share >= 0.9, "\n".join(lines)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    stale = [line for line in lines if line and line not in readme]
    assert not stale, f"README's 'How well auto-mapping does' table differs from the measured one: {stale}"


NAMES = [
    ("customers", "churn_flag", ["True", "False"], "churn_label"),
    ("customers", "Exited", ["1", "0"], "churn_label"),
    ("customers", "Churn", ["Yes", "No"], "churn_label"),
    ("customers", "churned", ["y", "n"], "churn_label"),
    ("customers", "is_churned", ["t", "f"], "churn_label"),
    ("customers", "account_name", ["Acme Ltd", "Globex"], "name"),
    ("customers", "signup_date", ["2024-01-02", "2024-02-03"], "signup_date"),
    ("customers", "Country", ["DE", "FR"], "region"),
    ("tickets", "ComplaintID", ["1", "2"], "ticket_id"),
    ("tickets", "Complaint ID", ["1", "2"], "ticket_id"),
    ("tickets", "case_id", ["C1", "C2"], "ticket_id"),
    ("tickets", "case_number", ["C1", "C2"], "ticket_id"),
    ("tickets", "incident_number", ["INC1", "INC2"], "ticket_id"),
    ("tickets", "Ticket ID", ["1", "2"], "ticket_id"),
    ("tickets", "submitted_at", ["2024-01-02 10:00", "2024-01-03 11:00"], "opened_at"),
    ("tickets", "created", ["2024-01-02 10:00", "2024-01-03 11:00"], "opened_at"),
    ("tickets", "Date received", ["2024-01-02", "2024-01-03"], "opened_at"),
    ("tickets", "created_date", ["2024-01-02", "2024-01-03"], "opened_at"),
    ("tickets", "satisfaction_score", ["4", "5"], "satisfaction"),
    ("subscriptions", "start_date", ["2024-01-02", "2024-01-03"], "start"),
    ("subscriptions", "end_date", ["2024-06-02", None], "end"),
    ("subscriptions", "churn_date", ["2024-06-02", None], "end"),
    ("subscriptions", "mrr_amount", ["49.00", "99.00"], "mrr"),
    ("subscriptions", "plan_tier", ["Pro", "Basic"], "plan"),
    ("events", "usage_date", ["2024-01-02", "2024-01-03"], "timestamp"),
    ("events", "feature_name", ["export", "api"], "activity"),
    ("events", "event_type", ["click", "view"], "activity"),
    ("transactions", "InvoiceDate", ["2010-12-01 08:26:00", "2010-12-01 08:28:00"], "timestamp"),
    ("transactions", "InvoiceNo", ["536365", "536366"], "transaction_id"),
    ("transactions", "UnitPrice", ["2.55", "3.39"], "unit_price"),
    ("transactions", "Quantity", ["6", "8"], "quantity"),
    ("transactions", "CustomerID", ["17850", "13047"], "customer_id"),
]


@pytest.mark.parametrize(("kind", "column", "values", "field_name"), NAMES, ids=[f"{n[1]}->{n[3]}" for n in NAMES])
def test_a_common_export_column_name_maps_to_its_field(kind, column, values, field_name):
    other = {
        "customers": "customer_id",
        "tickets": "email",
        "subscriptions": "customer_id",
        "events": "user_id",
        "transactions": "email",
    }[kind]
    header = [other, column] if other != column else [column]
    sample = pd.DataFrame({other: ["a@x.org", "b@x.org"], column: values}, dtype="str")
    assert suggest_mapping(kind, header, sample).columns.get(field_name) == column
