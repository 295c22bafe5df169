"""Who a source belongs to: its department and its owner.

Each loaded source has a ``department`` (the part of the company its rows belong to on journeys,
handoffs and hotspots, where a row does not say so itself) and an ``owner`` (the team or person
to call about it). Both are set at upload, default to the kind's department
(``cxdash.store.kinds``: a web-events source is "web", a product-usage log loaded as events can say
"product"), are kept across re-loads, and are edited here (Data health page, ``python -m cxdash
sources set``), each change audited.
"""

from __future__ import annotations

import logging
import re

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.store import audit
from cxdash.store.database import KIND_TABLES, Store, sources_table
from cxdash.store.kinds import KINDS
from cxdash.store.version import record_change

__all__ = [
    "DEPARTMENT_NAMES",
    "department_code",
    "department_name",
    "department_owners",
    "known_departments",
    "responsible",
    "set_source_owner",
    "source_owners",
]

log = logging.getLogger(__name__)


def source_owners(conn: Connection) -> pd.DataFrame:
    """Out: ``name, kind, department, owner``, one row per source, by name."""
    s = sources_table
    rows = conn.execute(sa.select(s.c.name, s.c.kind, s.c.department, s.c.owner).order_by(s.c.name)).fetchall()
    return pd.DataFrame([tuple(r) for r in rows], columns=["name", "kind", "department", "owner"])


def department_owners(conn: Connection) -> dict[str, str]:
    """``{department: owner}``: who to call about a department's steps. When several sources of
    one department name different owners, all are named (sorted, joined by ", ")."""
    frame = source_owners(conn).dropna(subset=["department", "owner"])
    return {d: ", ".join(sorted(set(g["owner"]))) for d, g in frame.groupby("department", sort=True)}


# Department codes as a person reads them (the kinds' defaults and the demo's ticket teams).
DEPARTMENT_NAMES = {
    "billing": "Billing",
    "finance": "Finance",
    "marketing": "Marketing",
    "product": "Product",
    "sales": "Sales",
    "support": "Customer support",
    "tech": "Technology",
    "success": "Customer success",  # the churn kind's department
    "web": "Web / digital",
    "unknown": "Unknown department",
}
# "unknown" stands for a department nobody recorded (the journeys' placeholder): never offered as a choice.
NOT_RECORDED = "unknown"


def department_name(code: str) -> str:
    """``"tech"`` -> ``"Technology (tech)"``: the department spelled out with the code the data uses;
    a code not in ``DEPARTMENT_NAMES`` is shown as written."""
    name = DEPARTMENT_NAMES.get(str(code).strip().lower())
    return f"{name} ({code})" if name else str(code)


def known_departments(conn: Connection) -> list[str]:
    """The departments the company is known to have, as codes, sorted by the words
    ``department_name`` gives them (``"billing", "finance", ..., "support", ...``).

    Known are: the kinds' own departments (``cxdash.store.kinds``), the ones this module names in words
    (``DEPARTMENT_NAMES``, bar the placeholder ``"unknown"``), the sources' departments, and the ones
    rows name themselves (the kinds with a ``department`` field: an event's or a ticket's team), as
    stored. Blank and missing values are left out; a stored ``"unknown"`` is kept (it is data)."""
    stored = [sa.select(sources_table.c.department.label("department"))]
    for kind, table in KIND_TABLES.items():
        if "department" in KINDS[kind].field_names:
            stored.append(sa.select(table.c.department.label("department")))
    every = sa.union(*stored).subquery("departments")  # union: each value once
    rows = conn.execute(sa.select(every.c.department).where(every.c.department.is_not(None))).scalars()
    codes = {k.department for k in KINDS.values()} | (set(DEPARTMENT_NAMES) - {NOT_RECORDED})
    codes |= {str(r) for r in rows if str(r).strip()}
    return sorted(codes, key=lambda code: (department_name(code).lower(), code))


# A department's words as a person may type them ("customer support", "technology (tech)") -> its code.
_CODE_OF_WORDS = {
    **{words.lower(): code for code, words in DEPARTMENT_NAMES.items()},
    **{department_name(code).lower(): code for code in DEPARTMENT_NAMES},
}


