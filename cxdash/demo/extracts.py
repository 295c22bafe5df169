"""The seven extracts as files: their names, CSV layouts, mappings, and the background writer."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from cxdash.demo.arrays import MONEY, STRING, TIMESTAMP

FILES = {
    "crm": "crm_customers.csv",
    "web": "web_events.csv",
    "marketing": "marketing_touches.csv",
    "helpdesk": "helpdesk_tickets.csv",
    "billing": "billing_transactions.csv",
    "subscriptions": "billing_subscriptions.csv",
    "sales": "sales_opportunities.csv",
}


@dataclass(frozen=True)
class DemoExtract:
    path: Path  # the CSV written
    source: str  # source name: crm, web, marketing, helpdesk, billing, subscriptions, sales
    kind: str  # customers|events|tickets|transactions|subscriptions|opportunities
    department: str  # owning department: sales|web|marketing|support|billing
    mapping: dict  # {"kind": kind, "columns": {FIELD: COLUMN_NAME_IN_FILE, ...}}


MAPPINGS = {  # source: (kind, owning department, {FIELD: COLUMN_NAME_IN_FILE})
    "crm": (
        "customers",
        "sales",
        {
            "customer_id": "CustomerID",
            "name": "Full Name",
            "email": "Email",
            "phone": "Phone",
            "account_id": "Billing Account",
            "signup_date": "Signup Date",
            "segment": "Segment",
            "region": "Region",
            "plan": "Plan",
            "acquisition_channel": "Acquisition Channel",
            "campaign": "Campaign",
            "consent_marketing": "Marketing Opt-In",
        },
    ),
    "web": (
        "events",
        "web",
        {
            "visitor_id": "cookie_id",
            "email": "user_email",
            "timestamp": "event_time",
            "activity": "event_name",
            "case_id": "session_id",
        },
    ),
    "marketing": (
        "events",
        "marketing",
        {"email": "Contact Email", "timestamp": "Sent At", "activity": "Touch", "channel": "Channel"},
    ),
    "helpdesk": (
        "tickets",
        "support",
        {
            "ticket_id": "Ticket #",
            "email": "Requester Email",
            "phone": "Requester Phone",
            "opened_at": "Created",
            "closed_at": "Resolved",
            "channel": "Channel",
            "topic": "Topic",
            "transfers": "Transfers",
            "status": "Status",
            "satisfaction": "CSAT",
            "department": "Team",
        },
    ),
    "billing": (
        "transactions",
        "billing",
        {
            "transaction_id": "txn_ref",
            "account_id": "account_no",
            "timestamp": "txn_date",
            "amount": "amount",
            "status": "status",
            "product": "description",
            "currency": "currency",
        },
    ),
    "subscriptions": (
        "subscriptions",
        "billing",
        {
            "subscription_id": "sub_id",
            "account_id": "account_no",
            "start": "start_date",
            "end": "end_date",
            "plan": "plan",
            "mrr": "mrr",
            "status": "status",
        },
    ),
    "sales": (
        "opportunities",
        "sales",
        {
            "opportunity_id": "Opp ID",
            "customer_id": "CustomerID",
            "created_at": "Created",
            "closed_at": "Closed",
            "stage": "Stage",
            "amount": "Amount",
            "owner": "Owner",
            "product": "Product",
        },
    ),
}

SCHEMAS = {
    "crm": pa.schema(
        [
            ("CustomerID", STRING),
            ("Full Name", STRING),
            ("Email", STRING),
            ("Phone", STRING),
            ("Billing Account", STRING),
            ("Signup Date", pa.date32()),
            ("Segment", STRING),
            ("Company", STRING),
            ("Region", STRING),
            ("Plan", STRING),
            ("Acquisition Channel", STRING),
            ("Campaign", STRING),
            ("Marketing Opt-In", STRING),
        ]
    ),
    "web": pa.schema(
        [
            ("cookie_id", STRING),
            ("user_email", STRING),
            ("event_time", TIMESTAMP),
            ("event_name", STRING),
            ("session_id", STRING),
            ("device", STRING),
        ]
    ),
    "marketing": pa.schema(
        [
            ("Contact Email", STRING),
            ("Sent At", TIMESTAMP),
            ("Campaign", STRING),
            ("Touch", STRING),
            ("Channel", STRING),
        ]
    ),
    "helpdesk": pa.schema(
        [
            ("Ticket #", pa.int64()),
            ("Requester Email", STRING),
            ("Requester Phone", STRING),
            ("Created", TIMESTAMP),
            ("Resolved", TIMESTAMP),
            ("Channel", STRING),
            ("Topic", STRING),
            ("Transfers", pa.int64()),
            ("Status", STRING),
            ("CSAT", pa.int64()),
            ("Team", STRING),
        ]
    ),
    "billing": pa.schema(
        [
            ("txn_ref", STRING),
            ("account_no", STRING),
            ("txn_date", TIMESTAMP),
            ("amount", MONEY),
            ("status", STRING),
            ("description", STRING),
            ("currency", STRING),
        ]
    ),
    "subscriptions": pa.schema(
        [
            ("sub_id", STRING),
            ("account_no", STRING),
            ("start_date", pa.date32()),
            ("end_date", pa.date32()),
            ("plan", STRING),
            ("seats", pa.int64()),
            ("mrr", MONEY),
            ("status", STRING),
        ]
    ),
    "sales": pa.schema(
        [
            ("Opp ID", STRING),
            ("CustomerID", STRING),
            ("Created", pa.date32()),
            ("Closed", pa.date32()),
            ("Stage", STRING),
            ("Amount", MONEY),
            ("Owner", STRING),
            ("Product", STRING),
        ]
    ),
}


class Writers:
    """One CSVWriter per file, fed by a background thread so writing overlaps generation."""

    def __init__(self, out_dir: Path):
        self.paths = {k: out_dir / f for k, f in FILES.items()}
        opts = pacsv.WriteOptions(include_header=True, quoting_style="none")
        self.writers = {k: pacsv.CSVWriter(str(p), SCHEMAS[k], write_options=opts) for k, p in self.paths.items()}
        self.q: queue.Queue = queue.Queue(maxsize=6)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error is not None:
                continue
            key, table = item
            try:
                self.writers[key].write_table(table)
            except BaseException as e:  # noqa: BLE001 - any failure stops writing and is re-raised in close()
                self.error = e

    def put(self, key: str, table: pa.Table):
        if self.error is not None:
            raise self.error
        self.q.put((key, table))

    def close(self):
        self.q.put(None)
        self.thread.join()
        for w in self.writers.values():
            w.close()
        if self.error is not None:
            raise self.error
