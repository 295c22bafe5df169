"""Ingest: read a file, guess its kind, map its columns, validate its values and write one load.
Owns the readers, kind guessing, mappings, value parsing and the transactional load.
Imports only the store and identity; what runs after a load lives in cxdash.jobs.
"""
