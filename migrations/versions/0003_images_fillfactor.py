"""images: leave free space in each page on PostgreSQL, so touching last_synced_at is HOT.

Every sync rewrites `last_synced_at` of every unchanged image. With full pages PostgreSQL must
put the new row version elsewhere and add entries to all six indexes; with 30 % free space it
updates in place (a heap-only tuple): re-syncing unchanged images became ~1.5x faster
(bench/storage.py). SQLite has no such setting: nothing to do there.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 09:25:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE images SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE images RESET (fillfactor)")
