"""Support for the admin page: users and roles, erasure requests, the audit log."""

from __future__ import annotations

import json

import pandas as pd
import plotly.express as px
import streamlit as st

from cxdash.governance import auth
from cxdash.governance.erasure import ErasureError, ErasureResult, erase_customer
from cxdash.store import audit
from cxdash.ui import data
from cxdash.ui.auth import current_user
from cxdash.ui.formatting import count

ROLES = auth.ROLES
ROLE_LABELS = auth.ROLE_LABELS
UserError = auth.UserError
ErasureFailed = ErasureError

# Session-state keys (page-prefixed).
ADD_NAME = "admin_add_name"
ADD_ROLE = "admin_add_role"
ADD_SSO = "admin_add_sso"
EDIT_USER = "admin_edit_user"
EDIT_ACTION = "admin_edit_action"
EDIT_ROLE = "admin_edit_role"
# After an erasure from this page: the file's freed space is overwritten, but only an offline
# rewrite removes old column statistics (cxdash.store.compaction.compact_duckdb_file) without risking the
# connections this app process holds.
COMPACT_ADVICE = (
    "The database file's freed space was overwritten. Its old column statistics can still hold the smallest "
    "or largest id of a block: to remove those too, stop the app and run `python -m cxdash compact` "
    "(the command line's `erase` does this by itself)."
)
ERASE_ID = "admin_erase_id"
ERASE_CONFIRM = "admin_erase_confirm"
AUDIT_ACTION = "admin_audit_action"

EDIT_ACTIONS = ("change role", "disable", "enable", "unlock", "reset password")


def users() -> pd.DataFrame:
    return auth.list_users(data.store())


def _when(values: pd.Series, missing: str) -> pd.Series:
    """Timestamps as a person reads them ("2 Dec 2026, 08:50 UTC"); ``missing`` where there is none."""
    stamps = pd.to_datetime(values, errors="coerce")
    text = stamps.dt.day.astype("Int64").astype("string") + stamps.dt.strftime(" %b %Y, %H:%M UTC")
    return text.fillna(missing).astype("string")


def users_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One readable row per person: user, role, status, last sign-in, created."""
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    locked = pd.to_datetime(frame["locked_until"], errors="coerce")
    status = pd.Series("active", index=frame.index, dtype="string")
    status[locked.notna() & (locked > now)] = "locked until " + locked.dt.strftime("%H:%M UTC")
    status[frame["disabled"].astype(bool)] = "disabled"
    return pd.DataFrame(
        {
            "user": frame["username"].astype("string"),
            "role": frame["role"].astype("string").str.replace("_", " "),
            "status": status,
            "last sign-in": _when(frame["last_sign_in_at"], "never"),
            "created": _when(frame["created_at"], "—"),
        }
    )


def summary_sentence(frame: pd.DataFrame, log: pd.DataFrame) -> str:
    active = frame.loc[~frame["disabled"].astype(bool)] if len(frame) else frame
    admins = int((active["role"] == "admin").sum()) if len(active) else 0
    erasures = int((log["action"] == "erasure").sum()) if len(log) else 0
    denied = int((log["action"].isin(["sign_in_failed", "access_denied"])).sum()) if len(log) else 0
    people = "1 person can" if len(active) == 1 else f"{count(len(active))} people can"
    return (
        f"**{people} sign in** ({count(admins, 'admin')}); "
        f"the last {count(len(log), 'audit entry')} hold {count(erasures, 'erasure request')} and "
        f"{count(denied, 'refused sign-in or page access attempt')}."
    )


def add_user(name: str, role: str, sso: bool) -> str | None:
    return auth.add_user(data.store(), name, role, actor=current_user(), sso=sso)


def edit_user(name: str, action: str, role: str | None = None) -> str | None:
    """Apply one change; returns a generated password when the action was a reset."""
    store, actor = data.store(), current_user()
    if name == current_user() and action in ("disable", "change role"):
        raise UserError("you cannot disable yourself or change your own role (ask another admin)")
    if action == "change role":
        auth.set_role(store, name, role or "", actor=actor)
    elif action in ("disable", "enable"):
        auth.set_disabled(store, name, action == "disable", actor=actor)
    elif action == "unlock":
        auth.unlock(store, name, actor=actor)
    elif action == "reset password":
        return auth.reset_password(store, name, actor=actor)
    return None


def erase(identifier: str) -> ErasureResult:
    result = erase_customer(data.store(), identifier, actor=current_user())
    st.cache_data.clear()  # nothing cached may still show the customer
    data.forget_version()
    return result


def audit_log(action: str | None = None, limit: int = 1000) -> pd.DataFrame:
    frame = audit.recent(data.store(), limit=limit, action=action or None)
    frame["detail"] = frame["detail"].map(_detail_text)
    return frame


def _detail_text(text: str | None) -> str:
    try:
        detail = json.loads(text or "{}")
    except ValueError:
        return text or ""
    return ", ".join(f"{k}: {v}" for k, v in detail.items())


def audit_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The audit log as people read it: ``when, who, action, detail`` (actions in words)."""
    return pd.DataFrame(
        {
            "when": pd.to_datetime(frame["occurred_at"]),
            "who": frame["actor"],
            "action": frame["action"].astype("string").str.replace("_", " "),
            "detail": frame["detail"],
        }
    )


def audit_chart(frame: pd.DataFrame):
    """Entries per hour (a log spanning under two days) or per day, by action (stacked bars)."""
    if frame.empty:
        return None
    when = pd.to_datetime(frame["occurred_at"])
    bucket = "h" if when.max() - when.min() < pd.Timedelta(days=2) else "D"
    daily = frame.assign(when=when.dt.floor(bucket)).groupby(["when", "action"]).size().rename("entries").reset_index()
    daily["action"] = daily["action"].str.replace("_", " ")
    fig = px.bar(daily, x="when", y="entries", color="action", height=260)
    fig.update_layout(margin=dict(l=10, r=10, t=10, b=10), legend_title_text="", xaxis_title="", yaxis_title="entries")
    step = pd.Timedelta(hours=1) if bucket == "h" else pd.Timedelta(days=1)
    # one bucket alone would be stretched over the whole axis with sub-second ticks: show its neighbours
    fig.update_traces(width=step.total_seconds() * 1000 * 0.8)  # a date axis measures bars in ms
    fig.update_xaxes(
        range=[daily["when"].min() - step, daily["when"].max() + step],
        tickformat="%d %b, %H:%M" if bucket == "h" else "%d %b %Y",
    )
    return fig


def audit_actions() -> list[str]:
    return list(audit.ACTIONS)
