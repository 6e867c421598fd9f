"""One module per revision, named ``wcd_NNNN_<what changed>.py``; Alembic loads them by path."""
