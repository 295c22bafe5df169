"""The KPI registry: every shared and departmental KPI's definition and owner, and the defaults.

``DEFINITIONS`` is what the pages show next to the numbers; ``CLI_KEYS`` what ``python -m cxdash
kpis --json`` prints at least.
"""

from __future__ import annotations

__all__ = [
    "ACTIVE_WINDOW_DAYS",
    "CLI_KEYS",
    "DEFAULT_CLV_HORIZON_MONTHS",
    "DEFAULT_PERIOD_DAYS",
    "DEFAULT_REPEAT_DAYS",
    "DEFINITIONS",
    "DEPARTMENTAL_DEFINITIONS",
    "SHARED_DEFINITIONS",
]

ACTIVE_WINDOW_DAYS = 30
DEFAULT_PERIOD_DAYS = 90
DEFAULT_REPEAT_DAYS = 7
DEFAULT_CLV_HORIZON_MONTHS = 12

SHARED_DEFINITIONS: dict[str, dict[str, str]] = {
    "customers": {
        "definition": "Distinct stitched customers with a CRM record; when no CRM source is loaded, "
        "every distinct identified customer in any source. For a period: those who had signed up by its end.",
        "owner": "Customer operations",
    },
    "active_customers": {
        "definition": f"Customers with any activity (event, contact, purchase) in the period (the headline uses the "
        f"{ACTIVE_WINDOW_DAYS} days up to the data's latest date), who had not churned by its end.",
        "owner": "Customer operations",
    },
    "churned_customers": {
        "definition": "Customers whose every subscription has ended by the data's latest date; where no "
        "subscriptions are loaded, customers whose churn label says so.",
        "owner": "Customer success",
    },
    "revenue": {
        "definition": "Sum of transaction amounts (refunds negative), excluding failed payments.",
        "owner": "Finance",
    },
    "churn_rate": {
        "definition": "Logo churn: customers who churned in the period (their last subscription ended) over the "
        "customers at its start. With only a churn label (no dates) it is the labelled share, a snapshot.",
        "owner": "Customer success",
    },
    "retention_rate": {
        "definition": "Customers at the start of the period still customers at its end (1 - logo churn).",
        "owner": "Customer success",
    },
    "revenue_churn_rate": {
        "definition": "Monthly recurring revenue of subscriptions that ended in the period over the MRR of the "
        "subscriptions running at its start.",
        "owner": "Finance",
    },
    "renewal_rate": {
        "definition": "Subscriptions due for renewal in the period (running at its start; monthly billing, so each "
        "comes due at least once in a period of a month or more) that were still running at its end.",
        "owner": "Billing",
    },
    "net_revenue_retention": {
        "definition": "Revenue in the period from customers who paid in the previous period of the same length, "
        "over what they paid then (expansion minus contraction and churn).",
        "owner": "Finance",
    },
    "silence_rate": {
        "definition": "The silence metric: share of active customers who did not have to contact the company "
        "(no ticket opened) in the period. It depends on the period's length: over 90 days more customers have "
        "had a reason to contact us than in any one month, so a 90-day figure is lower than the monthly ones.",
        "owner": "Shared (all departments)",
    },
    "contacts_per_active_customer": {
        "definition": "Tickets opened in the period by the customers in view, over the active customers.",
        "owner": "Support",
    },
    "repeat_contact_rate": {
        "definition": "Share of the period's contacts that come within N days of the same customer's previous "
        "contact on the same topic (topics compared ignoring case and blanks; contacts without a topic count as one "
        "topic). The friction page's repeat-contact hotspot counts the same contacts.",
        "owner": "Shared (all departments)",
    },
    "transfer_rate": {
        "definition": "Share of the period's contacts transferred at least once (of contacts with a transfer count).",
        "owner": "Support",
    },
    "handoffs_per_resolved": {
        "definition": "Transfers per ticket resolved in the period.",
        "owner": "Support",
    },
    "median_hours_to_resolution": {
        "definition": "Median hours from opening to resolution of the tickets resolved in the period.",
        "owner": "Support",
    },
    "satisfaction": {
        "definition": "Mean satisfaction score of the tickets resolved in the period that were rated.",
        "owner": "Support",
    },
    "clv_historical_total": {
        "definition": "Historical customer lifetime value: revenue to date (refunds negative, failed payments "
        "excluded) from the customers in view, up to the end of the period. Per customer: over customers.",
        "owner": "Finance",
    },
    "clv_predicted_total": {
        "definition": "Predicted customer lifetime value: expected discounted revenue over the horizon from BG/NBD "
        "(purchases, P(alive)) and Gamma-Gamma (spend), fitted on daily purchases up to the end of the period.",
        "owner": "Finance",
    },
    "activation_rate": {
        "definition": "Share of the customers in the top churn-risk decile of the latest scoring whose latest entry "
        "in the activation log says someone contacted them or acted. Empty until customers are scored.",
        "owner": "Customer success",
    },
}

DEPARTMENTAL_DEFINITIONS: dict[str, dict[str, str]] = {
    "new_customers": {
        "definition": "Customers acquired (CRM records) per campaign or acquisition channel, all time.",
        "owner": "Marketing",
    },
    "revenue_closed": {
        "definition": "Amount of won opportunities per sales owner.",
        "owner": "Sales",
    },
    "tickets_closed": {
        "definition": "Tickets resolved per team (the median hours to close is shown beside it).",
        "owner": "Support",
    },
    "collections": {
        "definition": "Payments collected (paid transactions, refunds negative) per region.",
        "owner": "Billing",
    },
    "retention_90d": {
        "definition": "Share of the cohort's customers who signed up at least 90 days before the data's latest date "
        "and were still customers 90 days after signing up (with only a churn label: share not labelled churned).",
        "owner": "Shared (all departments)",
    },
    "repeat_after_close": {
        "definition": "Share of the team's resolved tickets followed by a repeat contact: the same customer's next "
        "contact on the same topic within N days (the issue was not really solved).",
        "owner": "Shared (all departments)",
    },
}

DEFINITIONS: dict[str, dict[str, str]] = {**SHARED_DEFINITIONS, **DEPARTMENTAL_DEFINITIONS}

# The keys `python -m cxdash kpis --json` prints (at least).
CLI_KEYS = (
    "customers",
    "active_customers",
    "churn_rate",
    "retention_rate",
    "repeat_contact_rate",
    "silence_rate",
    "contacts_per_active_customer",
    "transfer_rate",
    "clv_historical_total",
    "clv_predicted_total",
)
