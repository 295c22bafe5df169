"""Journeys: where the cross-department journey breaks.
Owns the journey log, process discovery (graph, paths, variants), funnels, handoffs and friction hotspots.
Reads the store and metrics.
"""

from cxdash.journeys.cohorts import customer_outcomes, customer_segments
from cxdash.journeys.discovery import (
    DFG_COLUMNS,
    VARIANT_SEPARATOR,
    activity_counts,
    activity_nodes,
    dfg_counts,
    dfg_query,
    discover_dfg,
    discover_variants,
    edge_customers,
    end_activities,
    first_positions,
    journey_customers,
    journey_map,
    start_activities,
)
from cxdash.journeys.export import cohort_csv, customer_journey, hotspot_customers, mask_email, mask_phone
from cxdash.journeys.friction import CONTACT_PREFIX, HOTSPOT_DESCRIPTIONS, NONE, friction_moments, hotspots
from cxdash.journeys.funnels import funnel
from cxdash.journeys.handoffs import discover_handoffs, handoff_matrix
from cxdash.journeys.hotspot_stats import (
    ALPHA,
    HOTSPOT_COLUMNS,
    REPORT_COLUMNS,
    ranking_note,
    risk_ratio,
    significance_counts,
)
from cxdash.journeys.log import (
    OTHER,
    LogSpec,
    MapFilters,
    case_names,
    event_log_table,
    in_period,
    journey_log,
    journey_people,
    prepare_log,
)
from cxdash.journeys.paths import (
    OTHER_PATHS,
    PATH_COLUMNS,
    anchor_paths,
    path_links,
    path_steps,
    paths_from,
    paths_to,
)

__all__ = [
    "ALPHA",
    "CONTACT_PREFIX",
    "DFG_COLUMNS",
    "HOTSPOT_COLUMNS",
    "HOTSPOT_DESCRIPTIONS",
    "NONE",
    "OTHER",
    "OTHER_PATHS",
    "PATH_COLUMNS",
    "REPORT_COLUMNS",
    "VARIANT_SEPARATOR",
    "LogSpec",
    "MapFilters",
    "activity_counts",
    "activity_nodes",
    "anchor_paths",
    "case_names",
    "cohort_csv",
    "customer_journey",
    "customer_outcomes",
    "customer_segments",
    "dfg_counts",
    "dfg_query",
    "discover_dfg",
    "discover_handoffs",
    "discover_variants",
    "edge_customers",
    "end_activities",
    "event_log_table",
    "first_positions",
    "friction_moments",
    "funnel",
    "handoff_matrix",
    "hotspot_customers",
    "hotspots",
    "in_period",
    "journey_customers",
    "journey_log",
    "journey_map",
    "journey_people",
    "mask_email",
    "mask_phone",
    "path_links",
    "path_steps",
    "paths_from",
    "paths_to",
    "prepare_log",
    "ranking_note",
    "risk_ratio",
    "significance_counts",
    "start_activities",
]
