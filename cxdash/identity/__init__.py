"""Identity: who is the same customer across departments' extracts.
Owns the stitching of identifiers into customer keys and the links between extracts.
Imports only the store.
"""

from cxdash.identity.links import parse_link, resolve_links, suggest_links
from cxdash.identity.stitch import customer_label, rebuild_identity_map, rebuild_if_pending, stitch, update_identity_map

__all__ = [
    "customer_label",
    "parse_link",
    "rebuild_identity_map",
    "rebuild_if_pending",
    "resolve_links",
    "stitch",
    "suggest_links",
    "update_identity_map",
]
