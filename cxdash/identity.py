"""Identity stitching: link every source's identifiers into one customer.

Nodes are normalised identifiers written ``field:value`` (``email:ann@example.com``). Every row
links the identifiers it carries (a CRM row links customer id, account, email and phone; a
logged-in web event links its cookie to an email). Customers are the connected components.
An identifier linked to more distinct identifiers than ``hub_degree`` (a helpdesk's own
address, a placeholder phone) would merge strangers: it is reported as a hub and not used
to link anything.

Each component gets a ``cx_id``: the CRM customer id when the component holds a CRM record
(``known``), otherwise its most specific identifier.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sqlalchemy.engine import Connection

from cxdash.kinds import IDENTITY_FIELDS, KINDS
from cxdash.store import KIND_TABLES, bulk_insert, identity_hubs_table, identity_map_table, read_frame

__all__ = ["DEFAULT_HUB_DEGREE", "rebuild_identity_map", "stitch"]

log = logging.getLogger(__name__)

DEFAULT_HUB_DEGREE = 25


def _key_expr(field: str, col) -> sa.ColumnElement:
    return sa.literal(f"{field}:") + col


def _edges_and_nodes(conn: Connection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Distinct (a, b) identifier links and distinct nodes (with whether they are CRM records)."""
    edge_selects, node_selects = [], []
    for kind_name, kind in KINDS.items():
        t = KIND_TABLES[kind_name]
        is_crm = sa.literal(kind_name == "customers")
        node_selects.append(sa.select(t.c.id_key.label("node"), is_crm.label("crm")).where(t.c.id_key.is_not(None)))
        for f in kind.identity_fields:
            key = _key_expr(f, t.c[f])
            edge_selects.append(
                sa.select(t.c.id_key.label("a"), key.label("b")).where(t.c[f].is_not(None), t.c.id_key != key)
            )
    nodes = read_frame(conn, sa.union(*node_selects))
    edges = read_frame(conn, sa.union(*edge_selects))
    return edges, nodes


