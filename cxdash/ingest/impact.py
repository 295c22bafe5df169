"""What a load would change, worked out before anything is stored.

``load_impact`` takes the identifiers on a file's valid rows and looks them up in the store's
identity map: how many rows belong to customers already known (a CRM record), how many to
identifiers other sources already hold, how many match nobody, how many new customers the load
would add, and how the headline customer count would move. No streamlit here; the upload page and
``python -m cxdash ingest --check`` both show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.store.database import KIND_TABLES, bulk_insert, identity_map_table

__all__ = ["LoadImpact", "load_impact"]

_IDS = sa.Table(
    "impact_ids",
    sa.MetaData(),
    sa.Column("line", sa.BigInteger),
    sa.Column("primary_key", sa.String),
    sa.Column("id_key", sa.String),
    prefixes=["TEMPORARY"],
)


@dataclass
class LoadImpact:
    """The effect of loading one file, as counts.

    ``rows``: valid rows with an identifier; ``rows_known``: rows whose identifiers reach a CRM
    customer already stored; ``rows_seen``: rows matching identifiers other sources hold but no
    CRM customer; ``rows_new``: rows matching nothing stored; ``customers_matched``: distinct known
    customers the rows reach; ``new_customers``: distinct new identities (by each row's first
    identifier) among rows matching nothing; ``customers_before`` / ``customers_after``: the
    headline customer count now and after the load.
    """

    kind: str
    rows: int = 0
    rows_known: int = 0
    rows_seen: int = 0
    rows_new: int = 0
    customers_matched: int = 0
    new_customers: int = 0
    customers_before: int = 0
    customers_after: int = 0
    store_has_customers: bool = False
    store_has_crm: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def matches_nobody(self) -> bool:
        """True when the store already has customers and not one row of the file reaches any of them."""
        return self.store_has_customers and self.rows > 0 and self.rows_known == 0 and self.rows_seen == 0

    def lines(self) -> list[str]:
        """The impact in sentences, most important first."""

        def rows(n: int) -> str:
            return f"{n:,} valid row{'' if n == 1 else 's'}"

        out = []
        if not self.store_has_customers:
            out.append(f"The store holds no customers yet: all {rows(self.rows)} are new.")
        elif self.matches_nobody:
            who = "The one valid row matches" if self.rows == 1 else f"None of the {rows(self.rows)} matches"
            out.append(
                f"{who} {'no' if self.rows == 1 else 'a'} customer already stored: check that the identifier "
                "columns are mapped to the right fields before loading."
            )
        else:
            out.append(
                f"{self.rows_known:,} of the {rows(self.rows)} match {self.customers_matched:,} customer"
                f"{'' if self.customers_matched == 1 else 's'} already known"
                + (
                    f"; {self.rows_seen:,} match identifiers other sources hold (no CRM record)"
                    if self.rows_seen
                    else ""
                )
                + f"; {self.rows_new:,} match nobody."
            )
        out.append(f"New customers: {self.new_customers:,}.")
        change = self.customers_after - self.customers_before
        out.append(f"Customers (headline): {self.customers_before:,} -> {self.customers_after:,} ({change:+,}).")
        out.extend(self.notes)
        return out

    def to_dict(self) -> dict:
        return {
            k: getattr(self, k)
            for k in (
                "kind",
                "rows",
                "rows_known",
                "rows_seen",
                "rows_new",
                "customers_matched",
                "new_customers",
                "customers_before",
                "customers_after",
                "store_has_customers",
                "matches_nobody",
            )
        }


def _has_rows(conn: Connection, table: sa.Table) -> bool:
    return conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first() is not None


def load_impact(conn: Connection, kind: str, ids: pd.DataFrame) -> LoadImpact:
    """The impact of loading rows of ``kind`` whose identifiers are ``ids``.

    ``ids`` has one row per identifier on a file row: ``line`` (the file line), ``primary_key``
    (the row's first identifier, ``field:value``) and ``id_key`` (one of its identifiers,
    ``field:value``, normalised as stored). The lookup runs in the database (a temporary table
    joined to ``identity_map``); nothing is written outside the caller's transaction, and the
    temporary table is dropped before returning.
    """
    from cxdash.metrics import headline  # metrics imports the store; keep this module light to import

    impact = LoadImpact(kind)
    impact.customers_before = headline(conn).customers
    impact.store_has_crm = _has_rows(conn, KIND_TABLES["customers"])
    impact.store_has_customers = _has_rows(conn, identity_map_table)
    _IDS.drop(conn, checkfirst=True)
    _IDS.create(conn)
    try:
        bulk_insert(conn, _IDS, ids[["line", "primary_key", "id_key"]])
        im = identity_map_table
        per_row = (
            sa.select(
                _IDS.c.line,
                sa.func.min(_IDS.c.primary_key).label("primary_key"),
                sa.func.max(sa.case((im.c.known.is_(True), 1), else_=0)).label("known"),
                sa.func.max(sa.case((im.c.id_key.is_not(None), 1), else_=0)).label("seen"),
                sa.func.min(sa.case((im.c.known.is_(True), im.c.cx_id))).label("cx_id"),
            )
            .select_from(_IDS.outerjoin(im, im.c.id_key == _IDS.c.id_key))
            .group_by(_IDS.c.line)
            .subquery()
        )
        row = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(per_row.c.known), 0),
                sa.func.coalesce(sa.func.sum(sa.case(((per_row.c.seen == 1) & (per_row.c.known == 0), 1), else_=0)), 0),
                sa.func.count(sa.distinct(per_row.c.cx_id)),
                sa.func.count(sa.distinct(sa.case((per_row.c.seen == 0, per_row.c.primary_key)))),
                sa.func.count(sa.distinct(sa.case((per_row.c.known == 0, per_row.c.primary_key)))),
            )
        ).one()
    finally:
        _IDS.drop(conn, checkfirst=True)
    rows, known, seen, matched, unseen_ids, not_known_ids = (int(x or 0) for x in row)
    impact.rows, impact.rows_known, impact.rows_seen = rows, known, seen
    impact.rows_new = rows - known - seen
    impact.customers_matched = matched
    # The headline counts CRM customers once a CRM is loaded, else every stitched identity.
    if kind == "customers":
        impact.new_customers = not_known_ids
        if impact.store_has_crm:
            impact.customers_after = impact.customers_before + not_known_ids
        else:
            impact.customers_after = not_known_ids
            if impact.customers_before:
                impact.notes.append(
                    "This is the first customer table: from now on the headline counts its customers only; "
                    "people other sources know but this table does not stop counting as customers."
                )
    else:
        impact.new_customers = 0 if impact.store_has_crm else unseen_ids
        impact.customers_after = impact.customers_before + impact.new_customers
        if impact.store_has_crm and impact.rows_new:
            impact.notes.append(
                ("1 row matches" if impact.rows_new == 1 else f"{impact.rows_new:,} rows match")
                + " no CRM customer: they load as unmatched and do not change the customer count."
            )
    return impact
