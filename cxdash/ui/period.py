"""The period shared by Shared KPIs and Journeys: one From/To choice that holds on both pages.

The chosen days live under ``FROM``/``TO``, keys no widget owns: Streamlit deletes a widget's
session-state key at the end of a run of a page that does not draw it, so a period kept only in
the date inputs would be forgotten on the way from one page to the other. Each page draws the
inputs with ``sidebar``, which copies the kept days into them before they are drawn and back
when the reader changes one. The days are also the link's ``from``/``to`` query parameters, so
a shared link opens on the same period.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import streamlit as st

from cxdash import metrics
from cxdash.ui.formatting import count, day

FROM = "period_from"
TO = "period_to"
_INPUT_FROM = "period_from_input"
_INPUT_TO = "period_to_input"


def _parse(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def default(now: datetime | None) -> tuple[date, date]:
    """The days both pages open on: the KPIs' default period (the 90 days up to the data's latest
    day), or the 90 days to today when the data has no dates. Out: ``(first, last)``, both included."""
    period = metrics.default_period(now)
    if period is None:
        last = date.today()
        return last - timedelta(days=metrics.DEFAULT_PERIOD_DAYS - 1), last
    return period.start.date(), (period.end - timedelta(days=1)).date()


def init(now: datetime | None) -> None:
    """Fill the shared period once per session: from the link's ``from``/``to``, else ``default``.
    A period already chosen on either page is kept."""
    if FROM in st.session_state and TO in st.session_state:
        return
    first, last = default(now)
    st.session_state[FROM] = _parse(st.query_params.get("from")) or first
    st.session_state[TO] = _parse(st.query_params.get("to")) or last


def _keep() -> None:
    for kept, shown in ((FROM, _INPUT_FROM), (TO, _INPUT_TO)):
        if isinstance(st.session_state.get(shown), date):  # a cleared input keeps the last day chosen
            st.session_state[kept] = st.session_state[shown]


def sidebar(help_text: str | None = None) -> None:
    """Draw the From and To inputs (call inside ``with st.sidebar``) showing the shared period."""
    st.session_state[_INPUT_FROM] = st.session_state[FROM]
    st.session_state[_INPUT_TO] = st.session_state[TO]
    st.date_input("From", key=_INPUT_FROM, on_change=_keep, help=help_text)
    st.date_input("To", key=_INPUT_TO, on_change=_keep, help=help_text)


def current() -> tuple[date, date]:
    """The shared period's ``(first, last)`` day, both included, in order."""
    first, last = st.session_state[FROM], st.session_state[TO]
    return (last, first) if last < first else (first, last)


def label(first: date, last: date) -> str:
    """``1 Sep 2026 – 30 Nov 2026 (91 days)``."""
    return f"{day(first)} – {day(last)} ({count((last - first).days + 1, 'day')})"
