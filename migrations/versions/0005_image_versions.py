"""image_versions: the history of every image (spec §8).

Opens one version per existing image, as it is now, from its `last_changed_at` (closed at
its `deleted_at` for an image deleted upstream: a deleted image has no open version).
Downgrading drops the table, and the history with it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model types, so this revision never changes when models.py does.
TIMESTAMP = sa.DateTime(timezone=True)
JSON_DOCUMENT = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
)
# The API-derived columns of `images` as of 0004, with their types.
CONTENT: tuple[tuple[str, sa.types.TypeEngine[object]], ...] = (
    ("ai_version", sa.Text()),
    ("cloud_type", sa.Text()),
    ("date_added", sa.BigInteger()),
    ("date_added_at", TIMESTAMP),
    ("downloaded", sa.Boolean()),
    ("enhance", sa.Boolean()),
    ("enhance_type", sa.Text()),
    ("finetune_settings", JSON_DOCUMENT),
    ("image_name", sa.Text()),
    ("lens_correction", sa.Boolean()),
    ("order_id", sa.Text()),
    ("parent_image_id", sa.Text()),
    ("preset_id", sa.Text()),
    ("privacy", sa.Boolean()),
    ("rating", sa.BigInteger()),
    ("restage", JSON_DOCUMENT),
    ("scene", sa.Text()),
    ("sky_replacement", sa.Boolean()),
    ("status", sa.Text()),
    ("status_reason", sa.Text()),
    ("upscale", sa.Boolean()),
    ("user_id", sa.Text()),
    ("vertical_correction", sa.Boolean()),
    ("window_pull_type", sa.Text()),
)
NOT_NULL = ("extra", "content_hash")
OPEN = sa.text("valid_to IS NULL")


def upgrade() -> None:
    op.create_table(
        "image_versions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("image_id", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("valid_from", TIMESTAMP, nullable=False),
        sa.Column("valid_to", TIMESTAMP, nullable=True),
        *(sa.Column(name, kind, nullable=True) for name, kind in CONTENT),
        sa.Column("extra", JSON_DOCUMENT, nullable=False),
        sa.Column("content_hash", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.image_id"],
            name=op.f("fk_image_versions_image_id_images"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_runs.id"], name=op.f("fk_image_versions_run_id_sync_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_versions")),
    )
    op.create_index(
        "ix_image_versions_image_id_valid_from", "image_versions", ["image_id", "valid_from"]
    )
    op.create_index(
        "ix_image_versions_status_valid_from", "image_versions", ["status", "valid_from"]
    )
    op.create_index(
        "uq_image_versions_open",
        "image_versions",
        ["image_id"],
        unique=True,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )
    copied = [name for name, _ in CONTENT] + list(NOT_NULL)
    images = sa.table(
        "images",
        *(sa.column(name) for name in ("image_id", "last_changed_at", "deleted_at", *copied)),
    )
    versions = sa.table(
        "image_versions",
        *(sa.column(name) for name in ("image_id", "valid_from", "valid_to", *copied)),
    )
    op.execute(
        versions.insert().from_select(
            ["image_id", "valid_from", "valid_to", *copied],
            sa.select(
                images.c.image_id,
                images.c.last_changed_at,
                images.c.deleted_at,
                *(images.c[name] for name in copied),
            ),
        )
    )


def downgrade() -> None:
    op.drop_index("uq_image_versions_open", table_name="image_versions")
    op.drop_index("ix_image_versions_status_valid_from", table_name="image_versions")
    op.drop_index("ix_image_versions_image_id_valid_from", table_name="image_versions")
    op.drop_table("image_versions")
