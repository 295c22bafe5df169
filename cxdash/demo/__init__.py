"""The demo company: a generated world of customers across five departments, loaded like real extracts.
Owns the world's parameters and generators, and the build that loads them through ingest.
Used by the CLI and the tests; nothing in the app depends on it.
"""

from cxdash.demo.build import build_demo, load_demo_extracts
from cxdash.demo.world import FILES, HUB_EMAIL, MAX_CUSTOMERS, DemoExtract, write_demo_extracts

__all__ = [
    "FILES",
    "HUB_EMAIL",
    "MAX_CUSTOMERS",
    "DemoExtract",
    "build_demo",
    "load_demo_extracts",
    "write_demo_extracts",
]
