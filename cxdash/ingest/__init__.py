"""Ingest: read a file, guess its kind, map its columns, validate its values and write one load.
Owns the readers, kind guessing, mappings, value parsing and the transactional load.
Imports only the store and identity; what runs after a load lives in cxdash.jobs.
"""

from cxdash.ingest.errors import MappingError
from cxdash.ingest.identifiers import normalise_identity
from cxdash.ingest.load import IngestError, IngestResult, KindUnclearError, ingest_file, saved_mapping
from cxdash.ingest.mapping import Mapping, load_mapping, rank_kinds, suggest_mapping
from cxdash.ingest.readers import ExtractError

__all__ = [
    "ExtractError",
    "IngestError",
    "IngestResult",
    "KindUnclearError",
    "Mapping",
    "MappingError",
    "ingest_file",
    "load_mapping",
    "normalise_identity",
    "rank_kinds",
    "saved_mapping",
    "suggest_mapping",
]
