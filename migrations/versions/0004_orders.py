"""orders (spec §7); order counts and api_requests on sync_runs; sync_failures.order_id.

Every existing row is kept: the new counts of past runs are 0, their failures keep their
image_id. Downgrading drops the orders table and the failures of orders and listing pages
(they have no image_id, which 0003 requires).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 22:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model types, so this revision never changes when models.py does.
TIMESTAMP = sa.DateTime(timezone=True)
JSON_DOCUMENT = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
)
RUN_COUNTS = (
    "orders_requested",
    "orders_inserted",
    "orders_updated",
    "orders_unchanged",
    "orders_deleted",
    "orders_not_found",
    "orders_failed",
    "api_requests",
)


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=True),
        sa.Column("last_updated_at", TIMESTAMP, nullable=True),
        sa.Column("is_deleted", sa.Boolean(), nullable=True),
        sa.Column("is_merging", sa.Boolean(), nullable=True),
        sa.Column("is_processing", sa.Boolean(), nullable=True),
        sa.Column("total_images", sa.BigInteger(), nullable=True),
        sa.Column("default_image_sort_order", sa.Text(), nullable=True),
        sa.Column("extra", JSON_DOCUMENT, nullable=False),
        sa.Column("content_hash", sa.Text(), nullable=False),
        sa.Column("first_synced_at", TIMESTAMP, nullable=False),
        sa.Column("last_synced_at", TIMESTAMP, nullable=False),
        sa.Column("last_changed_at", TIMESTAMP, nullable=False),
        sa.Column("deleted_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_orders")),
    )
    op.create_index(op.f("ix_orders_status"), "orders", ["status"], unique=False)
    op.create_index(op.f("ix_orders_created_at"), "orders", ["created_at"], unique=False)
    with op.batch_alter_table("sync_runs") as batch_op:
        for name in RUN_COUNTS:
            batch_op.add_column(
                sa.Column(name, sa.Integer(), nullable=False, server_default=sa.text("0"))
            )
    with op.batch_alter_table("sync_failures") as batch_op:
        batch_op.add_column(sa.Column("order_id", sa.Text(), nullable=True))
        batch_op.alter_column("image_id", existing_type=sa.Text(), nullable=True)
        batch_op.create_index(batch_op.f("ix_sync_failures_order_id"), ["order_id"], unique=False)


def downgrade() -> None:
    op.execute("DELETE FROM sync_failures WHERE image_id IS NULL")
    with op.batch_alter_table("sync_failures") as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_failures_order_id"))
        batch_op.alter_column("image_id", existing_type=sa.Text(), nullable=False)
        batch_op.drop_column("order_id")
    with op.batch_alter_table("sync_runs") as batch_op:
        for name in reversed(RUN_COUNTS):
            batch_op.drop_column(name)
    op.drop_index(op.f("ix_orders_created_at"), table_name="orders")
    op.drop_index(op.f("ix_orders_status"), table_name="orders")
    op.drop_table("orders")
