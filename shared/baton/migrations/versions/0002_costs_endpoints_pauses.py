"""task cost; promotion by app; the app, cost and endpoint of each attempt; pauses

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE_OPTIONS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cost", sa.Integer(), nullable=False, server_default="1"))
        # Promotion goes app by app (each app's backlog is promoted fairly): the app
        # joins the index right after the status.
        batch_op.drop_index("ix_task_promotion")
        batch_op.create_index(
            "ix_task_promotion",
            ["algorithm", "status", "app", sa.literal_column("priority DESC"), "created_at"],
            unique=False,
        )
    # The app and cost of an attempt are copied onto its execution row (as its algorithm
    # is) so that the sweep and reconcile read one index, with no join.
    with op.batch_alter_table("task_execution", schema=None) as batch_op:
        batch_op.add_column(sa.Column("app", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("cost", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("endpoint", sa.String(length=1024), nullable=True))
    op.execute(
        "UPDATE task_execution SET app = "
        "(SELECT task.app FROM task WHERE task.id = task_execution.task_id)"
    )
    with op.batch_alter_table("task_execution", schema=None) as batch_op:
        batch_op.alter_column("app", existing_type=sa.String(length=64), nullable=False)

    op.create_table(
        "algorithm_hold",
        sa.Column("algorithm", sa.String(length=64), nullable=False),
        sa.Column("held_at", TIMESTAMP, nullable=False),
        sa.Column("reason", sa.String(length=1024), nullable=False),
        sa.PrimaryKeyConstraint("algorithm", name=op.f("pk_algorithm_hold")),
        **TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("algorithm_hold")
    with op.batch_alter_table("task_execution", schema=None) as batch_op:
        batch_op.drop_column("endpoint")
        batch_op.drop_column("cost")
        batch_op.drop_column("app")
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_index("ix_task_promotion")
        batch_op.create_index(
            "ix_task_promotion",
            ["algorithm", "status", sa.literal_column("priority DESC"), "created_at"],
            unique=False,
        )
        batch_op.drop_column("cost")
