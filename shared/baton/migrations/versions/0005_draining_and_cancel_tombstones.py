"""draining attempts (cancel requests to the algorithm), refused callbacks of an
attempt, and cancels kept for tasks that have not arrived yet

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE_OPTIONS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    with op.batch_alter_table("task_execution", schema=None) as batch_op:
        batch_op.add_column(sa.Column("drain_until", TIMESTAMP, nullable=True))
        batch_op.add_column(sa.Column("drained_at", TIMESTAMP, nullable=True))
        batch_op.add_column(sa.Column("cancel_reason", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("cancel_tries", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("cancel_http_status", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("refused_callbacks", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("last_refusal", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_task_execution_drain_until", ["drain_until"], unique=False)
    op.create_table(
        "cancel_tombstone",
        sa.Column("app", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=1024), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("app", "idempotency_key", name=op.f("pk_cancel_tombstone")),
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_cancel_tombstone_expires_at", "cancel_tombstone", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_cancel_tombstone_expires_at", table_name="cancel_tombstone")
    op.drop_table("cancel_tombstone")
    with op.batch_alter_table("task_execution", schema=None) as batch_op:
        batch_op.drop_index("ix_task_execution_drain_until")
        for column in (
            "last_refusal",
            "refused_callbacks",
            "cancel_http_status",
            "cancel_tries",
            "cancel_reason",
            "drained_at",
            "drain_until",
        ):
            batch_op.drop_column(column)
