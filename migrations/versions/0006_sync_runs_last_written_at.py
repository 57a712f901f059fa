"""sync_runs: last_written_at, the time stamped on the rows of a run's latest commit.

A run's row is kept current batch by batch; this is when it last wrote, so that a run killed
midway tells when it stopped writing, and the next run's clock never reads a time before it
(see `mirror/clock.py`). NULL for runs written before this revision.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 23:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch_op:
        batch_op.add_column(sa.Column("last_written_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch_op:
        batch_op.drop_column("last_written_at")
