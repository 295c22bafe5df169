"""Identity stitching: link every source's identifiers into one customer.

Nodes are normalised identifiers written ``field:value`` (``email:ann@example.com``). Every row
links the identifiers it carries (a CRM row links customer id, account, email and phone; a
logged-in web event links its cookie to an email). Customers are the connected components,
except that no component ever holds two CRM records: an identifier linked to more distinct
identifiers than ``hub_degree`` (a helpdesk's own address, a placeholder phone), or equally
near two CRM records, is reported as a hub and links nothing, and every other identifier joins
the CRM record it is fewest links away from (see ``stitch``). Rows whose only identifier is a
key of another extract (a subscription id) get their customer through that extract's rows
afterwards (``cxdash.identity.links``); a link never joins identities.

Each component gets a ``cx_id``: the CRM customer id when the component holds a CRM record
(``known``), otherwise its most specific identifier.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sqlalchemy.engine import Connection

from cxdash.identity.links import resolve_links
from cxdash.store import rollups
from cxdash.store.database import (
    IDENTITY_REBUILD,
    IDENTITY_UNSTITCHED,
    KIND_TABLES,
    bulk_insert,
    customer_keys_table,
    identity_hubs_table,
    identity_map_table,
    identity_restitch_table,
    read_frame,
    work_done,
    work_pending,
)
from cxdash.store.kinds import IDENTITY_FIELDS, KINDS

__all__ = [
    "DEFAULT_HUB_DEGREE",
    "assign_customer_keys",
    "customer_label",
    "rebuild_identity_map",
    "rebuild_if_pending",
    "stamp_customer_keys",
    "stitch",
    "update_identity_map",
]

log = logging.getLogger(__name__)

DEFAULT_HUB_DEGREE = 25
# A customer's id (cx_id) is the label of their best identifier: a CRM customer id without this
# prefix, any other identifier key as it is.
_CUSTOMER_ID = "customer_id:"


def customer_label(id_key: str) -> str:
    """The ``cx_id`` the identifier ``id_key`` gives its customer when it is their best one."""
    return id_key.removeprefix(_CUSTOMER_ID)


# An append whose touched parts hold more than this share of a map of at least
# ``REBUILD_MIN_IDENTIFIERS`` rebuilds it whole (``update_identity_map``): the same result, less
# work (a 1M-row web append touching 1.14M of the 200k-customer demo's 1.21M identifiers: about
# 80 s part by part, 28 s whole, load average 10). A smaller map is updated part by part anyway
# (well under a second either way).
REBUILD_SHARE = 0.5
REBUILD_MIN_IDENTIFIERS = 100_000
# A load with at most this many identifiers looks them up in the map by value (the map's index on
# ``id_key``), not by joining the whole map: at 1M customers the join scans 5.8M identifiers
# (0.4-1.2 s) where the lookup takes a millisecond, which a one-row signal waits for.
FEW_IDENTIFIERS = 2_000


def _key_expr(field: str, col) -> sa.ColumnElement:
    return sa.literal(f"{field}:") + col


def _edges_and_nodes(conn: Connection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Distinct (a, b) identifier links and distinct nodes (with whether they are CRM records)."""
    edge_selects, node_selects = [], []
    for kind_name, kind in KINDS.items():
        t = KIND_TABLES[kind_name]
        is_crm = sa.literal(kind_name == "customers")
        node_selects.append(sa.select(t.c.id_key.label("node"), is_crm.label("crm")).where(t.c.id_key.is_not(None)))
        # Only identifiers the table holds at all (one count per column, a cheap columnar scan):
        # every kind may carry an account_id, few sources do, and each branch of the union below
        # is a filtered scan of the whole table.
        present = conn.execute(sa.select(*[sa.func.count(t.c[f]) for f in kind.identity_fields])).one()
        for f, n in zip(kind.identity_fields, present, strict=True):
            if not n:
                continue
            key = _key_expr(f, t.c[f])
            edge_selects.append(
                sa.select(t.c.id_key.label("a"), key.label("b")).where(t.c[f].is_not(None), t.c.id_key != key)
            )
    nodes = read_frame(conn, sa.union(*node_selects))
    edges = (
        read_frame(conn, sa.union(*edge_selects)) if edge_selects else pd.DataFrame({"a": [], "b": []}, dtype=object)
    )
    return edges, nodes


