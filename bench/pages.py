"""What each page computes, as plain calls into the cxdash package (no Streamlit).

``PAGES[name]`` is a list of ``(label, fn)`` where ``fn(store)`` runs one of the page's cached
computations with the page's default widgets. The benchmark times each list twice in one process:
the first pass is *cold* (nothing cached anywhere, the database's buffers empty), the second
*warm* (the database's buffers full; Streamlit's own cache is measured separately with AppTest).
"""

from __future__ import annotations

from collections.abc import Callable

from cxdash.store import Store

Computation = tuple[str, Callable[[Store], object]]


def _with_conn(fn: Callable) -> Callable[[Store], object]:
    def run(store: Store):
        with store.connect() as conn:
            return fn(conn)

    return run


def _summary(name: str) -> Computation:
    from cxdash import summaries

    return (f"summaries.get({name})", _with_conn(lambda c: summaries.get(c, name)))


def _overview() -> list[Computation]:
    # what the page calls: the summaries stored after the load (computed live if missing)
    return [_summary("source_summary"), _summary("headline"), _summary("activity_by_month")]


def _data_health() -> list[Computation]:
    from cxdash import health, summaries

    def governance(conn):
        return health.governance(conn, stats=summaries.get(conn, "source_stats"),
                                 latency=summaries.get(conn, "source_latency"))

    return [("health.governance (stored scans)", _with_conn(governance)),
            *(_summary(n) for n in ("null_rates", "stitch_coverage", "coverage"))]


def _journey_filters():
    from cxdash import journeys as jr

    # the page's defaults (cxdash/ui/journeys.py DEFAULTS)
    spec = jr.LogSpec(department_key="department", top_n=15, collapse_repeats=True)
    return jr, spec, 0.005


def _journeys() -> list[Computation]:
    jr, spec, min_share = _journey_filters()
    return [
        ("journeys.hotspots", _with_conn(lambda c: jr.hotspots(c, repeat_days=7))),
        ("journeys.discover_dfg", _with_conn(lambda c: jr.discover_dfg(c, jr.journey_log(), spec, min_share=min_share))),
        ("journeys.activity_nodes", _with_conn(lambda c: jr.activity_nodes(c, jr.journey_log(), spec))),
        ("journeys.paths_to", _with_conn(lambda c: jr.paths_to(c, jr.journey_log(), "cancel_page", steps=5, spec=spec))),
        ("journeys.discover_variants", _with_conn(lambda c: jr.discover_variants(
            c, jr.journey_log(), spec, outcomes=jr.customer_outcomes(c), max_steps=5, limit=30))),
        ("journeys.discover_handoffs", _with_conn(
            lambda c: jr.discover_handoffs(c, jr.journey_log(), department_key="department"))),
    ]


def _executive() -> list[Computation]:
    from cxdash import kpis

    def report(conn):
        now = kpis.as_of(conn)
        period = kpis.default_period(now)
        clv = kpis.predicted_clv(conn, period.end, horizon_months=kpis.DEFAULT_CLV_HORIZON_MONTHS)
        clv_prev = kpis.predicted_clv(conn, period.previous.end, horizon_months=kpis.DEFAULT_CLV_HORIZON_MONTHS)
        return kpis.kpi_report(conn, period, kpis.Filters(), repeat_days=kpis.DEFAULT_REPEAT_DAYS, clv=clv,
                               clv_previous=clv_prev)

    return [
        ("kpis.as_of + filter_options", _with_conn(lambda c: (kpis.as_of(c), kpis.filter_options(c)))),
        ("kpis.kpi_report (+ 2 CLV fits)", _with_conn(report)),
        ("kpis.kpi_table (12 months)", _with_conn(lambda c: kpis.kpi_table(
            c, kpis.monthly_periods(kpis.as_of(c), 12), kpis.Filters(), repeat_days=kpis.DEFAULT_REPEAT_DAYS))),
        ("kpis.cohort_retention", _with_conn(lambda c: kpis.cohort_retention(c, kpis.Filters()))),
        ("kpis.conflicts", _with_conn(lambda c: kpis.conflicts(c, kpis.Filters(), repeat_days=kpis.DEFAULT_REPEAT_DAYS))),
    ]


def _at_risk() -> list[Computation]:
    from cxdash import activation

    return [
        ("activation.at_risk (top decile)", lambda s: activation.at_risk(s, only_top_decile=True)),
        ("activation.activation_stats", activation.activation_stats),
    ]


def _customer_card() -> list[Computation]:
    from cxdash import activation, card
    from cxdash.features import data_as_of

    def one_card(store: Store):
        top = activation.at_risk(store, only_top_decile=False, limit=1)
        cx_id = str(top["cx_id"].iloc[0])
        with store.connect() as conn:
            now = data_as_of(conn)
            out = (card.profile(conn, cx_id), card.customer_timeline(conn, cx_id, limit=200),
                   card.recent_signals(conn, cx_id, now=now), card.open_tickets(conn, cx_id),
                   card.recent_contacts(conn, cx_id))
        return out, activation.customer_score(store, cx_id)

    return [
        ("card.find_customers", _with_conn(lambda c: card.find_customers(c, "CUS-0000123"))),
        ("card (top at-risk customer)", one_card),
    ]


def _model() -> list[Computation]:
    from cxdash import model

    return [("model.model_versions", model.model_versions)]


PAGES: dict[str, Callable[[], list[Computation]]] = {
    "overview": _overview,
    "data_health": _data_health,
    "journeys": _journeys,
    "executive": _executive,
    "at_risk": _at_risk,
    "customer_card": _customer_card,
    "model": _model,
}
