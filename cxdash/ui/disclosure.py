"""What leaves the screen: aggregates with small groups suppressed for the viewer's role, marketing
exports limited to customers who consented, and every download written to the audit log.

Pages call these instead of ``st.download_button`` and instead of showing an aggregate as it
comes from the database:

* ``group_floor()``: k (``CXDASH_MIN_GROUP_SIZE``, default 10) for a role that may not see
  individuals (executive, journey owner, ops), None for agents and admins, whose job is the
  customers themselves. Pass it to ``small_groups``.
* ``protect(name, frame)``: the aggregate ``name`` (declared once in ``AGGREGATES``: what its
  groups are called, which columns count customers) with the groups the signed-in role may not
  see marked (``cxdash.governance.privacy.small_groups``); chart ``.shown``, table ``.blank(...)``
  or ``.pooled(...)``, caption ``.note``. Pages never pick k or the counting themselves.
* ``consented(frame)``: only the customers with marketing consent, and how many were left out.
* ``download(...)``: ``st.download_button`` whose download records who exported which file, how
  many rows and what it holds; the sentence about what it holds is shown under the button.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from cxdash.config import database_url
from cxdash.governance import privacy
from cxdash.governance.privacy import SmallGroups
from cxdash.jobs import summaries
from cxdash.ui import data
from cxdash.ui.auth import current_role, export_recorder, record_export

__all__ = ["AGGREGATES", "Aggregate", "SmallGroups", "consented", "describe", "download", "group_floor", "protect"]


def group_floor() -> int | None:
    """k for the signed-in role, or None when its aggregates are not suppressed."""
    return privacy.min_group_size() if privacy.hides_small_groups(current_role()) else None


@dataclass(frozen=True)
class Aggregate:
    """How one aggregate's groups are counted for suppression: ``what`` names the groups in the
    note ("3 hotspots of fewer than 10 customers are hidden"), ``count_columns`` hold distinct
    customers, ``by`` groups several rows into one group, ``disjoint`` says no customer is in two
    groups (so a total can give a hidden group away; see ``privacy.small_groups``)."""

    what: str
    count_columns: tuple[str, ...] = ("customers",)
    by: str | None = None
    disjoint: bool = False


# Every aggregate the pages show in groups, declared once.
AGGREGATES: dict[str, Aggregate] = {
    "conflicts": Aggregate("cohorts"),
    "trends": Aggregate("months", count_columns=("customers", "active_customers")),
    "signup_cohorts": Aggregate("signup cohorts", disjoint=True),
    "holdout": Aggregate("purchase-frequency groups", disjoint=True),
    "hotspots": Aggregate("hotspots"),
    "transitions": Aggregate("transitions"),
    "variants": Aggregate("journeys", disjoint=True),
    "funnel": Aggregate("segments", by="segment", disjoint=True),
}


def protect(name: str, frame: pd.DataFrame) -> SmallGroups:
    """The aggregate ``name`` (a key of ``AGGREGATES``) as the signed-in role may see it."""
    spec = AGGREGATES[name]
    return privacy.small_groups(
        frame, group_floor(), what=spec.what, count_columns=spec.count_columns, by=spec.by, disjoint=spec.disjoint
    )


@st.cache_resource(show_spinner=False, max_entries=2)
def _consented(url: str, version: int) -> pd.Index:
    # A resource, not cache_data: the index can hold a million ids and is never mutated, so it is
    # shared rather than copied on every rerun, and its hash table is built once. Keyed on the
    # data version: a load or an erasure (both move it) is seen at once.

    with data.store_at(url).connect() as conn:  # stored after each load (a million ids take seconds to gather)
        ids = summaries.get(conn, "consented_customers", version)["cx_id"].dropna()
    return pd.Index(ids.astype(object).unique(), dtype=object)


def consented_set(url: str, version: int) -> pd.Index:
    """The customers with marketing consent (``privacy.consented_customers``), shared across reruns."""
    return _consented(url, version)


def consented(frame: pd.DataFrame, *, cx_column: str = "cx_id") -> tuple[pd.DataFrame, int]:
    """The rows of customers with marketing consent (see ``privacy.consented_customers``) and how
    many rows were left out."""
    if frame.empty:
        return frame, 0
    return privacy.keep_consented(frame, _consented(database_url(), data.version()), cx_column=cx_column)


def describe(
    frame: pd.DataFrame,
    *,
    what: str,
    masked: Iterable[str] = (),
    consent_left_out: int | None = None,
    suppressed: str | None = None,
) -> str:
    """What an exported file holds (``privacy.describe_export``)."""
    return privacy.describe_export(
        frame, what=what, masked=masked, consent_left_out=consent_left_out, suppressed=suppressed
    )


def download(
    label: str,
    payload: bytes | str | Callable[[], bytes],
    file_name: str,
    *,
    key: str,
    what: str,
    rows: int | None = None,
    note: str | None = None,
    mime: str = "text/csv",
    where: DeltaGenerator | None = None,
    show_note: bool = True,
    **kwargs,
) -> bool:
    """An audited ``st.download_button``: the download writes ``export`` to the audit log with the
    file name, ``what`` it is, ``rows`` and ``note`` (what it holds: masking, consent, suppression;
    never personal data). ``note`` is also shown under the button unless ``show_note`` is False.

    ``payload`` may be a callable, run only when someone downloads (charts as PNG, a cohort). Such
    a button does not rerun the page: the browser fetches the built file in a request of its own,
    and a rerun started by the same click could drop Streamlit's answer to it (each run clears the
    messages not yet sent to the browser), leaving the button spinning and nothing downloaded. The
    audit entry is then written when the file is built. Returns whether the button was clicked in
    this run (always False for a callable ``payload``)."""
    where = where if where is not None else st
    if callable(payload):
        payload = _recorded_when_built(payload, export_recorder(file_name, rows, what=what, contains=note))
        on_click, args, record_kwargs = "ignore", None, None
    else:
        on_click, args, record_kwargs = record_export, (file_name, rows), {"what": what, "contains": note}
    clicked = where.download_button(
        label,
        payload,
        file_name=file_name,
        mime=mime,
        key=key,
        on_click=on_click,
        args=args,
        kwargs=record_kwargs,
        **kwargs,
    )
    if note and show_note:
        where.caption(note)
    return clicked


def _recorded_when_built(build: Callable[[], bytes], record: Callable[[], None]) -> Callable[[], bytes]:
    """``build``, then ``record`` once the file is there (a file that fails to build was not exported)."""

    def build_and_record() -> bytes:
        built = build()
        record()
        return built

    return build_and_record
