"""link.target_answer: the ticket as the desk answered the bridge's last write to it

ServiceNow answers a PATCH with the whole record. Kept on the link with the moment of the write, it
serves as the read a refresh would otherwise make (a poll snapshot older than the bridge's own write):
no desk call for an echo. Nothing to backfill: without it a refresh reads the ticket, as before.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("link") as batch:
        batch.add_column(sa.Column("target_answer", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("link") as batch:
        batch.drop_column("target_answer")
