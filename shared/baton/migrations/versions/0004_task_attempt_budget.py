"""the attempt budget a task message asked for, kept for operator retries

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # max_attempts grows with every retry and every abandoned attempt, so it no longer
    # says what the message asked for; a retry needs that to give a fresh budget.
    # NULL: the message left it to the algorithm (read again at the retry).
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempt_budget", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_column("attempt_budget")
