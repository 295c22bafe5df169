"""Cached access to the store for the pages. Caches are keyed on the data version, so a new
load shows up on the next rerun and nothing stale is served."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cxdash.config import database_url
from cxdash.kpis import Headline, headline
from cxdash.overview import activity_by_month, data_version, source_summary
from cxdash.store import Store, open_store


@st.cache_resource(show_spinner=False)
def _store(url: str) -> Store:
    return open_store(url)


def store() -> Store:
    return _store(database_url())


def version() -> int:
    with store().connect() as conn:
        return data_version(conn)


@st.cache_data(show_spinner=False, max_entries=8)
def _sources(url: str, version: int) -> pd.DataFrame:
    with _store(url).connect() as conn:
        return source_summary(conn)


@st.cache_data(show_spinner=False, max_entries=8)
def _headline(url: str, version: int) -> Headline:
    with _store(url).connect() as conn:
        return headline(conn)


@st.cache_data(show_spinner=False, max_entries=8)
def _activity(url: str, version: int) -> pd.DataFrame:
    with _store(url).connect() as conn:
        return activity_by_month(conn)


def sources() -> pd.DataFrame:
    return _sources(database_url(), version())


def overview_headline() -> Headline:
    return _headline(database_url(), version())


def monthly_activity() -> pd.DataFrame:
    return _activity(database_url(), version())
