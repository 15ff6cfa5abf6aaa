"""circuit breaker state: the breaker table, one row per connection (bridge.breakers)

Lets `itsm-bridge status` in another process show an open breaker, and a restarted daemon keep
waiting out a desk that is down instead of hammering it. Nothing to backfill: a missing row is a
closed breaker.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "breaker",
        sa.Column("connection", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("opened_at", TIME, nullable=True),
        sa.Column("reopens_at", TIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("connection"),
    )


def downgrade() -> None:
    op.drop_table("breaker")
