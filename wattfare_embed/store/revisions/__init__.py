"""The embed's Alembic revisions (``versions/``, one file per schema change), and ``migrations``.

A new revision: ``python -m wattfare_embed.store.revisions "what changed"`` after changing
``schema.py`` (README, "Adding a revision").
"""

from __future__ import annotations

from .._migrations import Migrations
from ..schema import metadata

__all__ = ["migrations"]

migrations = Migrations(
    label="wattfare",
    script_location="wattfare_embed.store:revisions",
    version_table="wattfare_alembic_version",
    metadata=metadata,
    table_prefix="wattfare_",
    legacy_marker="wattfare_schema_version",
    first_revision="wattfare_0001",
    command="wattfare migrate",
)
