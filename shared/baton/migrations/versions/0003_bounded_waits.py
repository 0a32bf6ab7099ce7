"""queue and total deadlines of a task, its first acceptance; algorithms gone from the
registry

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE_OPTIONS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_accepted_at", TIMESTAMP, nullable=True))
        batch_op.add_column(sa.Column("queue_deadline", TIMESTAMP, nullable=True))
        batch_op.add_column(sa.Column("total_deadline", TIMESTAMP, nullable=True))
        batch_op.create_index(
            "ix_task_status_queue_deadline", ["status", "queue_deadline"], unique=False
        )
        batch_op.create_index(
            "ix_task_status_total_deadline", ["status", "total_deadline"], unique=False
        )
    # A task that ran before this revision was accepted when it was first dispatched.
    op.execute(
        "UPDATE task SET first_accepted_at = first_dispatched_at "
        "WHERE first_dispatched_at IS NOT NULL"
    )
    op.create_table(
        "policy_gap",
        sa.Column("algorithm", sa.String(length=64), nullable=False),
        sa.Column("since", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("algorithm", name=op.f("pk_policy_gap")),
        **TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("policy_gap")
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_index("ix_task_status_total_deadline")
        batch_op.drop_index("ix_task_status_queue_deadline")
        batch_op.drop_column("total_deadline")
        batch_op.drop_column("queue_deadline")
        batch_op.drop_column("first_accepted_at")