def stitch(edges: pd.DataFrame, nodes: pd.DataFrame, hub_degree: int = DEFAULT_HUB_DEGREE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Connected components of the identity graph.

    In: ``edges`` (a, b) and ``nodes`` (node, crm: bool, True for identifiers that are a CRM
    record's primary key). Out: ``(id_map, hubs)`` with id_map columns ``id_key, cx_id, known``
    (one row per node) and hubs ``id_key, degree``.
    """
    all_nodes = pd.unique(pd.concat([nodes["node"], edges["a"], edges["b"]], ignore_index=True).astype(str))
    codes = pd.Index(all_nodes)
    n = len(codes)
    if n == 0:
        return pd.DataFrame(columns=["id_key", "cx_id", "known"]), pd.DataFrame(columns=["id_key", "degree"])
    a = codes.get_indexer(edges["a"].astype(str))
    b = codes.get_indexer(edges["b"].astype(str))
    pairs = pd.DataFrame({"a": np.minimum(a, b), "b": np.maximum(a, b)}).drop_duplicates()
    degree = np.bincount(np.concatenate([pairs["a"].to_numpy(), pairs["b"].to_numpy()]), minlength=n)
    crm = codes.isin(nodes.loc[nodes["crm"].astype(bool), "node"].astype(str))
    hub = (degree > hub_degree) | _ambiguous(pairs, crm, n)
    keep = ~(hub[pairs["a"].to_numpy()] | hub[pairs["b"].to_numpy()])
    pa_, pb_ = pairs["a"].to_numpy()[keep], pairs["b"].to_numpy()[keep]
    graph = coo_matrix((np.ones(len(pa_), dtype=np.int8), (pa_, pb_)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)

    frame = pd.DataFrame({"id_key": codes.astype(str), "component": labels})
    crm_nodes = set(nodes.loc[nodes["crm"].astype(bool), "node"].astype(str))
    frame["crm"] = frame["id_key"].isin(crm_nodes)
    field = frame["id_key"].str.split(":", n=1).str[0]
    value = frame["id_key"].str.split(":", n=1).str[1]
    precedence = {f: i for i, f in enumerate(IDENTITY_FIELDS)}
    frame["rank"] = np.where(frame["crm"], -1, field.map(precedence).fillna(len(precedence)).astype(int))
    frame["label"] = np.where(field == "customer_id", value, frame["id_key"])
    best = frame.sort_values(["component", "rank", "label"]).drop_duplicates("component")
    comp_label = best.set_index("component")["label"]
    comp_known = frame.groupby("component")["crm"].any()
    frame["cx_id"] = frame["component"].map(comp_label)
    frame["known"] = frame["component"].map(comp_known).astype(bool)
    hubs = pd.DataFrame({"id_key": codes[hub].astype(str), "degree": degree[hub].astype("int64")})
    return frame[["id_key", "cx_id", "known"]].reset_index(drop=True), hubs


def _ambiguous(pairs: pd.DataFrame, crm: np.ndarray, n: int) -> np.ndarray:
    """Identifiers that would merge two different CRM customers.

    The CRM is the authority on who is a distinct customer: an identifier on two CRM records
    (a shared household phone), or one directly linked to identifiers of two CRM records (a
    helpdesk's own address typed into tickets from many callers) must not link anyone.
    """
    both = pd.concat(
        [pairs.rename(columns={"a": "u", "b": "v"}), pairs.rename(columns={"a": "v", "b": "u"})], ignore_index=True
    )
    crm_idx = np.flatnonzero(crm)
    # Owner of each identifier written on a CRM record: that record.
    owned = both[np.isin(both["u"].to_numpy(), crm_idx)].rename(columns={"u": "owner", "v": "node"})
    owned = pd.concat([owned, pd.DataFrame({"owner": crm_idx, "node": crm_idx})], ignore_index=True).drop_duplicates()
    owners_per_node = owned.groupby("node")["owner"].nunique()
    ambiguous = np.zeros(n, dtype=bool)
    shared = owners_per_node.index[owners_per_node > 1].to_numpy()
    ambiguous[shared] = True
    sole = owned[owned["node"].isin(owners_per_node.index[owners_per_node == 1])]
    reach = both.merge(sole, left_on="v", right_on="node")[["u", "owner"]].drop_duplicates()
    reach = reach[~np.isin(reach["u"].to_numpy(), crm_idx)]
    per_node = reach.groupby("u")["owner"].nunique()
    ambiguous[per_node.index[per_node > 1].to_numpy()] = True
    ambiguous[crm_idx] = False  # a CRM record's own key is never ambiguous
    return ambiguous


def _rekey_hub_rows(conn: Connection) -> None:
    """Rows whose primary identifier is a hub are keyed on their next usable identifier
    (a ticket from the helpdesk's own address that also carries the caller's phone)."""
    hubs = sa.select(identity_hubs_table.c.id_key)
    for kind_name, kind in KINDS.items():
        t = KIND_TABLES[kind_name]
        for f in kind.identity_fields:
            key = _key_expr(f, t.c[f])
            conn.execute(
                t.update()
                .where(t.c.id_key.in_(hubs), t.c[f].is_not(None), key.not_in(hubs))
                .values(id_key=key)
            )


def rebuild_identity_map(conn: Connection, hub_degree: int = DEFAULT_HUB_DEGREE) -> dict:
    """Recompute the identity map from every stored row, inside the caller's transaction."""
    edges, nodes = _edges_and_nodes(conn)
    id_map, hubs = stitch(edges, nodes, hub_degree)
    conn.execute(identity_map_table.delete())
    conn.execute(identity_hubs_table.delete())
    bulk_insert(conn, identity_map_table, id_map)
    bulk_insert(conn, identity_hubs_table, hubs)
    if len(hubs):
        _rekey_hub_rows(conn)
        edges, nodes = _edges_and_nodes(conn)
        id_map, hubs = stitch(edges, nodes, hub_degree)
        conn.execute(identity_map_table.delete())
        conn.execute(identity_hubs_table.delete())
        bulk_insert(conn, identity_map_table, id_map)
        bulk_insert(conn, identity_hubs_table, hubs)
    summary = {
        "identifiers": int(len(id_map)),
        "customers": int(id_map.loc[id_map["known"], "cx_id"].nunique()) if len(id_map) else 0,
        "hubs": int(len(hubs)),
    }
    log.info("identity map rebuilt: %s", summary)
    return summary
