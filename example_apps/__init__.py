"""Runnable example apps, one per framework; ``fastapi_chat`` is the ``make demo`` app."""
