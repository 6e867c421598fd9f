"""Alembic's entry point for the embed's tables; ``Migrations`` passes everything it needs."""

from wattfare_embed.store._migrations import run_environment

run_environment()
