"""A small SaaS company's exports, built by hand in the shape real systems write them.

Five tables, as a subscription business hands them over: accounts (with the CRM's churn flag),
subscriptions (every account keeps one open row, so "every subscription ended" finds nobody: the
export never closes an account's last subscription), support tickets keyed by account, feature
usage keyed only by subscription id, and churn events with a reason. Values are invented and
seeded; the tests compute their expected figures from these frames with pandas.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

N_ACCOUNTS = 200
FLAGGED = 44  # the accounts' churn flag: 22%
STALE = 4  # accounts with a churn event whose flag was never set
REASONS = ("pricing", "support", "missing_features", "competitor", "budget")

MAPPINGS = {
    "accounts": {
        "kind": "customers",
        "columns": {
            "customer_id": "account_id",
            "name": "account_name",
            "signup_date": "signup_date",
            "plan": "plan_tier",
            "region": "country",
            "segment": "industry",
            "churn_label": "churn_flag",
        },
    },
    "subscriptions": {
        "kind": "subscriptions",
        "columns": {
            "subscription_id": "subscription_id",
            "customer_id": "account_id",
            "start": "start_date",
            "end": "end_date",
            "plan": "plan_tier",
            "mrr": "mrr_amount",
        },
    },
    "tickets": {
        "kind": "tickets",
        "columns": {
            "ticket_id": "ticket_id",
            "customer_id": "account_id",
            "opened_at": "submitted_at",
            "closed_at": "closed_at",
            "satisfaction": "satisfaction_score",
            "topic": "priority",
        },
    },
    "churn_events": {
        "kind": "churn",
        "columns": {
            "churn_id": "churn_event_id",
            "customer_id": "account_id",
            "churned_at": "churn_date",
            "reason": "reason_code",
        },
    },
}


@dataclass
class SaasCompany:
    accounts: pd.DataFrame
    subscriptions: pd.DataFrame
    tickets: pd.DataFrame
    usage: pd.DataFrame
    churn_events: pd.DataFrame

    def write(self, folder: Path) -> dict[str, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        out = {}
        for name in ("accounts", "subscriptions", "tickets", "usage", "churn_events"):
            path = folder / f"{name}.csv"
            getattr(self, name).to_csv(path, index=False)
            out[name] = path
        return out

    @property
    def as_of(self) -> pd.Timestamp:
        """The latest timestamp anywhere in the exports (the data's "now")."""
        stamps = [
            self.accounts["signup_date"],
            self.subscriptions["start_date"],
            self.subscriptions["end_date"],
            self.tickets["submitted_at"],
            self.tickets["closed_at"],
            self.churn_events["churn_date"],
        ]
        return max(pd.to_datetime(s).max() for s in stamps)


def build(seed: int = 13) -> SaasCompany:
    rng = np.random.default_rng(seed)
    ids = [f"A{i:04d}" for i in range(1, N_ACCOUNTS + 1)]
    signup = pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 540, N_ACCOUNTS), unit="D")
    flagged = np.zeros(N_ACCOUNTS, dtype=bool)
    flagged[rng.choice(N_ACCOUNTS, FLAGGED, replace=False)] = True
    accounts = pd.DataFrame(
        {
            "account_id": ids,
            "account_name": [f"Company {i}" for i in range(1, N_ACCOUNTS + 1)],
            "industry": rng.choice(["retail", "health", "software", "finance"], N_ACCOUNTS),
            "country": rng.choice(["US", "UK", "DE", "FR"], N_ACCOUNTS),
            "signup_date": signup.strftime("%Y-%m-%d"),
            "plan_tier": rng.choice(["Basic", "Pro", "Enterprise"], N_ACCOUNTS),
            "seats": rng.integers(1, 200, N_ACCOUNTS),
            "is_trial": rng.choice(["True", "False"], N_ACCOUNTS),
            "churn_flag": np.where(flagged, "True", "False"),
        }
    )

    # churn events: every flagged account, and a few whose flag the CRM never updated
    stale = rng.choice(np.flatnonzero(~flagged), STALE, replace=False)
    churners = np.sort(np.concatenate([np.flatnonzero(flagged), stale]))
    end = pd.Timestamp("2024-12-31")
    span = (end - signup[churners]).days.to_numpy()
    churn_day = signup[churners] + pd.to_timedelta(60 + (rng.random(len(churners)) * (span - 60)).astype(int), unit="D")
    churn_events = pd.DataFrame(
        {
            "churn_event_id": [f"CE{i:03d}" for i in range(1, len(churners) + 1)],
            "account_id": [ids[i] for i in churners],
            "churn_date": churn_day.strftime("%Y-%m-%d"),
            "reason_code": rng.choice(REASONS, len(churners)),
            "refund_amount_usd": np.round(rng.random(len(churners)) * 100, 2),
            "feedback_text": "",
        }
    )

    # subscriptions: a first one from signup; a third of accounts upgraded to a second; the
    # account's last subscription is never closed in this export
    rows = []
    for i, acc in enumerate(ids):
        start = signup[i]
        if rng.random() < 1 / 3:
            switch = start + pd.Timedelta(days=int(rng.integers(30, 300)))
            rows.append((acc, start, switch, "Basic", 100.0))
            rows.append((acc, switch + pd.Timedelta(days=1), pd.NaT, "Pro", 250.0))
        else:
            rows.append((acc, start, pd.NaT, accounts.at[i, "plan_tier"], float(rng.integers(50, 500))))
    subs = pd.DataFrame(rows, columns=["account_id", "start_date", "end_date", "plan_tier", "mrr_amount"])
    subs.insert(0, "subscription_id", [f"S{i:05d}" for i in range(1, len(subs) + 1)])
    subs["start_date"] = subs["start_date"].dt.strftime("%Y-%m-%d")
    subs["end_date"] = subs["end_date"].dt.strftime("%Y-%m-%d")  # NaT -> empty cell

    # tickets keyed by account, opened between signup and the end of the data
    t_rows = []
    for i, acc in enumerate(ids):
        for _ in range(int(rng.integers(0, 5))):
            opened = signup[i] + pd.Timedelta(hours=int(rng.integers(24, (end - signup[i]).days * 24)))
            closed = opened + pd.Timedelta(hours=int(rng.integers(1, 96)))
            t_rows.append(
                (
                    acc,
                    opened,
                    closed,
                    int(rng.integers(1, 6)),
                    rng.choice(["low", "medium", "high"]),
                    rng.choice(["True", "False"]),
                )
            )
    tickets = pd.DataFrame(
        t_rows, columns=["account_id", "submitted_at", "closed_at", "satisfaction_score", "priority", "escalation_flag"]
    )
    tickets.insert(0, "ticket_id", [f"T{i:05d}" for i in range(1, len(tickets) + 1)])
    tickets["resolution_time_hours"] = (
        (tickets["closed_at"] - tickets["submitted_at"]).dt.total_seconds() / 3600
    ).round(1)
    tickets["submitted_at"] = tickets["submitted_at"].dt.strftime("%Y-%m-%d %H:%M:%S")
    tickets["closed_at"] = tickets["closed_at"].dt.strftime("%Y-%m-%d %H:%M:%S")

    # feature usage keyed only by subscription id (reaches the account through the subscriptions extract)
    picks = rng.choice(len(subs), 600)
    usage = pd.DataFrame(
        {
            "usage_id": [f"U{i:05d}" for i in range(1, 601)],
            "subscription_id": subs["subscription_id"].to_numpy()[picks],
            "usage_date": (pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, 600), unit="D")).strftime(
                "%Y-%m-%d"
            ),
            "feature_name": rng.choice(["dashboard", "export", "api", "alerts"], 600),
            "usage_count": rng.integers(1, 50, 600),
            "error_count": rng.integers(0, 3, 600),
        }
    )
    return SaasCompany(accounts, subs, tickets, usage, churn_events)
