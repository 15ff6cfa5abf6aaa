"""Alembic's entry point, run by `bridge.migrate` on the connection (and transaction) it already holds.

The caller holds the transaction, and on PostgreSQL the advisory lock, so two daemons starting at
once cannot both migrate and a failed migration leaves the database as it was. There is no offline
(``--sql``) mode and no alembic.ini: the connection is the only input.
"""

from __future__ import annotations

from alembic import context

from bridge.migrate import migration_options

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("run migrations through `itsm-bridge db upgrade` (bridge.migrate), which passes "
                       "the database connection; there is no alembic.ini or offline mode")

context.configure(connection=connection, **migration_options(connection.dialect.name))
with context.begin_transaction():
    context.run_migrations()
