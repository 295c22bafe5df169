"""The source kinds cxdash understands: their fields, owners and how they join the timeline.

A *kind* is a type of departmental extract (CRM accounts, web events, helpdesk tickets...).
A *source* is one named extract of a kind ("crm", "helpdesk") that an ops user loads.
Every kind declares its canonical fields once here; validation (``cxdash.ingest.validation``),
storage (``cxdash.store.database``) and the timeline (``cxdash.metrics.timeline``) are all derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "IDENTITY_FIELDS",
    "KINDS",
    "Field",
    "SourceKind",
    "get_kind",
]

# Identifier fields in precedence order: the first one present on a row is the row's
# primary identifier; every identifier on a row is linked to the others (identity graph).
IDENTITY_FIELDS: tuple[str, ...] = ("customer_id", "account_id", "email", "phone", "visitor_id")


@dataclass(frozen=True)
class Field:
    """One canonical field of a kind.

    ``dtype`` is one of ``string``, ``datetime``, ``float``, ``int``, ``bool``.
    """

    name: str
    dtype: str = "string"
    required: bool = False
    description: str = ""
    personal: bool = False  # personal data: masked for roles that do not need it


@dataclass(frozen=True)
class SourceKind:
    name: str
    department: str
    description: str
    fields: tuple[Field, ...]
    # Fields whose values identify a row within a source (used to de-duplicate appends).
    natural_key: tuple[str, ...] = ()
    # Pairs (earlier, later) of datetime fields that must be ordered.
    ordered: tuple[tuple[str, str], ...] = ()
    # Ranges checked at the point of entry: field -> (min, max), either may be None.
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    # Record ids other extracts may link to (a usage log keyed by subscription id reaches its
    # account through the subscriptions extract): see ``cxdash.identity.links``.
    link_keys: tuple[str, ...] = ()

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def required_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)

    @property
    def identity_fields(self) -> tuple[str, ...]:
        return tuple(f for f in IDENTITY_FIELDS if f in self.field_names)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"kind {self.name!r} has no field {name!r}; fields: {list(self.field_names)}")


def _ids(*names: str) -> tuple[Field, ...]:
    descriptions = {
        "customer_id": ("The customer key (CRM customer id)", False),
        "account_id": ("Billing account number", False),
        "email": ("Email address", True),
        "phone": ("Phone number (any format; normalised for matching)", True),
        "visitor_id": ("Cookie / device / visitor id", False),
    }
    return tuple(Field(n, "string", False, descriptions[n][0], descriptions[n][1]) for n in names)


KINDS: dict[str, SourceKind] = {
    k.name: k
    for k in (
        SourceKind(
            "customers",
            "sales",
            "CRM accounts: one row per customer, with attributes that later become model features.",
            (
                *_ids("customer_id", "account_id", "email", "phone"),
                Field("name", personal=True, description="Customer name"),
                Field("signup_date", "datetime", description="When the customer signed up"),
                Field("segment"),
                Field("region"),
                Field("plan"),
                Field("acquisition_channel", description="How the customer was acquired"),
                Field("campaign", description="Marketing campaign that acquired the customer"),
                Field("consent_marketing", "bool", description="May receive marketing"),
                Field("churn_label", "bool", description="Churned (a label the source provides)"),
                Field("churned_at", "datetime", description="When the customer churned (dates the churn label)"),
            ),
            natural_key=("customer_id",),
        ),
        SourceKind(
            "events",
            "web",
            "Web, app and marketing interactions: who did what when.",
            (
                *_ids("customer_id", "account_id", "email", "visitor_id"),
                Field("timestamp", "datetime", required=True),
                Field("activity", required=True, description="What happened (page, event name)"),
                Field("case_id", description="Session or case the event belongs to"),
                Field("department", description="Department the step belongs to"),
                Field("channel"),
                Field("value", "float"),
            ),
            natural_key=(),
            link_keys=("case_id",),
        ),
        SourceKind(
            "tickets",
            "support",
            "Support contacts: tickets, chats and calls.",
            (
                Field("ticket_id", required=True),
                *_ids("customer_id", "account_id", "email", "phone"),
                Field("opened_at", "datetime", required=True),
                Field("closed_at", "datetime"),
                Field("channel"),
                Field("topic", description="Topic or intent of the contact"),
                Field("transfers", "int", description="Times the contact was transferred"),
                Field("status"),
                Field("satisfaction", "float", description="Satisfaction score"),
                Field("department", description="Team that handled the contact"),
            ),
            natural_key=("ticket_id",),
            ordered=(("opened_at", "closed_at"),),
            ranges={"transfers": (0, None)},
            link_keys=("ticket_id",),
        ),
        SourceKind(
            "transactions",
            "billing",
            "Orders, invoices and payments, including failed payments and refunds.",
            (
                Field("transaction_id"),
                *_ids("customer_id", "account_id", "email"),
                Field("timestamp", "datetime", required=True),
                Field("amount", "float", description="Signed amount; or give quantity and unit_price"),
                Field("quantity", "float"),
                Field("unit_price", "float"),
                Field("status", description="paid, failed, refunded..."),
                Field("product"),
                Field("currency"),
            ),
            natural_key=(),
            ranges={"unit_price": (0, None)},
            link_keys=("transaction_id",),
        ),
        SourceKind(
            "subscriptions",
            "billing",
            "Subscriptions: start, end or cancellation, plan and recurring revenue.",
            (
                Field("subscription_id"),
                *_ids("customer_id", "account_id"),
                Field("start", "datetime", required=True),
                Field("end", "datetime", description="End or cancellation date; empty while active"),
                Field("plan"),
                Field("mrr", "float", description="Monthly recurring revenue"),
                Field("status"),
            ),
            natural_key=("subscription_id",),
            ordered=(("start", "end"),),
            ranges={"mrr": (0, None)},
            link_keys=("subscription_id",),
        ),
        SourceKind(
            "opportunities",
            "sales",
            "Sales pipeline: opportunities per account.",
            (
                Field("opportunity_id"),
                *_ids("customer_id", "account_id"),
                Field("created_at", "datetime"),
                Field("closed_at", "datetime"),
                Field("stage"),
                Field("amount", "float"),
                Field("owner"),
                Field("product"),
            ),
            natural_key=("opportunity_id",),
            ordered=(("created_at", "closed_at"),),
            link_keys=("opportunity_id",),
        ),
        SourceKind(
            "churn",
            "success",
            "Churn or cancellation events: one row per churn, with its date and an optional reason.",
            (
                Field("churn_id", description="The churn or cancellation record's own id"),
                *_ids("customer_id", "account_id", "email", "phone"),
                Field("churned_at", "datetime", required=True, description="When the customer churned or cancelled"),
                Field("reason", description="Why, as the source records it (reason code or text)"),
            ),
            natural_key=("churn_id",),
        ),
    )
}


def get_kind(name: str) -> SourceKind:
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"unknown source kind {name!r}; known kinds: {sorted(KINDS)}") from None
