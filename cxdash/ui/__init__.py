"""The UI layer: the only part of cxdash that imports streamlit (caching, session state, widgets)."""
