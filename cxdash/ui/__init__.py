"""The UI layer: the only part of cxdash that imports streamlit (caching keyed on the data version,
session state, widgets, the formatting layer, disclosure of aggregates and downloads).
Pages import these modules by name (``from cxdash.ui import journeys as ju``); nothing is re-exported.
"""
