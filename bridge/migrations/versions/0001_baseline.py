"""baseline: the schema as of commit aa0c6a1, the last release without migrations

Written out table by table (not ``create_all``) so that it never changes when the models do. A
database created before migrations existed has exactly these tables; ``Store.upgrade`` stamps it
with this revision and migrates it from here. ``tests/test_migrations.py`` checks this revision
against the schema aa0c6a1's ``create_all`` produced, on SQLite and PostgreSQL.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 (commit aa0c6a1)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# sqlmodel maps `str` to VARCHAR without length and `datetime` to a timezone-aware DateTime
# (TIMESTAMP WITH TIME ZONE on PostgreSQL, DATETIME on SQLite).
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(), nullable=False),
        sa.Column("hash", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_audit_kind", "audit", ["kind"])

    op.create_table(
        "cursor",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )

    op.create_table(
        "dead_letter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("ref_id", sa.Integer(), nullable=True),
        sa.Column("connection", sa.String(), nullable=False),
        sa.Column("route", sa.String(), nullable=True),
        sa.Column("record_key", sa.String(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("resolved_at", TIME, nullable=True),
        sa.Column("resolution", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )

    op.create_table(
        "inbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection", sa.String(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("event_type", sa.String(), nullable=False),
        sa.Column("record_key", sa.String(), nullable=False),
        sa.Column("change", sa.Text(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("received_at", TIME, nullable=False),
        sa.Column("observed_at", TIME, nullable=False),
        sa.Column("processed_at", TIME, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("connection", "event_id", name="uq_inbox_event"),
    )
    op.create_index("ix_inbox_record_key", "inbox", ["record_key"])
    op.create_index("ix_inbox_status_id", "inbox", ["status", "id"])

    op.create_table(
        "incident_timeline",
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("opened_at", TIME, nullable=True),
        sa.Column("timeline", sa.Text(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("incident_id"),
    )
    op.create_index("ix_incident_timeline_opened_at", "incident_timeline", ["opened_at"])

    op.create_table(
        "link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("route", sa.String(), nullable=False),
        sa.Column("source_connection", sa.String(), nullable=False),
        sa.Column("source_id", sa.String(), nullable=False),
        sa.Column("target_connection", sa.String(), nullable=False),
        sa.Column("target_id", sa.String(), nullable=True),
        sa.Column("target_number", sa.String(), nullable=True),
        sa.Column("target_url", sa.String(), nullable=True),
        sa.Column("correlation_id", sa.String(), nullable=False),
        sa.Column("source_state", sa.Text(), nullable=False),
        sa.Column("target_seen", sa.Text(), nullable=False),
        sa.Column("target_written", sa.Text(), nullable=False),
        sa.Column("seen_entries", sa.Text(), nullable=False),
        sa.Column("pending_echo", sa.Text(), nullable=False),
        sa.Column("target_written_at", TIME, nullable=True),
        sa.Column("source_seen_at", TIME, nullable=True),
        sa.Column("field_times", sa.Text(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("route", "source_connection", "source_id", name="uq_link_source"),
    )
    op.create_index("ix_link_target", "link", ["target_connection", "target_id"])

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(), nullable=False),
        sa.Column("route", sa.String(), nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("connection", sa.String(), nullable=False),
        sa.Column("side", sa.String(), nullable=False),
        sa.Column("op", sa.String(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIME, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("done_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),  # unnamed, as Field(unique=True) made it
    )
    op.create_index("ix_outbox_link_id", "outbox", ["link_id"])
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])


def downgrade() -> None:
    for table in ("outbox", "link", "incident_timeline", "inbox", "dead_letter", "cursor", "audit"):
        op.drop_table(table)