def stitch(
    edges: pd.DataFrame,
    nodes: pd.DataFrame,
    hub_degree: int = DEFAULT_HUB_DEGREE,
    *,
    crowded: Iterable[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Customers as components of the identity graph, never holding two CRM records.

    In: ``edges`` (a, b) and ``nodes`` (node, crm: bool, True for identifiers that are a CRM
    record's primary key). Out: ``(id_map, hubs)`` with id_map columns ``id_key, cx_id, known,
    part`` (one row per node; ``part``: see below) and hubs ``id_key, degree, reason``; ``id_map.attrs["refused_links"]``
    counts links left unused because their two ends belong to different CRM records.

    The CRM is the authority on who is a distinct customer, so "no identifier may merge two
    CRM records" holds for chains of any length:

    1. an identifier linked to more than ``hub_degree`` distinct identifiers (a helpdesk's own
       address, a placeholder phone) links nothing (reason ``many links``);
    2. every other identifier joins the CRM record it is the fewest links away from (a
       breadth-first search from all CRM records at once, one layer at a time). One reached in
       the same layer from two CRM records is equally near both: it joins neither and links
       nothing (reason ``equally near two CRM customers``);
    3. a link whose two ends joined different CRM records is refused (counted, not used);
    4. identifiers no CRM record reaches form components among themselves.

    Every step looks only at a node's *part*: its component of the graph without the nodes of
    many links (such a node is a part of its own). A node's degree counts its links to hubs too,
    so a part's result needs its edges and its links to hubs, nothing else; ``part`` names it
    by its lexically first identifier. Appending rows only adds links, so a node of many links
    stays one and parts only merge: ``update_identity_map`` restitches the touched parts alone.
    ``crowded`` names nodes known to have more than ``hub_degree`` links when ``edges`` holds
    only some of theirs (such a subgraph).

    The result depends only on the graph, not on the order of ``edges`` or ``nodes``. Works on
    integer codes throughout (millions of identifiers take seconds, not minutes).
    """
    crowded_keys = crowded
    n_nodes, n_edges = len(nodes), len(edges)
    everything = pd.concat(
        [
            nodes["node"].astype("string[pyarrow]"),
            edges["a"].astype("string[pyarrow]"),
            edges["b"].astype("string[pyarrow]"),
        ],
        ignore_index=True,
    )
    if len(everything) == 0:
        empty = pd.DataFrame(columns=["id_key", "cx_id", "known", "part"])
        empty.attrs["refused_links"] = 0
        return empty, pd.DataFrame(columns=["id_key", "degree", "reason"])
    codes, uniques = pd.factorize(everything)  # hashing in Arrow: fast for millions of strings
    key_series = pd.Series(uniques, dtype="string[pyarrow]")
    keys = key_series.to_numpy(dtype=object)
    n = len(keys)
    lexical = np.empty(n, dtype=np.int64)  # each key's position in sorted order, to break ties
    lexical[np.asarray(pc.sort_indices(pa.array(uniques)))] = np.arange(n)
    node_codes = codes[:n_nodes]
    a, b = codes[n_nodes : n_nodes + n_edges], codes[n_nodes + n_edges :]
    packed = np.unique(np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b))
    pa_, pb_ = packed // n, packed % n
    loops = pa_ == pb_
    pa_, pb_ = pa_[~loops], pb_[~loops]
    degree = np.bincount(np.concatenate([pa_, pb_]), minlength=n)
    crm = np.zeros(n, dtype=bool)
    crm[node_codes[nodes["crm"].astype(bool).to_numpy()]] = True
    crowded = degree > hub_degree
    forced = pd.Index(uniques).get_indexer(pd.Index(list(crowded_keys), dtype=object))
    crowded[forced[forced >= 0]] = True
    keep = ~(crowded[pa_] | crowded[pb_])
    u, v = pa_[keep], pb_[keep]
    part = _parts(u, v, lexical, n)
    owner = _nearest_crm_record(u, v, np.flatnonzero(crm), n)
    contested = owner == _CONTESTED
    lu, lv = owner[u], owner[v]
    refused = (lu >= 0) & (lv >= 0) & (lu != lv)
    usable = (lu == lv) & (lu != _CONTESTED)
    graph = coo_matrix((np.ones(int(usable.sum()), dtype=np.int8), (u[usable], v[usable])), shape=(n, n))
    _, component = connected_components(graph, directed=False)

    rank = np.full(n, len(IDENTITY_FIELDS), dtype=np.int64)
    for i, f in reversed(list(enumerate(IDENTITY_FIELDS))):
        rank[key_series.str.startswith(f + ":").to_numpy(dtype=bool)] = i
    is_customer_id = rank == 0
    rank[crm] = -1
    # The best node of each component: CRM record first, then by identifier precedence, then key.
    order = np.lexsort((lexical, rank, component))
    first = np.ones(n, dtype=bool)
    first[1:] = component[order][1:] != component[order][:-1]
    best_of = np.empty(component.max() + 1, dtype=np.int64)
    best_of[component[order][first]] = order[first]
    label = keys.copy()
    label[is_customer_id] = key_series[is_customer_id].str.slice(len(_CUSTOMER_ID)).to_numpy(dtype=object)
    known_of = np.zeros(component.max() + 1, dtype=bool)
    np.logical_or.at(known_of, component, crm)
    id_map = pd.DataFrame(
        {"id_key": keys, "cx_id": label[best_of[component]], "known": known_of[component], "part": keys[part]}
    )
    id_map.attrs["refused_links"] = int(refused.sum())
    hub = crowded | contested
    reason = np.where(crowded[hub], "many links", "equally near two CRM customers")
    hubs = pd.DataFrame({"id_key": keys[hub], "degree": degree[hub].astype("int64"), "reason": reason})
    return id_map, hubs


_UNREACHED, _CONTESTED = -1, -2


def _parts(u: np.ndarray, v: np.ndarray, lexical: np.ndarray, n: int) -> np.ndarray:
    """Each node's part (the components of the links ``u``-``v``) as the node code of its
    lexically first member."""
    graph = coo_matrix((np.ones(len(u), dtype=np.int8), (u, v)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    by_key = np.empty(n, dtype=np.int64)
    by_key[lexical] = np.arange(n)  # node codes in key order
    seen, first = np.unique(component[by_key], return_index=True)
    first_of = np.empty(int(seen.max()) + 1, dtype=np.int64)
    first_of[seen] = by_key[first]
    return first_of[component]


def _nearest_crm_record(u: np.ndarray, v: np.ndarray, seeds: np.ndarray, n: int) -> np.ndarray:
    """For each of ``n`` nodes of the undirected graph (``u``, ``v``): the CRM record (a node
    of ``seeds``) it is the fewest links away from, ``_CONTESTED`` when two are equally near,
    ``_UNREACHED`` when none reaches it. A CRM record owns itself.

    A breadth-first search from every CRM record at once, one layer per step, on a CSR
    adjacency: a node first reached in a layer takes the record of the nodes that reached it;
    reached from two records in the same layer it is contested and reaches no further (it
    links nothing). Nothing depends on the order of the edges.
    """
    owner = np.full(n, _UNREACHED, dtype=np.int64)
    owner[seeds] = seeds
    if len(u) == 0 or len(seeds) == 0:
        return owner
    src = np.concatenate([u, v])
    dst = np.concatenate([v, u])
    by_src = np.argsort(src, kind="stable")
    neighbours = dst[by_src]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    frontier = seeds
    while frontier.size:
        starts = indptr[frontier]
        counts = indptr[frontier + 1] - starts
        total = int(counts.sum())
        if total == 0:
            break
        # positions of every frontier node's neighbours in ``neighbours``
        offsets = np.repeat(starts - (np.cumsum(counts) - counts), counts)
        reached = neighbours[np.arange(total, dtype=np.int64) + offsets]
        via = np.repeat(owner[frontier], counts)
        fresh = owner[reached] == _UNREACHED
        reached, via = reached[fresh], via[fresh]
        if reached.size == 0:
            break
        pairs = np.unique(reached * n + via)
        nodes_, first, per_node = np.unique(pairs // n, return_index=True, return_counts=True)
        owners = (pairs % n)[first]
        owner[nodes_] = np.where(per_node > 1, _CONTESTED, owners)
        frontier = nodes_[per_node == 1]
    return owner


def _rekey_hub_rows(conn: Connection, load_id: int | None = None) -> int:
    """Rows whose primary identifier is a hub are keyed on their next usable identifier
    (a ticket from the helpdesk's own address that also carries the caller's phone); only the
    rows of ``load_id`` when given. Out: how many rows moved.

    A moved row links its new key to its other identifiers instead of the hub, which the next
    stitch sees: the identifiers of such rows go to ``identity_restitch`` for the next update.
    Only rows with two or more usable (not hub) identifiers link anything new: a row with one
    links it to the hub either way (the same pair, refused), so moving it leaves the graph as it
    was (the demo's helpdesk tickets: the desk's address and the caller's phone)."""
    hubs = sa.select(identity_hubs_table.c.id_key)
    moved = 0
    for kind_name, kind in KINDS.items():
        if load_id is not None and kind_name not in _load_kinds(conn, load_id):
            continue
        t = KIND_TABLES[kind_name]
        mine = [t.c.id_key.in_(hubs)] + ([t.c.load_id == load_id] if load_id is not None else [])
        usable = [sa.and_(t.c[f].is_not(None), _key_expr(f, t.c[f]).not_in(hubs)) for f in kind.identity_fields]
        links_anew = sum((sa.case((u, 1), else_=0) for u in usable), sa.literal(0)) >= 2
        nodes = [sa.select(t.c.id_key.label("id_key")).where(*mine, links_anew)]
        nodes += [
            sa.select(_key_expr(f, t.c[f]).label("id_key")).where(*mine, links_anew, t.c[f].is_not(None))
            for f in kind.identity_fields
        ]
        fresh = sa.union(*nodes).subquery()
        restitch = identity_restitch_table
        conn.execute(
            restitch.insert().from_select(
                ["id_key"], sa.select(fresh.c.id_key).where(fresh.c.id_key.not_in(sa.select(restitch.c.id_key)))
            )
        )
        for f in kind.identity_fields:
            key = _key_expr(f, t.c[f])
            where = [*mine, t.c[f].is_not(None), key.not_in(hubs)]
            moved += int(conn.execute(t.update().where(*where).values(id_key=key)).rowcount or 0)
    return moved


def assign_customer_keys(id_map: pd.DataFrame, previous: pd.DataFrame, start: int | None = None) -> pd.DataFrame:
    """One integer ``cx_key`` per customer of ``id_map``: a customer whose ``cx_id`` had a key
    (``previous``: cx_id, cx_key) keeps it; new customers get new keys from ``start`` (default:
    one above ``previous``'s), in ``cx_id`` order so the same data gives the same keys.
    Out: ``cx_key, cx_id, known`` (one row per customer)."""
    customers = (
        id_map.groupby("cx_id", sort=True, observed=True)["known"].any().reset_index()
        if len(id_map)
        else pd.DataFrame({"cx_id": pd.Series(dtype=object), "known": pd.Series(dtype=bool)})
    )
    keyed = customers[["cx_id"]].merge(previous[["cx_id", "cx_key"]], on="cx_id", how="left", sort=False)
    keys = np.array(keyed["cx_key"].to_numpy(dtype="float64", na_value=np.nan), copy=True)
    new = np.isnan(keys)
    if start is None:
        start = int(previous["cx_key"].max()) + 1 if len(previous) else 1
    keys[new] = np.arange(start, start + int(new.sum()))
    customers.insert(0, "cx_key", keys.astype("int64"))
    return customers


def stamp_customer_keys(conn: Connection, within: sa.Table | None = None, load_id: int | None = None) -> None:
    """Write each row's customer key from the identity map, touching only rows whose key changed:
    every row; with ``load_id`` only that load's rows, and also the rows keyed on a ``node`` of
    ``within`` when given."""
    im = identity_map_table
    only_load = load_id is not None and (
        within is None or conn.execute(sa.select(within.c.node).limit(1)).first() is None
    )
    # only the load's own kind holds its rows (an update joining the map costs even with none)
    kinds = _load_kinds(conn, load_id) if only_load else set(KIND_TABLES)
    for t in (KIND_TABLES[name] for name in KIND_TABLES if name in kinds):
        where = [im.c.id_key == t.c.id_key, t.c.cx_key.is_distinct_from(im.c.cx_key)]
        if only_load:
            where.append(t.c.load_id == load_id)  # a filter DuckDB answers from its zone maps
            keyed = _few(conn, sa.select(t.c.id_key).where(t.c.load_id == load_id, t.c.id_key.is_not(None)).distinct())
            if keyed is not None:
                where.append(im.c.id_key.in_(keyed))  # the map's rows by its index (``FEW_IDENTIFIERS``)
        elif within is not None:
            # two statements, not one with OR: each filter then narrows its side before the join
            # (the load's rows by zone maps; the map to the few ``within`` identifiers)
            if load_id is not None:
                conn.execute(t.update().where(*where, t.c.load_id == load_id).values(cx_key=im.c.cx_key))
            where.append(im.c.id_key.in_(sa.select(within.c.node)))
        conn.execute(t.update().where(*where).values(cx_key=im.c.cx_key))
        # rows with a link key and no identifier get their customer in ``resolve_links``
        lost = [t.c.id_key.is_(None), t.c.link_key.is_(None), t.c.cx_key.is_not(None)]
        if load_id is not None:
            lost.append(t.c.load_id == load_id)
        conn.execute(t.update().where(*lost).values(cx_key=None))


def _few(conn: Connection, values: sa.Select | sa.CompoundSelect) -> list[str] | None:
    """The values of the one-column ``values`` when there are at most ``FEW_IDENTIFIERS``, else None."""
    rows = conn.execute(values.limit(FEW_IDENTIFIERS + 1)).all()
    return None if len(rows) > FEW_IDENTIFIERS else [r[0] for r in rows]


def _node_table(name: str) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("node", sa.String),
        sa.Column("field", sa.String),
        sa.Column("value", sa.String),
        prefixes=["TEMPORARY"],
    )


def _load_kinds(conn: Connection, load_id: int) -> set[str]:
    """The kind of the rows of ``load_id`` (every kind when the load log does not say)."""
    return set(rollups.kinds_holding(conn, [load_id]))


def _load_identifiers(conn: Connection, load_id: int) -> sa.CompoundSelect:
    """Every identifier (``node``) the rows of one load carry."""
    parts = []
    for kind_name, kind in KINDS.items():
        if kind_name not in _load_kinds(conn, load_id):
            continue
        t = KIND_TABLES[kind_name]
        mine = t.c.load_id == load_id
        parts.append(sa.select(t.c.id_key.label("node")).where(mine, t.c.id_key.is_not(None)))
        parts += [
            sa.select(_key_expr(f, t.c[f]).label("node")).where(mine, t.c[f].is_not(None)) for f in kind.identity_fields
        ]
    return sa.union(*parts)


def _edges_and_nodes_within(
    conn: Connection, touched: sa.Table, fields: set[str], keys: sa.Table | None, load_id: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``_edges_and_nodes`` for the links with an end among ``touched``'s nodes (whose
    ``fields`` are given). The nodes are the touched ones, CRM records marked.

    Without ``keys``: the rows keyed on a touched node and the rows carrying one in a field (a
    scan of every identifier column). With ``keys`` (the touched identifiers' customer keys, when
    none of them is a hub): the rows of those customers and of load ``load_id``, an integer
    filter. That is every such row: a row links its key to the identifiers it carries, two
    identifiers linked without a hub between them are in one part, so a touched identifier's
    rows are keyed on a touched identifier (and carry its customer key), or are this load's; and
    the rows keyed on a hub carry only hubs (others moved off it, ``_rekey_hub_rows``).
    """
    inside = sa.select(touched.c.node)
    edge_selects, record_selects = [], []
    for kind_name, kind in KINDS.items():
        t = KIND_TABLES[kind_name]
        # one condition per select (an OR of semi-joins would test every row against each)
        if keys is not None:
            conditions = [
                sa.and_(t.c.cx_key.in_(sa.select(keys.c.cx_key)), t.c.id_key.is_not(None)),
                sa.and_(t.c.load_id == load_id, t.c.id_key.is_not(None)),
            ]
        else:
            conditions = [
                t.c.id_key.in_(inside),
                *[
                    t.c[f].in_(sa.select(touched.c.value).where(touched.c.field == f))
                    for f in kind.identity_fields
                    if f in fields
                ],
            ]
        if kind_name == "customers":
            record_selects += [sa.select(t.c.id_key.label("node")).where(c) for c in conditions]
        # The links of those rows, made in the database (a row links its key to each other
        # identifier it carries): only the distinct links travel, not every row.
        columns = [t.c.id_key, *[t.c[f] for f in kind.identity_fields]]
        rows = sa.union_all(*[sa.select(*columns).where(c) for c in conditions]).cte(f"touched_{kind_name}")
        for f in kind.identity_fields:
            key = _key_expr(f, rows.c[f])
            edge_selects.append(
                sa.select(rows.c.id_key.label("a"), key.label("b")).where(rows.c[f].is_not(None), rows.c.id_key != key)
            )
    edges = read_frame(conn, sa.union(*edge_selects))
    records = read_frame(conn, sa.union(*record_selects))["node"]
    nodes = read_frame(conn, inside)
    nodes["crm"] = _isin(nodes["node"], records)
    return edges, nodes


def _isin(values: pd.Series, among: pd.Series) -> np.ndarray:
    """Whether each of ``values`` (text) is one of ``among``, hashed in Arrow: pandas' ``isin`` on
    Arrow strings turns ``among`` into Python objects one by one (seconds for a million)."""
    wanted = pa.array(among.astype("string[pyarrow]").dropna().array, type=pa.large_string())
    found = pc.is_in(pa.array(values.astype("string[pyarrow]").array, type=pa.large_string()), value_set=wanted)
    return np.asarray(found.fill_null(False), dtype=bool)


def _can_update(conn: Connection) -> bool:
    """Whether the identity map may be updated part by part: no rebuild is pending (a migration's,
    or loads that skipped stitching) and every identifier knows its part."""
    im = identity_map_table
    if work_pending(conn, IDENTITY_REBUILD) or work_pending(conn, IDENTITY_UNSTITCHED):
        return False
    return conn.execute(sa.select(im.c.id_key).where(im.c.part.is_(None)).limit(1)).first() is None


def _touched_nodes(conn: Connection, load_id: int, touched: sa.Table) -> pd.DataFrame:
    """Fill ``touched`` with the identifiers of the parts the rows of ``load_id`` touch, and their
    new identifiers: ``node, field, value``; the same as a frame."""
    im = identity_map_table
    fresh = sa.union(_load_identifiers(conn, load_id), sa.select(identity_restitch_table.c.id_key.label("node")))
    conn.execute(touched.insert().from_select(["node"], fresh))
    conn.execute(identity_restitch_table.delete())
    parts = sa.select(im.c.part).where(im.c.id_key.in_(sa.select(touched.c.node))).distinct()
    old = sa.select(im.c.id_key.label("node")).where(im.c.part.in_(parts))
    nodes = read_frame(conn, sa.union(old, sa.select(touched.c.node)))["node"].astype("string[pyarrow]")
    conn.execute(touched.delete())
    split = nodes.str.partition(":").reindex(columns=[0, 2])  # no column when the load stored no row
    frame = pd.DataFrame({"node": nodes, "field": split[0], "value": split[2]})
    bulk_insert(conn, touched, frame)
    return frame


def update_identity_map(conn: Connection, load_id: int, hub_degree: int = DEFAULT_HUB_DEGREE) -> dict:
    """Restitch only the parts of the identity graph (see ``stitch``) that the rows of the append
    ``load_id`` touch, inside the caller's transaction: the same map, hubs, customer keys and
    row keys as ``rebuild_identity_map``. Appending only adds links, so a part is what it was
    unless this load's identifiers touch it (touched parts can only merge), or the last stitch
    moved rows off a hub (``identity_restitch``: those identifiers are touched too).

    Falls back to the full rebuild when the map cannot be trusted part by part (``_can_update``:
    a rebuild is pending, or the map predates parts), when a touched hub of many links has
    no longer many (rows moved off it): its links then reach parts this load does not touch,
    and when the touched parts hold most of a large map (``REBUILD_SHARE``)."""
    if not _can_update(conn):
        log.info("identity map: full rebuild (a rebuild is pending or the map predates parts)")
        return rebuild_identity_map(conn, hub_degree)
    im = identity_map_table
    if _adds_nothing(conn, load_id):
        # The graph is the one stitched before, so is the map: only this load's rows need a key.
        stamp_customer_keys(conn, load_id=load_id)
        links = resolve_links(conn)
        summary = {
            **_map_counts(conn),
            "restitched": 0,
            "refused_links": 0,
            "link_conflicts": links["conflicts"],
            "map_kept": True,
            "earlier_rows_kept": True,
        }
        log.info("identity map unchanged (the load adds no identifier and no link): %s", summary)
        return summary
    touched = _node_table("identity_touched")
    touched.create(conn)
    try:
        mine = _touched_nodes(conn, load_id, touched)
        # An append touching most of the graph (a month of web events of known visitors) restitches
        # it faster whole: the rebuild reads the rows once, without the bookkeeping of parts.
        identifiers = int(conn.execute(sa.select(sa.func.count()).select_from(im)).scalar())
        most = identifiers >= REBUILD_MIN_IDENTIFIERS and len(mine) > REBUILD_SHARE * identifiers
        done = None if most else _restitch_parts(conn, touched, mine, load_id, hub_degree)
    finally:
        touched.drop(conn)
    if most:
        log.info("identity map: full rebuild (the load touches %s of %s identifiers)", len(mine), identifiers)
        return rebuild_identity_map(conn, hub_degree)
    if done is None:
        log.info("identity map: full rebuild (a hub of many links has fewer now)")
        return rebuild_identity_map(conn, hub_degree)
    refused, restitched, kept = done
    links = resolve_links(conn)
    summary = {
        **_map_counts(conn),
        "restitched": restitched,
        "refused_links": refused,  # in the restitched parts
        "link_conflicts": links["conflicts"],
        "earlier_rows_kept": kept,
    }
    log.info("identity map updated: %s", summary)
    return summary


def _map_counts(conn: Connection) -> dict[str, int]:
    """``identifiers`` in the map, known ``customers`` (one customer_keys row each) and ``hubs``."""
    count = sa.select(sa.func.count())
    return {
        "identifiers": int(conn.execute(count.select_from(identity_map_table)).scalar()),
        "customers": int(conn.execute(count.where(customer_keys_table.c.known)).scalar()),
        "hubs": int(conn.execute(count.select_from(identity_hubs_table)).scalar()),
    }


def _adds_nothing(conn: Connection, load_id: int) -> bool:
    """Whether the append ``load_id`` leaves the identity graph as it was: no CRM record (a node
    would become one), no identifier the map does not hold, none that is a hub (its rows move),
    no restitch pending, and each link its rows carry (key -> identifier) already carried by an
    earlier row. The stitch dedupes links, so the same nodes and links give the same map: a ticket
    or payment from a known customer, the usual one-row append, needs no restitch at all.

    Conservative: a link stored only the other way round (the identifier as an earlier row's key)
    counts as new, and the part is restitched as before."""
    kinds = _load_kinds(conn, load_id)
    if "customers" in kinds or conn.execute(sa.select(identity_restitch_table.c.id_key).limit(1)).first():
        return False
    im, hubs_t = identity_map_table, identity_hubs_table
    identifiers = _load_identifiers(conn, load_id)
    few = _few(conn, identifiers)
    if few is not None:
        n_nodes = len(few)
        counted = [sa.select(sa.func.count()).where(table.c.id_key.in_(few)) for table in (im, hubs_t)]
    else:
        nodes = identifiers.subquery("load_nodes")
        # inner joins: the load's identifiers are the side DuckDB builds its hash table on
        counted = [
            sa.select(sa.func.count()).select_from(nodes.join(table, table.c.id_key == nodes.c.node))
            for table in (im, hubs_t)
        ]
        n_nodes = conn.execute(sa.select(sa.func.count()).select_from(nodes)).scalar()
    if conn.execute(counted[0]).scalar() != n_nodes or conn.execute(counted[1]).scalar():
        return False
    for kind_name in kinds:
        t = KIND_TABLES[kind_name]
        for f in KINDS[kind_name].identity_fields:
            new = t.alias("new_rows")
            links = [new.c.load_id == load_id, new.c[f].is_not(None), new.c.id_key != _key_expr(f, new.c[f])]
            if conn.execute(sa.select(new.c.id_key).where(*links).limit(1)).first() is None:
                continue  # the load's rows link nothing through this field
            for other_name, other_kind in KINDS.items():
                if f not in other_kind.identity_fields:
                    continue
                o = KIND_TABLES[other_name]
                seen = sa.select(o.c.id_key).where(
                    o.c.id_key == new.c.id_key, o.c[f] == new.c[f], o.c.load_id != load_id
                )
                links.append(~seen.exists())
            if conn.execute(sa.select(new.c.id_key).where(*links).limit(1)).first() is not None:
                return False
    return True


def _restitch_parts(
    conn: Connection, touched: sa.Table, mine: pd.DataFrame, load_id: int, hub_degree: int
) -> tuple[int, int, bool] | None:
    """Restitch the touched parts (``touched``: their identifiers, ``mine`` the same as a frame)
    and write them (``_write_parts``): (refused links, restitched identifiers, earlier rows kept).
    None, with nothing written, when a touched hub of many links has no longer many: then
    everything is restitched."""
    im, hubs_t = identity_map_table, identity_hubs_table
    keys = sa.Table("identity_keys", sa.MetaData(), sa.Column("cx_key", sa.BigInteger), prefixes=["TEMPORARY"])
    nodes_in = sa.select(touched.c.node)
    before = read_frame(conn, sa.select(im.c.id_key, im.c.cx_id, im.c.cx_key).where(im.c.id_key.in_(nodes_in)))
    hubs_before = read_frame(conn, sa.select(hubs_t.c.id_key).where(hubs_t.c.id_key.in_(nodes_in)))["id_key"]
    if len(hubs_before):  # a hub's links reach into other parts: find them by value
        edges, nodes = _edges_and_nodes_within(conn, touched, set(mine["field"].unique()), None, load_id)
    else:
        keys.create(conn)
        bulk_insert(conn, keys, pd.DataFrame({"cx_key": before["cx_key"].dropna().unique()}))
        edges, nodes = _edges_and_nodes_within(conn, touched, set(mine["field"].unique()), keys, load_id)
        keys.drop(conn)
    many = read_frame(conn, sa.select(hubs_t.c.id_key).where(hubs_t.c.reason == "many links"))["id_key"]
    id_map, hubs = stitch(edges, nodes, hub_degree, crowded=many[~_isin(many, mine["node"])])
    crowded = set(hubs.loc[hubs["reason"] == "many links", "id_key"])
    # A hub that lost links (rows moved off it) and is one no more links parts not touched here.
    if not set(many[_isin(many, mine["node"])]) <= crowded:
        return None
    return _write_parts(conn, touched, mine, id_map, hubs, before, hubs_before, load_id)


def _write_parts(
    conn: Connection,
    touched: sa.Table,
    mine: pd.DataFrame,
    id_map: pd.DataFrame,
    hubs: pd.DataFrame,
    before: pd.DataFrame,
    hubs_before: pd.Series,
    load_id: int,
) -> tuple[int, int, bool]:
    """Replace the touched identifiers' map and hub rows with ``id_map`` and ``hubs`` (restitched),
    rewrite their customers' keys, move rows off hubs, restamp the rows whose customer changed.
    Out: (refused links, restitched identifiers, whether every earlier row is as it was: same
    customer key, no hub moved, each earlier customer's CRM flag the same)."""
    im, hubs_t = identity_map_table, identity_hubs_table
    nodes_in = sa.select(touched.c.node)
    refused = int(id_map.attrs.get("refused_links", 0))
    id_map = id_map[_isin(id_map["id_key"], mine["node"])]
    hubs = hubs[_isin(hubs["id_key"], mine["node"])]
    conn.execute(im.delete().where(im.c.id_key.in_(nodes_in)))
    conn.execute(hubs_t.delete().where(hubs_t.c.id_key.in_(nodes_in)))
    customers, previous = _rekeyed_customers(conn, id_map, set(before["cx_id"]) | set(id_map["cx_id"]))
    id_map = id_map.merge(customers[["cx_id", "cx_key"]], on="cx_id", how="left", sort=False)
    bulk_insert(conn, im, id_map)
    bulk_insert(conn, hubs_t, hubs)
    # Rows keyed on a hub move to their next usable identifier. With the same hubs as before,
    # earlier rows were moved already: only this load's can be keyed on a hub.
    rekey_all = set(hubs_before) != set(hubs["id_key"])
    moved = _rekey_hub_rows(conn, None if rekey_all else load_id)
    # This load's rows, and earlier rows keyed on an identifier whose customer changed
    # (all of the touched parts' when rows moved).
    conn.execute(touched.delete())
    changed = id_map.merge(before, on="id_key", how="left", suffixes=("", "_before"))
    changed = changed[changed["cx_key"].ne(changed["cx_key_before"]).fillna(True)]
    kept = False
    if not moved:
        # An identifier new to the map keys no earlier row (the map holds every stored row's
        # identifiers; a hub's rows are looked for anyway): only this load's rows, which are
        # stamped by their load id, carry it. A one-row append with a new cookie then touches
        # no earlier row (a scan of every row of its kind at 1M: 2.6 s).
        held = _isin(changed["id_key"], pd.concat([before["id_key"], hubs_before], ignore_index=True))
        mine = mine[_isin(mine["node"], changed.loc[held, "id_key"])]
        # Earlier rows are then as they were: none changed customer, no hub came or went, and every
        # earlier customer kept its key and whether a CRM record names it.
        was = previous.set_index("cx_key")["known"]
        now = customers.set_index("cx_key")["known"]
        kept = (
            not rekey_all
            and not held.any()
            and bool(was.index.isin(now.index).all())
            and bool((now.reindex(was.index) == was).all())
        )
    bulk_insert(conn, touched, mine)
    stamp_customer_keys(conn, within=touched, load_id=load_id)
    if not kept:
        rollups.invalidate(conn)  # earlier rows' customer keys may have moved
    return refused, len(id_map), kept


def _rekeyed_customers(conn: Connection, id_map: pd.DataFrame, cx_ids: set[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The customers named ``cx_ids`` once ``id_map`` (the restitched identifiers) joins the map,
    with their keys (``assign_customer_keys``): their ``customer_keys`` rows are rewritten (the
    ones no identifier is left with go). Out: (the customers now, their rows before: ``cx_id,
    cx_key, known``)."""
    im, ck = identity_map_table, customer_keys_table
    wanted = sa.Table("identity_cx_ids", sa.MetaData(), sa.Column("cx_id", sa.String), prefixes=["TEMPORARY"])
    wanted.create(conn)
    try:
        bulk_insert(conn, wanted, pd.DataFrame({"cx_id": sorted(cx_ids)}))
        ids = sa.select(wanted.c.cx_id)
        others = read_frame(conn, sa.select(im.c.cx_id, im.c.known).where(im.c.cx_id.in_(ids)).distinct())
        previous = read_frame(conn, sa.select(ck.c.cx_id, ck.c.cx_key, ck.c.known).where(ck.c.cx_id.in_(ids)))
        top = conn.execute(sa.select(sa.func.max(ck.c.cx_key))).scalar()
        conn.execute(ck.delete().where(ck.c.cx_id.in_(ids)))
    finally:
        wanted.drop(conn)
    both = pd.concat([id_map[["cx_id", "known"]], others], ignore_index=True)
    customers = assign_customer_keys(both, previous, start=None if top is None else int(top) + 1)
    bulk_insert(conn, ck, customers)
    return customers, previous


def rebuild_identity_map(conn: Connection, hub_degree: int = DEFAULT_HUB_DEGREE) -> dict:
    """Recompute the identity map from every stored row, inside the caller's transaction, and
    write every row's customer key."""
    edges, nodes = _edges_and_nodes(conn)
    id_map, hubs = stitch(edges, nodes, hub_degree)
    refused = int(id_map.attrs.get("refused_links", 0))
    previous = read_frame(conn, sa.select(customer_keys_table.c.cx_id, customer_keys_table.c.cx_key))
    customers = assign_customer_keys(id_map, previous)
    id_map = id_map.merge(customers[["cx_id", "cx_key"]], on="cx_id", how="left", sort=False)
    conn.execute(identity_map_table.delete())
    conn.execute(identity_hubs_table.delete())
    conn.execute(customer_keys_table.delete())
    conn.execute(identity_restitch_table.delete())
    bulk_insert(conn, identity_map_table, id_map)
    bulk_insert(conn, identity_hubs_table, hubs)
    bulk_insert(conn, customer_keys_table, customers)
    if len(hubs):
        # Re-keying a row with one usable identifier changes no link (a hub links nothing, and the
        # identifier is a node already); a row with several links them anew, and those
        # identifiers wait in ``identity_restitch`` for the next update (``_rekey_hub_rows``).
        _rekey_hub_rows(conn)
    stamp_customer_keys(conn)
    links = resolve_links(conn)
    rollups.invalidate(conn)  # rows' customer keys moved
    work_done(conn, IDENTITY_REBUILD)  # a migration's request (cxdash.store.database) is met
    work_done(conn, IDENTITY_UNSTITCHED)
    summary = {
        "identifiers": len(id_map),
        "customers": int(id_map.loc[id_map["known"], "cx_id"].nunique()) if len(id_map) else 0,
        "hubs": len(hubs),
        "refused_links": refused,
        "link_conflicts": links["conflicts"],
    }
    log.info("identity map rebuilt: %s", summary)
    return summary


def rebuild_if_pending(conn: Connection) -> dict | None:
    """Rebuild the identity map when a migration asked for it (a store written before rows carried
    their customer key): the summary of the rebuild, or None when none was pending."""
    return rebuild_identity_map(conn) if work_pending(conn, IDENTITY_REBUILD) else None
