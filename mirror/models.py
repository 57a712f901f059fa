"""The mirror's tables: `images`, `image_versions`, `orders`, `sync_runs`, `sync_failures`
(spec §4, §7, §8).

Column names of `images` are the API's field names, so SQL reads like the API docs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from mirror.payload import as_utc

# Named constraints from the first migration on: SQLite's batch mode needs names to alter them.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSON null is stored as SQL NULL (spec §5), on both databases.
JSONDocument = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp: `timestamptz` on Postgres, ISO-like text on SQLite.

    SQLite keeps no zone, so values are converted to UTC on the way in and marked UTC on the
    way out; callers always see aware datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return as_utc(value)


# Columns are declared by type (`sa_type`), not as Column objects: a Column belongs to one
# table, and `images` and `image_versions` share their API-derived columns (ImageContent).
def _text(*, index: bool = False) -> Any:
    return Field(default=None, sa_type=Text, index=index)


def _bool() -> Any:
    return Field(default=None)


def _bigint(*, index: bool = False) -> Any:
    return Field(default=None, sa_type=BigInteger, index=index)


def _json() -> Any:
    return Field(default=None, sa_type=JSONDocument, nullable=True)


def _count() -> Any:
    return Field(default=0, sa_column=Column(Integer, nullable=False, default=0))


def _added_count() -> Any:
    """A count added to an existing table: past rows read 0."""
    return Field(
        default=0,
        sa_column=Column(Integer, nullable=False, default=0, server_default=text("0")),
    )


def _timestamp(*, nullable: bool) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable)


class ImageContent(SQLModel):
    """The API-derived columns of an image, as `images` and `image_versions` both hold them
    (spec §8: the same names and types). Column names are the API's field names, so SQL
    reads like the API docs."""

    ai_version: str | None = _text()
    cloud_type: str | None = _text()
    date_added: int | None = _bigint()  # as sent: epoch milliseconds
    date_added_at: datetime | None = _timestamp(nullable=True)  # the same instant, UTC
    downloaded: bool | None = _bool()
    enhance: bool | None = _bool()
    enhance_type: str | None = _text()
    finetune_settings: Any = _json()
    image_name: str | None = _text()
    lens_correction: bool | None = _bool()
    order_id: str | None = _text()
    parent_image_id: str | None = _text()
    preset_id: str | None = _text()
    privacy: bool | None = _bool()
    rating: int | None = _bigint()
    restage: Any = _json()
    scene: str | None = _text()
    sky_replacement: bool | None = _bool()
    status: str | None = _text()
    status_reason: str | None = _text()
    upscale: bool | None = _bool()
    user_id: str | None = _text()
    vertical_correction: bool | None = _bool()
    window_pull_type: str | None = _text()
    # Every property of the response without a column of its own, and wrong-typed values.
    extra: Any = Field(default=None, sa_type=JSONDocument, nullable=False)
    # Digest of the API's content, so an unchanged image costs one small UPDATE.
    content_hash: str = Field(sa_type=Text, nullable=False)


class Image(ImageContent, table=True):
    """One row per image: the latest state the API reported, plus bookkeeping."""

    __tablename__ = "images"
    __table_args__ = tuple(
        Index(f"ix_images_{name}", name)
        for name in ("date_added", "order_id", "parent_image_id", "scene", "status")
    )

    # Canonical lower-case hyphenated UUID text on both databases, so
    # `WHERE image_id = '<uuid>'` needs no cast anywhere.
    image_id: str = Field(sa_column=Column(Text, primary_key=True))
    first_synced_at: datetime = _timestamp(nullable=False)
    last_synced_at: datetime = _timestamp(nullable=False)
    last_changed_at: datetime = _timestamp(nullable=False)
    deleted_at: datetime | None = _timestamp(nullable=True)


class ImageVersion(ImageContent, table=True):
    """One row per version of an image the mirror has seen (spec §8): the API-derived
    columns of `images` as they were from `valid_from` until `valid_to` (NULL: current).

    Written in the transaction that writes the `images` row; an unchanged fetch writes none.
    """

    __tablename__ = "image_versions"
    __table_args__ = (
        Index("ix_image_versions_image_id_valid_from", "image_id", "valid_from"),
        Index("ix_image_versions_status_valid_from", "status", "valid_from"),
        # At most one open version per image, enforced by the database itself.
        Index(
            "uq_image_versions_open",
            "image_id",
            unique=True,
            sqlite_where=text("valid_to IS NULL"),
            postgresql_where=text("valid_to IS NULL"),
        ),
    )

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    )
    image_id: str = Field(sa_column=Column(Text, ForeignKey("images.image_id"), nullable=False))
    # The run that wrote it; NULL for versions opened by the migration that added the table.
    run_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("sync_runs.id"), nullable=True)
    )
    valid_from: datetime = _timestamp(nullable=False)
    valid_to: datetime | None = _timestamp(nullable=True)


class Order(SQLModel, table=True):
    """One row per order: the latest state the API reported (its images are `images` rows
    whose order_id is this one), plus the same bookkeeping as images."""

    __tablename__ = "orders"

    # Opaque text chosen by the API's users: not always a UUID.
    order_id: str = Field(sa_column=Column(Text, primary_key=True))
    name: str | None = _text()
    status: str | None = _text(index=True)
    created_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime, nullable=True, index=True)
    )
    last_updated_at: datetime | None = _timestamp(nullable=True)
    is_deleted: bool | None = _bool()
    is_merging: bool | None = _bool()
    is_processing: bool | None = _bool()
    total_images: int | None = _bigint()
    default_image_sort_order: str | None = _text()
    extra: Any = Field(default=None, sa_column=Column(JSONDocument, nullable=False))

    content_hash: str = Field(sa_column=Column(Text, nullable=False))
    first_synced_at: datetime = _timestamp(nullable=False)
    last_synced_at: datetime = _timestamp(nullable=False)
    last_changed_at: datetime = _timestamp(nullable=False)
    deleted_at: datetime | None = _timestamp(nullable=True)


class SyncRun(SQLModel, table=True):
    """One row per `sync`, created as `running` and closed with its counts."""

    __tablename__ = "sync_runs"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    started_at: datetime = _timestamp(nullable=False)
    finished_at: datetime | None = _timestamp(nullable=True)
    # running, succeeded, partial, failed, interrupted
    status: str = Field(sa_column=Column(Text, nullable=False))
    requested: int = _count()
    inserted: int = _count()
    updated: int = _count()
    unchanged: int = _count()
    deleted: int = _count()
    not_found: int = _count()
    failed: int = _count()
    # Orders, counted like images; every request sent, retries and listing pages included.
    orders_requested: int = _added_count()
    orders_inserted: int = _added_count()
    orders_updated: int = _added_count()
    orders_unchanged: int = _added_count()
    orders_deleted: int = _added_count()
    orders_not_found: int = _added_count()
    orders_failed: int = _added_count()
    api_requests: int = _added_count()
    error: str | None = _text()
    # Who runs it, so a second sync can say who holds the lock.
    pid: int | None = Field(default=None, sa_column=Column(Integer))
    host: str | None = _text()
    # The time stamped on the rows of its latest commit: a killed run's row tells when it
    # stopped writing, and the next run's clock starts after it (mirror/clock.py).
    last_written_at: datetime | None = _timestamp(nullable=True)


class SyncFailure(SQLModel, table=True):
    """One row per image, order or listing page that a run could not mirror."""

    __tablename__ = "sync_failures"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    run_id: int = Field(
        sa_column=Column(Integer, ForeignKey("sync_runs.id"), nullable=False, index=True)
    )
    # NULL for an order's or a listing page's failure (spec §7)
    image_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True, index=True))
    order_id: str | None = _text(index=True)
    # not_found, http_error, timeout, connection, invalid_payload
    kind: str = Field(sa_column=Column(Text, nullable=False))
    http_status: int | None = Field(default=None, sa_column=Column(Integer))
    message: str = Field(sa_column=Column(Text, nullable=False))
    occurred_at: datetime = _timestamp(nullable=False)


images_table = Image.__table__  # type: ignore[attr-defined]
image_versions_table = ImageVersion.__table__  # type: ignore[attr-defined]
orders_table = Order.__table__  # type: ignore[attr-defined]
sync_runs_table = SyncRun.__table__  # type: ignore[attr-defined]
sync_failures_table = SyncFailure.__table__  # type: ignore[attr-defined]