def department_code(text: str) -> str:
    """A department typed in by a person, as the code the data and the pages use: trimmed,
    lower-case, runs of spaces made one (``" Customer  Care "`` -> ``"customer care"``); the
    words of a department named in ``DEPARTMENT_NAMES`` give its code (``"Customer support"`` ->
    ``"support"``, ``"Technology (tech)"`` -> ``"tech"``), so naming a known department in words does
    not start a new one. Raises ``ValueError`` when nothing but spaces is given."""
    code = re.sub(r"\s+", " ", str(text or "")).strip().lower()
    if not code:
        raise ValueError(
            "the new department has no name: type it (for example field service), or choose one from the list"
        )
    return _CODE_OF_WORDS.get(code, code)


def responsible(department: str, owners: pd.DataFrame) -> tuple[str, bool]:
    """Who to call about a department's steps, from the sources' owners (``source_owners``).

    Out: ``(text, recorded)``. When sources of ``department`` name owners: their owners, an owner
    that is itself a department code spelled out as that department's team ("Customer support team
    (support)"), and the sources they own, e.g. ``"Billing ops (Lee): billing, subscriptions"``;
    ``recorded`` True. When no loaded source belongs to the department (its rows name it
    themselves, e.g. tickets routed to "tech"): ``"Technology (tech): owner not recorded"``,
    ``recorded`` False."""
    rows = owners[(owners["department"] == department) & owners["owner"].notna()] if len(owners) else owners
    if rows is None or not len(rows):
        return f"{department_name(department)}: owner not recorded", False
    parts = []
    for owner, group in rows.groupby("owner", sort=True):
        who = f"{DEPARTMENT_NAMES[owner.lower()]} team ({owner})" if owner.lower() in DEPARTMENT_NAMES else owner
        names = sorted(group["name"])
        owned = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        parts.append(f"{who}, owner of the {owned} source{'s' if len(names) > 1 else ''}")
    return "; ".join(parts), True


def set_source_owner(
    store: Store, source: str, *, department: str | None = None, owner: str | None = None, actor: str = "unknown"
) -> dict[str, str | None]:
    """Change ``source``'s department and/or owner (a None argument leaves that one as it is;
    blank text is refused; the department is stored as its code, ``department_code``). Records a
    ``source_owner_changed`` audit entry with the old and new values. A new department also moves the
    data version (a ``department`` change, ``cxdash.store.version``): the stored views and the pages'
    caches name departments, and the caller refreshes them (``cxdash.jobs.after_load``). Out: the
    source's ``{"department", "owner"}`` after the change.
    Raises ``KeyError`` for an unknown source, ``ValueError`` for blank values or nothing to change.
    """
    changes = {k: v for k, v in (("department", department), ("owner", owner)) if v is not None}
    if not changes:
        raise ValueError("give a department, an owner or both")
    for key, value in changes.items():
        if not str(value).strip():
            raise ValueError(f"the {key} cannot be blank: name a team or a person")
        changes[key] = str(value).strip()
    if "department" in changes:  # as the Data health form stores it: "Customer Support" is support
        changes["department"] = department_code(changes["department"])
    s = sources_table
    with store.begin() as conn:
        before = conn.execute(sa.select(s.c.department, s.c.owner).where(s.c.name == source)).first()
        if before is None:
            known = [r[0] for r in conn.execute(sa.select(s.c.name).order_by(s.c.name))]
            raise KeyError(f"no source named {source!r}; loaded sources: {known or 'none yet'}")
        conn.execute(s.update().where(s.c.name == source).values(**changes))
        if changes.get("department", before.department) != before.department:
            # the journeys, handoffs, hotspots and conflicts name departments: the stored views and
            # the pages' caches (keyed by the data version) must not keep the old one
            record_change(conn, "department")
    after = {"department": changes.get("department", before.department), "owner": changes.get("owner", before.owner)}
    audit.record(
        store,
        actor,
        "source_owner_changed",
        {
            "source": source,
            "before": {"department": before.department, "owner": before.owner},
            "after": after,
        },
    )
    log.info("source %s: %s", source, after)
    return after
