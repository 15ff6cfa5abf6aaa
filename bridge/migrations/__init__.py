"""The Alembic migration environment that ships inside itsm-bridge (no alembic.ini: `bridge.migrate` builds the config).

Adding a column or table to `bridge/store.py` or `compliance/store.py` needs a revision here too;
``tests/test_migrations.py`` fails until the migrations build exactly what the tables in code describe.
Draft one with ``itsm-bridge db revision -m "what changed"`` and review it before committing.
"""
