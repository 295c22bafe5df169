"""Privacy rules that every page and export shares: masking, small-group suppression, consent,
and the salted hashes that stand in for a customer's identifiers once they have been erased.

* **Masking.** Personal fields (name, email, phone, address, free text) are shown in full only
  to the roles whose job needs them (``PERSONAL_DATA_ROLES``: agents talking to the customer and
  admins); everyone else sees ``a***@example.com``-style masks.
* **Small groups.** An aggregate over fewer than ``k`` customers (``CXDASH_MIN_GROUP_SIZE``,
  default 10) can single a person out, so its figures are suppressed.
* **Consent.** A customer is in a marketing export only with an explicit ``consent_marketing``
  of true on every CRM record that states it (a missing or false flag keeps them out).
* **Salted hashes.** ``identifier_hash`` is an HMAC-SHA256 keyed on a secret salt that lives
  outside the repository (``CXDASH_SECRET_SALT``, ``.streamlit/secrets.toml`` or a generated
  file under ``data/``), so the audit log and the suppression list never hold an identifier and
  cannot be reversed by hashing guesses without the salt.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.metrics import ATTRIBUTE_FILTERS
from cxdash.store.database import KIND_TABLES, customer_keys_table
from cxdash.store.suppression import identifier_hash, secret_salt

__all__ = [
    "DEFAULT_MIN_GROUP_SIZE",
    "PERSONAL_COLUMNS",
    "PERSONAL_DATA_ROLES",
    "DifferencingCheck",
    "Refusal",
    "SmallGroups",
    "consented_customers",
    "describe_export",
    "differencing_check",
    "hides_small_groups",
    "identifier_hash",
    "is_personal_column",
    "keep_consented",
    "mask_address",
    "mask_email",
    "mask_frame",
    "mask_name",
    "mask_phone",
    "mask_text",
    "min_group_size",
    "secret_salt",
    "sees_personal_data",
    "small_groups",
    "suppressed_text",
]

log = logging.getLogger(__name__)

DEFAULT_MIN_GROUP_SIZE = 10
PERSONAL_DATA_ROLES = frozenset({"agent", "admin"})
MASK = "***"

# Column names (lower-cased, spaces/dashes as underscores) treated as personal data, by kind of
# mask. Pages name their columns plainly ("name", "email", "Requester Email"), so the check also
# looks at the words in a name.
PERSONAL_COLUMNS: dict[str, str] = {
    "name": "name",
    "full_name": "name",
    "first_name": "name",
    "last_name": "name",
    "customer_name": "name",
    "contact_name": "name",
    "email": "email",
    "e_mail": "email",
    "email_address": "email",
    "requester_email": "email",
    "phone": "phone",
    "phone_number": "phone",
    "mobile": "phone",
    "telephone": "phone",
    "tel": "phone",
    "address": "address",
    "street": "address",
    "street_address": "address",
    "postcode": "address",
    "zip": "address",
    "zip_code": "address",
    "postal_code": "address",
    "notes": "text",
    "note": "text",
    "comment": "text",
    "comments": "text",
    "description": "text",
    "message": "text",
    "body": "text",
    "free_text": "text",
    "attrs": "text",
}
_WORD_KINDS = {
    "email": "email",
    "phone": "phone",
    "address": "address",
    "name": "name",
    "notes": "text",
    "comment": "text",
    "comments": "text",
}


# ----------------------------------------------------------------------------- masks
def mask_email(value: str | None) -> str | None:
    """``ann.lee@example.com`` -> ``a***@example.com`` (the domain stays: it says which company)."""
    if value is None or pd.isna(value) or not str(value).strip():
        return value
    text = str(value).strip()
    local, at, domain = text.partition("@")
    if not at:
        return mask_text(text)
    return f"{local[:1]}{MASK}@{domain}"


def mask_phone(value: str | None) -> str | None:
    """Keep only the last two digits: ``+44 20 7946 0958`` -> ``***58``."""
    if value is None or pd.isna(value) or not str(value).strip():
        return value
    digits = re.sub(r"\D", "", str(value))
    return f"{MASK}{digits[-2:]}" if len(digits) > 2 else MASK


def mask_name(value: str | None) -> str | None:
    """Initials only: ``Ann Lee`` -> ``A. L.``."""
    if value is None or pd.isna(value) or not str(value).strip():
        return value
    return " ".join(f"{w[0].upper()}." for w in str(value).split())


def mask_address(value: str | None) -> str | None:
    """Nothing of a street address survives; a bare masked marker says there was one."""
    if value is None or pd.isna(value) or not str(value).strip():
        return value
    return MASK


def mask_text(value: str | None) -> str | None:
    """Free text can hold anything (names, card numbers): replaced whole, its length hinted."""
    if value is None or pd.isna(value) or not str(value).strip():
        return value
    return f"[{len(str(value))} characters hidden]"


_MASKERS = {"email": mask_email, "phone": mask_phone, "name": mask_name, "address": mask_address, "text": mask_text}


def _column_kind(column: str) -> str | None:
    key = re.sub(r"[\s\-]+", "_", str(column).strip().lower())
    if key in PERSONAL_COLUMNS:
        return PERSONAL_COLUMNS[key]
    for word in key.split("_"):
        if word in _WORD_KINDS and not key.endswith(("_id", "_count", "_share")):
            return _WORD_KINDS[word]
    return None


def is_personal_column(column: str) -> bool:
    return _column_kind(column) is not None


def sees_personal_data(role: str | None) -> bool:
    return role in PERSONAL_DATA_ROLES


def mask_frame(frame: pd.DataFrame, role: str | None) -> pd.DataFrame:
    """A copy of ``frame`` with its personal columns masked unless ``role`` needs them.

    In: any frame. Out: the same shape and column names; personal columns (see
    ``PERSONAL_COLUMNS``) of a role outside ``PERSONAL_DATA_ROLES`` hold masks instead of values.
    """
    if sees_personal_data(role):
        return frame
    out = frame.copy()
    for col in out.columns:
        kind = _column_kind(col)
        if kind is not None:
            masker = _MASKERS[kind]
            out[col] = out[col].astype(object).map(masker).astype("string")
    return out


# ----------------------------------------------------------------------------- small groups
def min_group_size(explicit: int | None = None) -> int:
    """``k``: the smallest group an aggregate may show (``CXDASH_MIN_GROUP_SIZE``, default 10)."""
    if explicit is not None:
        return max(int(explicit), 1)
    raw = os.environ.get("CXDASH_MIN_GROUP_SIZE", "").strip()
    if not raw:
        return DEFAULT_MIN_GROUP_SIZE
    try:
        return max(int(raw), 1)
    except ValueError:
        log.warning("CXDASH_MIN_GROUP_SIZE=%r is not a whole number; using %d", raw, DEFAULT_MIN_GROUP_SIZE)
        return DEFAULT_MIN_GROUP_SIZE


def hides_small_groups(role: str | None) -> bool:
    """Whether ``role`` gets aggregates with small groups suppressed: every role whose job is not
    individual customers. Agents and admins see the customers themselves, so hiding a group of
    three from them protects no one."""
    return not sees_personal_data(role)


def suppressed_text(k: int | None = None) -> str:
    """What a suppressed cell says instead of its figure."""
    return f"suppressed: fewer than {min_group_size(k)} customers"


NOTE_COLUMN = "suppression"
_SECONDARY_TEXT = "suppressed: with the total, its figures would give a smaller group's away"


@dataclass(frozen=True)
class SmallGroups:
    """The rows of one aggregate that describe a group too small to show (see ``small_groups``).

    Masks are positional (one bool per row of ``frame``): ``small`` marks the groups of 1 to k-1
    customers, ``mask`` those plus any group hidden only so that a published total cannot give a
    small one away. ``k`` is None when nothing is hidden (a role that sees individuals), and then
    every view hands the frame back unchanged.
    """

    frame: pd.DataFrame
    k: int | None
    what: str
    small: np.ndarray
    mask: np.ndarray
    groups: np.ndarray  # each row's group (its position without ``by``)
    sizes: np.ndarray  # each row's group size, from the first count column
    disjoint: bool

    def _count(self, rows: np.ndarray) -> int:
        return len(pd.unique(self.groups[rows])) if rows.any() else 0

    @property
    def hidden(self) -> int:
        """How many groups are suppressed."""
        return self._count(self.mask)

    @property
    def shown(self) -> pd.DataFrame:
        """The rows safe to chart or summarise (the suppressed groups left out)."""
        return self.frame if not self.mask.any() else self.frame.loc[~self.mask]

    @property
    def note(self) -> str | None:
        """One sentence for a caption or an export, or None when nothing is suppressed."""
        if not self.mask.any():
            return None
        small, extra = self._count(self.small), self._count(self.mask & ~self.small)
        text = (
            f"Suppressed (fewer than {self.k} customers each): {small:,} of {len(pd.unique(self.groups)):,} {self.what}"
        )
        if extra:
            text += f", and {extra:,} more so that the total cannot give the small one away"
        if self.disjoint:
            _, first = np.unique(self.groups[self.mask], return_index=True)
            total = int(self.sizes[self.mask][first].sum())
            if total >= self.k:
                text += f" (together {total:,} customers)"
        return text + "."

    def blank(self, display: pd.DataFrame | None = None, keep: Iterable[str] = ()) -> pd.DataFrame:
        """``display`` (default: the aggregate itself; any frame with the same rows in the same
        order, such as the page's formatted table) with the suppressed rows' cells emptied except
        the ``keep`` columns (the group's labels), and a ``suppression`` column saying why.
        Number columns stay numbers (whole numbers as nullable ``Int64``), so a chart draws a gap."""
        out = (self.frame if display is None else display).copy()
        if len(out) != len(self.mask):
            raise ValueError(
                f"blank() needs one display row per aggregate row: got {len(out)}, expected {len(self.mask)}"
            )
        if not self.mask.any():
            return out
        keep = set(keep)
        for col in out.columns:
            if col in keep:
                continue
            s = out[col]
            if pd.api.types.is_integer_dtype(s):
                out[col] = s.astype("Int64").mask(self.mask)
            elif pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
                out[col] = s.astype("float64").where(~self.mask, np.nan)
            else:
                out[col] = s.astype(object).where(~self.mask, None)
        # Right after the labels, where a reader looking at the empty cells sees why.
        cols = list(out.columns)
        first = next((i for i, c in enumerate(cols) if c in keep), len(cols))
        at = next((i for i in range(first, len(cols)) if cols[i] not in keep), len(cols)) if first < len(cols) else 0
        out.insert(
            at, NOTE_COLUMN, np.where(self.small, suppressed_text(self.k), np.where(self.mask, _SECONDARY_TEXT, ""))
        )
        return out

    def pooled(
        self, label_column: str, label: str, *, count_column: str = "customers", sum_columns: Sequence[str] = ()
    ) -> pd.DataFrame:
        """The groups that may be shown, then one row standing for all the suppressed ones (their
        labels can describe a person, such as a journey only one customer took). The pooled row
        carries their combined ``count_column`` (and ``sum_columns``) when that is at least k."""
        if not self.mask.any():
            return self.frame
        hidden = self.frame.loc[self.mask]
        total = pd.to_numeric(hidden[count_column], errors="coerce").sum()
        row: dict[str, object] = {c: None for c in self.frame.columns}
        row[label_column] = f"({self.hidden:,} {label} suppressed)"
        if total >= self.k:
            for c in (count_column, *sum_columns):
                row[c] = pd.to_numeric(hidden[c], errors="coerce").sum()
        row[NOTE_COLUMN] = suppressed_text(self.k) + " each"
        if (self.mask & ~self.small).any():
            row[NOTE_COLUMN] += ", and one more so that the total cannot give it away"
        out = pd.concat([self.shown.assign(**{NOTE_COLUMN: ""}), pd.DataFrame([row])], ignore_index=True)
        for c in self.frame.columns:  # the pooled row's gaps must not turn number columns into text
            dtype = self.frame[c].dtype
            if pd.api.types.is_integer_dtype(dtype):
                out[c] = pd.to_numeric(out[c], errors="coerce").astype("Int64")
            elif pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
                out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
        return out


def small_groups(
    frame: pd.DataFrame,
    k: int | None,
    *,
    what: str = "groups",
    count_columns: Sequence[str] = ("customers",),
    by: str | None = None,
    disjoint: bool = False,
) -> SmallGroups:
    """Find the groups of an aggregate that hold 1 to k-1 customers.

    In: one row per group with ``count_columns`` (distinct customers; a row is small when any of
    them holds 1 to k-1: an empty group singles no one out), or with ``by`` several rows per
    group (a funnel's steps per segment), a group's count being its largest. ``k`` None: nothing
    is suppressed. ``disjoint``: the groups partition the customers (signup months, segments),
    so the note may give the hidden groups' combined size, and when exactly one group is small
    the next smallest is hidden too: a published total minus the shown groups would otherwise
    give the small one's size away.
    Out: a ``SmallGroups`` with the masks and the views a page needs (``shown``, ``blank``,
    ``pooled``, ``note``).
    """
    n = len(frame)
    if n == 0 or k is None:
        none = np.zeros(n, dtype=bool)
        return SmallGroups(frame, None, what, none, none, np.arange(n), np.zeros(n), disjoint)
    k = min_group_size(k)
    counts = pd.concat([pd.to_numeric(frame[c], errors="coerce") for c in count_columns], axis=1).fillna(0)
    groups = np.arange(n) if by is None else frame[by].astype("string").fillna("").to_numpy()
    if by is not None:
        counts = counts.groupby(groups).transform("max")
    small = ((counts > 0) & (counts < k)).any(axis=1).to_numpy()
    sizes = counts.iloc[:, 0].to_numpy()
    mask = small
    if disjoint and len(pd.unique(groups[small])) == 1:
        rest = pd.Series(sizes[~small], index=groups[~small])
        rest = rest[rest > 0]
        if len(rest):
            mask = small | (groups == rest.groupby(level=0).max().idxmin())
    return SmallGroups(frame, k, what, small, mask, groups, sizes, disjoint)


# ----------------------------------------------------------------------------- consent
def consented_customers(conn: Connection) -> set[str]:
    """The stitched customers (``cx_id``) who may receive marketing.

    A customer qualifies when at least one CRM record says ``consent_marketing = true`` and
    none says false; a customer with no flag at all does not (consent is opt-in).
    """
    t, im = KIND_TABLES["customers"], customer_keys_table
    yes = sa.func.sum(sa.case((t.c.consent_marketing.is_(True), 1), else_=0))
    no = sa.func.sum(sa.case((t.c.consent_marketing.is_(False), 1), else_=0))
    keys = (
        sa.select(t.c.cx_key)
        .where(t.c.cx_key.is_not(None))
        .group_by(t.c.cx_key)
        .having(sa.and_(yes > 0, no == 0))
        .subquery("consenting")
    )  # grouped on the rows' integer key; the ids are joined on the (smaller) result
    q = sa.select(im.c.cx_id).select_from(keys.join(im, im.c.cx_key == keys.c.cx_key))
    return set(conn.execute(q).scalars())


def describe_export(
    frame: pd.DataFrame,
    *,
    what: str,
    masked: Iterable[str] = (),
    consent_left_out: int | None = None,
    suppressed: str | None = None,
) -> str:
    """What an exported file holds, in a few plain sentences for the page and the audit log:
    the rows, which personal columns are masked or in full, whether the marketing-consent filter
    ran (and how many it left out), and what small-group suppression hid."""
    parts = [f"{len(frame):,} rows: {what}."]
    personal = [str(c) for c in frame.columns if is_personal_column(str(c))]
    masked = [c for c in personal if c in set(masked)]
    full = [c for c in personal if c not in masked]
    if masked:
        parts.append(f"Masked: {', '.join(masked)}.")
    if full:
        parts.append(f"Personal fields in full: {', '.join(full)}.")
    if not personal:
        parts.append("No personal fields (names, emails, phones, addresses).")
    if consent_left_out is not None:
        parts.append(f"Only customers with marketing consent: {consent_left_out:,} without it left out.")
    if suppressed:
        parts.append(suppressed)
    return " ".join(parts)


def keep_consented(
    frame: pd.DataFrame, allowed: Collection[str], *, cx_column: str = "cx_id"
) -> tuple[pd.DataFrame, int]:
    """The rows of ``frame`` whose ``cx_column`` is in ``allowed`` (see ``consented_customers``),
    and how many rows were left out. The UI passes a set cached on the data version."""
    values = frame[cx_column].astype("string").astype(object)
    if isinstance(allowed, pd.Index):
        # a cached index keeps its hash table: one vectorised probe per row, nothing rebuilt
        keep = pd.Series(allowed.get_indexer(values.where(values.notna(), None)) >= 0, index=frame.index, dtype=bool)
    else:
        # look each row up in the (large) set: Series.isin(set) would rebuild a hash table of
        # every consenting customer to filter a page of rows
        contains = allowed.__contains__ if isinstance(allowed, (set, frozenset, dict)) else set(allowed).__contains__
        keep = pd.Series([isinstance(v, str) and contains(v) for v in values], index=frame.index, dtype=bool)
    return frame.loc[keep].reset_index(drop=True), int((~keep).sum())


# ----------------------------------------------------------------------------- differencing
@dataclass(frozen=True)
class Refusal:
    """Why one filtered view may not be shown: ``dimension`` is the filter (``region``), ``values``
    what it kept (empty for the view as a whole), ``customers`` the group that would be exposed
    (1 to k-1) and ``kind`` which group that is: ``view`` (the customers in view), ``complement``
    (the customers this filter removes from the otherwise-same view) or ``value`` (the customers
    one kept value adds to the view)."""

    dimension: str | None
    values: tuple[str, ...]
    customers: int
    kind: str


@dataclass(frozen=True)
class DifferencingCheck:
    """The outcome of ``differencing_check``: the view's size, the size of each filter's
    complement, and the groups that are too small (empty: the view may be shown)."""

    k: int | None
    customers: int
    complements: dict[str, int]
    refusals: tuple[Refusal, ...]

    @property
    def allowed(self) -> bool:
        return not self.refusals


def _exposed(n: int, k: int) -> bool:
    return 0 < n < k


def differencing_check(conn: Connection, filters, k: int | None) -> DifferencingCheck:
    """Whether a view filtered by ``filters`` (``cxdash.metrics.Filters``) may be shown to a role whose
    aggregates hide groups under ``k`` customers (None: a role that sees individuals; always allowed).

    Suppressing the small view alone is not enough: two allowed views that differ by one filter
    give the customers between them away by subtraction (21 customers minus 20 is one person's
    revenue). So the view is shown only when each of these holds at least ``k`` customers or none:

    * the view itself;
    * for each active attribute filter, its complement: the customers that filter removes from
      the otherwise-same view (the view with that filter dropped, minus the view);
    * for a filter that keeps several values and removes someone, each value's customers within
      the otherwise-same view (else "R1, R5" minus "R1" would give R5's group away while both
      views and both complements are large). A filter that removes no one is the view without
      it, so its values are not judged: any narrower choice has its own complement checked.

    This closes the differences of two views that differ in one filter. Views that differ in
    several filters at once can in principle still be combined into a "tracker" (Denning,
    1979); the README says so.

    The ``department`` filter restricts activity, not the customer set, so it has no complement in
    customers and is not checked. Counts are of stitched customers with their CRM attributes as the
    KPI queries read them (a customer's largest value per attribute), all in one query inside the
    database: one ``SUM(CASE ...)`` per dimension and per kept value, over one grouped scan of the
    CRM table.

    In: an open connection, the filters, k. Out: a ``DifferencingCheck`` (``allowed``, the counts,
    and the refusals in filter order).
    """
    crm = KIND_TABLES["customers"]
    active = {name: tuple(getattr(filters, name)) for name in ATTRIBUTE_FILTERS if getattr(filters, name)}
    if k is None or not active:
        return DifferencingCheck(k, -1 if k is None else 0, {}, ())
    k = min_group_size(k)
    cols = {name: ATTRIBUTE_FILTERS[name] for name in active}
    per_customer = (
        sa.select(crm.c.cx_key, *[sa.func.max(crm.c[col]).label(col) for col in cols.values()])
        .where(crm.c.cx_key.is_not(None))
        .group_by(crm.c.cx_key)
        .subquery("filter_attributes")
    )
    keep = {name: per_customer.c[col].in_(active[name]) for name, col in cols.items()}

    def count(*conditions) -> sa.ColumnElement:
        return sa.func.coalesce(sa.func.sum(sa.case((sa.and_(*conditions), 1), else_=0)), 0)

    labels: list[tuple[str, str | None, str | None]] = [("view", None, None)]
    measures = [count(*keep.values()).label("c0")]
    for name in active:
        others = [cond for other, cond in keep.items() if other != name]
        labels.append(("without", name, None))
        measures.append(
            count(*others).label(f"c{len(measures)}") if others else sa.func.count().label(f"c{len(measures)}")
        )
        if len(active[name]) > 1:
            for value in active[name]:
                labels.append(("value", name, value))
                measures.append(count(*others, per_customer.c[cols[name]] == value).label(f"c{len(measures)}"))
    row = conn.execute(sa.select(*measures).select_from(per_customer)).one()
    counts = [int(v or 0) for v in row]
    view = counts[0]
    refusals: list[Refusal] = []
    if _exposed(view, k):
        refusals.append(Refusal(None, (), view, "view"))
    complements: dict[str, int] = {}
    for (kind, name, value), n in zip(labels[1:], counts[1:], strict=True):
        if kind == "without":
            complements[name] = n - view
            if _exposed(n - view, k):
                refusals.append(Refusal(name, active[name], n - view, "complement"))
        elif complements[name] and _exposed(n, k):
            # a filter that removes no one is the view without it: dropping a value from it is
            # already judged by the narrower view's own complement
            refusals.append(Refusal(name, (value,), n, "value"))
    return DifferencingCheck(k, view, complements, tuple(refusals))
