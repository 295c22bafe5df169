"""What each page computes, as plain calls into the cxdash package (no Streamlit).

``PAGES[name]`` is a list of ``(label, fn)`` where ``fn(store)`` runs one of the page's cached
computations with the page's default widgets. The benchmark times each list twice in one process:
the first pass is *cold* (nothing cached anywhere, the database's buffers empty), the second
*warm* (the database's buffers full; Streamlit's own cache is measured separately with AppTest).
"""

from __future__ import annotations

from collections.abc import Callable

from cxdash.store.database import Store

Computation = tuple[str, Callable[[Store], object]]


def _with_conn(fn: Callable) -> Callable[[Store], object]:
    def run(store: Store):
        with store.connect() as conn:
            return fn(conn)

    return run


def _churn(conn) -> str | None:
    """The churn definition the pages follow (the bench stores choose none: the suggestion), read
    from the stored candidates as the pages do."""
    from cxdash.jobs import summaries
    from cxdash.metrics import churn

    stored = summaries.get(conn, "churn_candidates")
    return churn.resolve(conn, None, [churn.Candidate.from_dict(d) for d in stored]).name


def _stored(conn, name: str):
    """A landing summary as the page reads it: with the churn definition's name when it depends on it."""
    from cxdash.jobs import summaries

    churn = _churn(conn) if name in summaries.CHURN_DEPENDENT else None
    return summaries.get(conn, name, params={"churn": churn} if churn else None)


def _headline(conn):
    return _stored(conn, "headline")


def _summary(name: str) -> Computation:
    return (f"summaries.get({name})", _with_conn(lambda c: _stored(c, name)))


def _overview() -> list[Computation]:
    # what the page calls: the summaries stored after the load (computed live if missing)
    return [_summary("source_summary"), _summary("headline"), _summary("activity_by_month")]


def _data_health() -> list[Computation]:
    from cxdash.governance import health
    from cxdash.jobs import summaries

    def governance(conn):
        return health.governance(
            conn, stats=summaries.get(conn, "source_stats"), latency=summaries.get(conn, "source_latency")
        )

    return [
        ("health.governance (stored scans)", _with_conn(governance)),
        *(_summary(n) for n in ("null_rates", "stitch_coverage", "coverage")),
    ]


def _stored_views(prefix: str) -> Computation:
    """Everything the page reads on its first render: its default view, stored after the load
    (computed live when missing, as the page does)."""
    from cxdash.jobs import summaries, views

    def read(conn):
        computed: dict = {}
        for name in summaries.VIEWS:
            if name.startswith(prefix):
                params = views.default_params(conn, name, computed, _churn(conn))
                if params is not None:
                    computed[name] = summaries.get(conn, name, params=params)
        return computed

    return (f"default view ({prefix}*, stored after the load)", _with_conn(read))


def _live(name: str, label: str) -> Computation:
    """One of the page's computations run live with the default view's parameters (what any other
    view costs, and what the refresh after a load pays)."""
    from cxdash.jobs import summaries, views

    def run(conn):
        computed: dict = {}
        for other in views.DEPENDS_ON.get(name, ()):  # results that set this one's parameters (read, not timed apart)
            computed[other] = summaries.get(
                conn, other, params=views.default_params(conn, other, computed, _churn(conn))
            )
        params = views.default_params(conn, name, computed, _churn(conn))
        return None if params is None else views.COMPUTATIONS[name](conn, **params)

    return (f"live: {label}", _with_conn(run))


def _journeys() -> list[Computation]:
    return [
        _stored_views("journeys."),
        _live("journeys.hotspots", "journeys.hotspots"),
        _live("journeys.dfg", "journeys.discover_dfg"),
        _live("journeys.nodes", "journeys.activity_nodes"),
        _live("journeys.paths", "journeys.paths_to"),
        _live("journeys.variants", "journeys.discover_variants"),
        _live("journeys.handoffs", "journeys.discover_handoffs"),
        _live("journeys.funnel", "journeys.funnel"),
        _live("journeys.hotspot_customers", "journeys.hotspot_customers"),
        _live("journeys.edge_customers", "journeys.edge_customers"),
    ]


def _executive() -> list[Computation]:
    from cxdash.jobs import summaries

    return [
        # what the page reads first: the data date (in the stored headline) and the filter options
        (
            "data date + filter options (stored)",
            _with_conn(lambda c: (_headline(c).as_of, summaries.get(c, "filter_options"))),
        ),
        _stored_views("executive."),
        _live("executive.report", "metrics.kpi_report (+ 2 CLV fits)"),
        _live("executive.trends", "metrics.kpi_table (12 months)"),
        _live("executive.cohorts", "metrics.cohort_retention"),
        _live("executive.conflicts", "metrics.conflicts"),
    ]


def _at_risk() -> list[Computation]:
    from cxdash.risk import activation

    return [
        ("activation.at_risk (top decile)", lambda s: activation.at_risk(s, only_top_decile=True)),
        ("activation.activation_stats", activation.activation_stats),
    ]


def _customer_card() -> list[Computation]:
    from cxdash.risk import activation, card, data_as_of, recent_signals

    def one_card(store: Store):
        top = activation.at_risk(store, only_top_decile=False, limit=1)
        cx_id = str(top["cx_id"].iloc[0])
        with store.connect() as conn:
            now = data_as_of(conn)
            out = (
                card.profile(conn, cx_id),
                card.customer_timeline(conn, cx_id, limit=200),
                recent_signals(conn, cx_id, now=now),
                card.open_tickets(conn, cx_id),
                card.recent_contacts(conn, cx_id),
            )
        return out, activation.customer_score(store, cx_id)

    return [
        ("card.find_customers", _with_conn(lambda c: card.find_customers(c, "CUS-0000123"))),
        ("card (top at-risk customer)", one_card),
    ]


def _model() -> list[Computation]:
    from cxdash.risk import model_versions

    return [("model.model_versions", model_versions)]


PAGES: dict[str, Callable[[], list[Computation]]] = {
    "overview": _overview,
    "data_health": _data_health,
    "journeys": _journeys,
    "executive": _executive,
    "at_risk": _at_risk,
    "customer_card": _customer_card,
    "model": _model,
}
