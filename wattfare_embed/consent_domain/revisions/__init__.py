"""The consent domain's Alembic revisions (``versions/``, one file per schema change), and ``migrations``.

A new revision: ``python -m wattfare_embed.consent_domain.revisions "what changed"`` after
changing ``consent_domain/schema.py`` (README, "Adding a revision").
"""

from __future__ import annotations

from ...store._migrations import Migrations
from ..schema import metadata

__all__ = ["migrations"]

migrations = Migrations(
    label="consent domain",
    script_location="wattfare_embed.consent_domain:revisions",
    version_table="wcd_alembic_version",
    metadata=metadata,
    table_prefix="wcd_",
    legacy_marker="wcd_apps",
    first_revision="wcd_0001",
    command="wattfare consent-domain migrate",
)
