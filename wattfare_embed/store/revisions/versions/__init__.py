"""One module per revision, named ``wattfare_NNNN_<what changed>.py``; Alembic loads them by path."""
