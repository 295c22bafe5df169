"""The demo company: a generated world of customers across five departments, loaded like real extracts.
Owns the world's parameters and generators, and the build that loads them through ingest.
Used by the CLI and the tests; nothing in the app depends on it.
"""
