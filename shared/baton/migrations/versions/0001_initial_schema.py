"""task, task_execution and notification_outbox

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Types are spelled out here, not imported from baton.models: a migration must keep
# meaning what it meant when it was written.
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
JSON_DOCUMENT = sa.JSON().with_variant(mysql.JSON(), "mysql", "mariadb")
TABLE_OPTIONS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "task",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("app", sa.String(length=64), nullable=False),
        sa.Column("algorithm", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("input", JSON_DOCUMENT, nullable=False),
        sa.Column("metadata", JSON_DOCUMENT, nullable=False),
        sa.Column("timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", TIMESTAMP, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("queued_at", TIMESTAMP, nullable=True),
        sa.Column("first_dispatched_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.String(length=1024), nullable=True),
        sa.Column("result_key", sa.String(length=1024), nullable=True),
        sa.Column("notification_id", sa.String(length=36), nullable=True),
        sa.Column("notified_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task")),
        sa.UniqueConstraint("app", "idempotency_key", name=op.f("uq_task_app_idempotency_key")),
        **TABLE_OPTIONS,
    )
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.create_index(
            "ix_task_promotion",
            ["algorithm", "status", sa.literal_column("priority DESC"), "created_at"],
            unique=False,
        )
        batch_op.create_index("ix_task_status_updated", ["status", "updated_at"], unique=False)

    op.create_table(
        "notification_outbox",
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("notification_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("claimed_until", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["task.id"],
            name=op.f("fk_notification_outbox_task_id_task"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_notification_outbox")),
        **TABLE_OPTIONS,
    )
    with op.batch_alter_table("notification_outbox", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notification_outbox_created_at"), ["created_at"], unique=False
        )

    op.create_table(
        "task_execution",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("algorithm", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("result_key", sa.String(length=1024), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("deadline", TIMESTAMP, nullable=False),
        sa.Column("upload_expires_at", TIMESTAMP, nullable=False),
        sa.Column("accepted_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.String(length=1024), nullable=True),
        sa.Column("progress", sa.Integer(), nullable=True),
        sa.Column("progress_message", sa.Text(), nullable=True),
        sa.Column("heartbeat_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["task.id"],
            name=op.f("fk_task_execution_task_id_task"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_execution")),
        sa.UniqueConstraint("task_id", "attempt", name=op.f("uq_task_execution_task_id_attempt")),
        **TABLE_OPTIONS,
    )
    with op.batch_alter_table("task_execution", schema=None) as batch_op:
        batch_op.create_index(
            "ix_task_execution_status_deadline", ["status", "deadline"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("task_execution", schema=None) as batch_op:
        batch_op.drop_index("ix_task_execution_status_deadline")

    op.drop_table("task_execution")
    with op.batch_alter_table("notification_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notification_outbox_created_at"))

    op.drop_table("notification_outbox")
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_index("ix_task_status_updated")
        batch_op.drop_index("ix_task_promotion")

    op.drop_table("task")
