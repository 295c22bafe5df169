"""The store: engines, table definitions, migrations, bulk writes, the data version and the audit log.
Owns the kinds of extract (what each source table holds) and every app-state table.
Imports nothing else from cxdash but config.
"""
