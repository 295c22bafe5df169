"""Cached access to the store for the pages. Caches are keyed on the data version, so a new
load shows up on the next rerun and nothing stale is served."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from cxdash.config import database_url
from cxdash.jobs import open_store, summaries
from cxdash.jobs.views import COMPUTATIONS
from cxdash.metrics import Headline, churn
from cxdash.store.database import Store, StoreLockedError
from cxdash.store.version import data_version

# A page waits this long for a running load to release the embedded database before it falls
# back to what it last showed (a scheduled ingest holds the DuckDB file while it writes).
UI_LOCK_TIMEOUT_S = 3.0
BUSY_KEY = "data_store_busy"
# A page asks for the version once per cached call; opening the DuckDB file for each costs
# tens of milliseconds, so an answer is reused for this long (a load made in this app forgets it).
VERSION_REUSE_S = 1.0
_last_version: dict[str, int] = {}
_version_seen_at: dict[str, float] = {}


@st.cache_resource(show_spinner=False)
def store_at(url: str) -> Store:
    """The store at ``url``, opened once per app process (pages' cached reads key on the URL)."""
    store = open_store(url)
    store.lock_timeout_s = UI_LOCK_TIMEOUT_S
    return store


def store() -> Store:
    return store_at(database_url())


def version() -> int:
    """The data version; while a load holds the store, the last version seen (pages then serve
    their cached results: the previous data, until the load commits)."""
    url = database_url()
    seen = _version_seen_at.get(url)
    if seen is not None and time.monotonic() - seen < VERSION_REUSE_S and url in _last_version:
        return _last_version[url]
    try:
        with store().connect() as conn:
            v = data_version(conn)
    except StoreLockedError:
        if url not in _last_version:
            raise
        st.session_state[BUSY_KEY] = True
        return _last_version[url]
    st.session_state[BUSY_KEY] = False
    _last_version[url] = v
    _version_seen_at[url] = time.monotonic()
    return v


def forget_version() -> None:
    """After a load or an erasure made in this app: the next page run reads the version afresh."""
    _version_seen_at.clear()


def busy() -> bool:
    return bool(st.session_state.get(BUSY_KEY))


@st.cache_data(show_spinner=False, max_entries=8)
def _sources(url: str, version: int) -> pd.DataFrame:
    with store_at(url).connect() as conn:
        return summaries.get(conn, "source_summary", version)


@st.cache_data(show_spinner=False, max_entries=8)
def _headline(url: str, version: int, churn_name: str | None) -> Headline:
    with store_at(url).connect() as conn:
        return summaries.get(conn, "headline", version, {"churn": churn_name} if churn_name else None)


_chosen_churn: dict[str, tuple[float, str | None]] = {}


def chosen_churn() -> str | None:
    """The company's stored churn definition (app state), read at most once a second."""
    url = database_url()
    seen = _chosen_churn.get(url)
    if seen is not None and time.monotonic() - seen[0] < VERSION_REUSE_S:
        return seen[1]
    try:
        name = churn.chosen_name(store())
    except StoreLockedError:
        if seen is None:
            raise
        return seen[1]  # a load holds the store: the choice last read (as the version does)
    _chosen_churn[url] = (time.monotonic(), name)
    return name


def forget_churn_choice() -> None:
    """After the churn definition was chosen in this app: read it afresh on the next run."""
    _chosen_churn.clear()


@st.cache_data(show_spinner=False, max_entries=8)
def _churn_resolution(url: str, version: int, chosen: str | None) -> churn.Resolution:
    with store_at(url).connect() as conn:
        stored = summaries.get(conn, "churn_candidates", version)
        return churn.resolve(conn, chosen, [churn.Candidate.from_dict(d) for d in stored])


def churn_resolution() -> churn.Resolution:
    """The churn definition in force, its candidates and how it came to be (chosen or suggested)."""
    return _churn_resolution(database_url(), version(), chosen_churn())


def churn_name() -> str | None:
    """The name of the churn definition in force (every churn figure on every page follows it)."""
    return churn_resolution().name


@st.cache_data(show_spinner=False, max_entries=8)
def _activity(url: str, version: int) -> pd.DataFrame:
    with store_at(url).connect() as conn:
        return summaries.get(conn, "activity_by_month", version)


@st.cache_resource(show_spinner=False, max_entries=2)
def _payloads(url: str, version: int) -> dict[str, bytes]:
    # Every stored result of this data version, read once: a page looks up a dozen, and each
    # lookup would otherwise open the database file. Shared by every session (never mutated).
    with store_at(url).connect() as conn:
        return summaries.stored_payloads(conn, version)


def stored(url: str, version: int, name: str, params: dict | None = None):
    """A view stored after the last load (``cxdash.jobs.summaries``) or ``summaries.MISSING``: callers
    compute it live on a miss, inside their own cache."""
    found = summaries.decode(name, params, _payloads(url, version))
    if found is summaries.MISSING:  # stored since the payloads were read (the upload page's background refresh)?
        with store_at(url).connect() as conn:
            found = summaries.lookup(conn, name, version, params)
    return found


def view(url: str, version: int, name: str, params: dict):
    """A page computation of ``cxdash.jobs.views``: the stored result when the last load stored this
    view, else computed now with the same function and parameters. Call it inside a cached function."""
    found = stored(url, version, name, params)
    if found is not summaries.MISSING:
        return found
    with store_at(url).connect() as conn:
        return COMPUTATIONS[name](conn, **params)


def sources() -> pd.DataFrame:
    return _sources(database_url(), version())


def overview_headline() -> Headline:
    return _headline(database_url(), version(), churn_name())


def monthly_activity() -> pd.DataFrame:
    return _activity(database_url(), version())
