"""Revision scripts, named ``NNNN_slug.py`` with revision id ``NNNN``; Alembic skips this file."""
