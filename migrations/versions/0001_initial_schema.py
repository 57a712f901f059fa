"""Initial schema: images, sync_runs, sync_failures (spec §4).

Revision ID: 0001
Revises:
Create Date: 2026-11-24 08:36:51.790405
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model types, so this revision never changes when models.py does.
TIMESTAMP = sa.DateTime(timezone=True)
JSON_DOCUMENT = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
)


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("image_id", sa.Text(), nullable=False),
        sa.Column("ai_version", sa.Text(), nullable=True),
        sa.Column("cloud_type", sa.Text(), nullable=True),
        sa.Column("date_added", sa.BigInteger(), nullable=True),
        sa.Column("date_added_at", TIMESTAMP, nullable=True),
        sa.Column("downloaded", sa.Boolean(), nullable=True),
        sa.Column("enhance", sa.Boolean(), nullable=True),
        sa.Column("enhance_type", sa.Text(), nullable=True),
        sa.Column("finetune_settings", JSON_DOCUMENT, nullable=True),
        sa.Column("image_name", sa.Text(), nullable=True),
        sa.Column("lens_correction", sa.Boolean(), nullable=True),
        sa.Column("order_id", sa.Text(), nullable=True),
        sa.Column("parent_image_id", sa.Text(), nullable=True),
        sa.Column("preset_id", sa.Text(), nullable=True),
        sa.Column("privacy", sa.Boolean(), nullable=True),
        sa.Column("rating", sa.BigInteger(), nullable=True),
        sa.Column("restage", JSON_DOCUMENT, nullable=True),
        sa.Column("scene", sa.Text(), nullable=True),
        sa.Column("sky_replacement", sa.Boolean(), nullable=True),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("upscale", sa.Boolean(), nullable=True),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("vertical_correction", sa.Boolean(), nullable=True),
        sa.Column("window_pull_type", sa.Text(), nullable=True),
        sa.Column("extra", JSON_DOCUMENT, nullable=False),
        sa.Column("content_hash", sa.Text(), nullable=False),
        sa.Column("first_synced_at", TIMESTAMP, nullable=False),
        sa.Column("last_synced_at", TIMESTAMP, nullable=False),
        sa.Column("last_changed_at", TIMESTAMP, nullable=False),
        sa.Column("deleted_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("image_id", name=op.f("pk_images")),
    )
    op.create_index(op.f("ix_images_date_added"), "images", ["date_added"], unique=False)
    op.create_index(op.f("ix_images_order_id"), "images", ["order_id"], unique=False)
    op.create_index(op.f("ix_images_parent_image_id"), "images", ["parent_image_id"], unique=False)
    op.create_index(op.f("ix_images_scene"), "images", ["scene"], unique=False)
    op.create_index(op.f("ix_images_status"), "images", ["status"], unique=False)
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("requested", sa.Integer(), nullable=False),
        sa.Column("inserted", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.Column("not_found", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
    )
    op.create_table(
        "sync_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("occurred_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_runs.id"], name=op.f("fk_sync_failures_run_id_sync_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_failures")),
    )
    op.create_index(op.f("ix_sync_failures_image_id"), "sync_failures", ["image_id"], unique=False)
    op.create_index(op.f("ix_sync_failures_run_id"), "sync_failures", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_sync_failures_run_id"), table_name="sync_failures")
    op.drop_index(op.f("ix_sync_failures_image_id"), table_name="sync_failures")
    op.drop_table("sync_failures")
    op.drop_table("sync_runs")
    op.drop_index(op.f("ix_images_status"), table_name="images")
    op.drop_index(op.f("ix_images_scene"), table_name="images")
    op.drop_index(op.f("ix_images_parent_image_id"), table_name="images")
    op.drop_index(op.f("ix_images_order_id"), table_name="images")
    op.drop_index(op.f("ix_images_date_added"), table_name="images")
    op.drop_table("images")
