"""Long lists shown a page at a time: a page number input and the page's rows. Only the page is
formatted and sent to the browser (a step of the journey map at 1M customers holds 300,000)."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from cxdash.ui.formatting import count

__all__ = ["PAGE_SIZE", "page_of", "page_picker"]

PAGE_SIZE = 50  # rows a page


def page_picker(container, frame: pd.DataFrame, key: str, label: str) -> tuple[pd.DataFrame, str]:
    """A page number input (``label (of N)``, state ``key``) in ``container`` for ``frame`` shown
    ``PAGE_SIZE`` rows a page, back to page 1 when the frame shrank below the page kept; out:
    ``page_of``'s rows and span. Only the page is formatted and sent to the browser."""
    pages = max(1, math.ceil(len(frame) / PAGE_SIZE))
    if int(st.session_state.get(key, 1)) > pages:
        st.session_state[key] = 1
    container.number_input(f"{label} (of {count(pages)})", 1, pages, key=key)
    return page_of(frame, st.session_state[key], PAGE_SIZE)


def page_of(frame: pd.DataFrame, page: int, size: int = PAGE_SIZE) -> tuple[pd.DataFrame, str]:
    """Rows of one page (1-based) and ``"Customers 51–100 of 1,566"``."""
    n = len(frame)
    pages = max(1, math.ceil(n / size))
    page = min(max(int(page), 1), pages)
    lo, hi = (page - 1) * size, min(page * size, n)
    return frame.iloc[lo:hi], f"Customers {count(lo + 1 if n else 0)}–{count(hi)} of {count(n)}"
