"""The errors the ingest path raises about a file or its mapping (readers raise ``ExtractError``)."""

from __future__ import annotations

__all__ = ["MappingError"]


class MappingError(ValueError):
    """The mapping does not fit the file or the kind; the message says which field and how to fix it."""
