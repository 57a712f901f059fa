"""Writes: batched image upserts with change detection, run rows and failure rows.

Each batch is one transaction, so a killed process leaves every row as it was or fully updated.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import func

from mirror.api import FailureKind
from mirror.models import images_table, sync_failures_table, sync_runs_table
from mirror.payload import CONTENT_COLUMNS, ImageRow


@dataclass
class Counts:
    """Per-run tallies; `requested` minus the rest is what was never tried."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    not_found: int = 0
    failed: int = 0

    def add(self, other: Counts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Failure:
    image_id: str
    kind: FailureKind
    message: str
    http_status: int | None = None


@dataclass
class Batch:
    """What a slice of the run fetched: rows to upsert, 404s, and other failures."""

    rows: list[ImageRow]
    missing: list[str]  # answered 404
    failures: list[Failure]

    def __len__(self) -> int:
        return len(self.rows) + len(self.missing) + len(self.failures)


def start_run(engine: Engine, *, requested: int, now: datetime) -> int:
    """Record a new run as `running`; runs left `running` by a dead process become interrupted.

    Only called with the sync lock held, so any other `running` row is an abandoned one.
    """
    with engine.begin() as connection:
        connection.execute(
            update(sync_runs_table)
            .where(sync_runs_table.c.status == "running")
            .values(
                status="interrupted",
                finished_at=now,
                error="abandoned: its process ended before finishing (killed or crashed)",
            )
        )
        result = connection.execute(
            insert(sync_runs_table)
            .values(
                started_at=now,
                status="running",
                requested=requested,
                pid=os.getpid(),
                host=socket.gethostname(),
            )
            .returning(sync_runs_table.c.id)
        )
        return int(result.scalar_one())


def finish_run(
    engine: Engine,
    *,
    run_id: int,
    status: str,
    counts: Counts,
    now: datetime,
    error: str | None = None,
) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(sync_runs_table)
            .where(sync_runs_table.c.id == run_id)
            .values(status=status, finished_at=now, error=error, **counts.as_dict())
        )


def apply_batch(
    engine: Engine, *, batch: Batch, run_id: int | None, now: datetime, dry_run: bool = False
) -> tuple[Counts, list[Failure]]:
    """Upsert a batch in one transaction and add its counts to the run's row.

    Returns the batch's counts and its failures (404s of images never mirrored included).
    With `dry_run` only reads: the counts say what would happen.
    """
    with engine.begin() as connection:
        known = _known_images(connection, [r.image_id for r in batch.rows] + batch.missing)
        counts = Counts()
        to_upsert: list[dict[str, Any]] = []
        unchanged_ids: list[str] = []
        for row in batch.rows:
            previous = known.get(row.image_id)
            if previous is None:
                counts.inserted += 1
            elif previous == (row.columns["content_hash"], False):
                counts.unchanged += 1
                unchanged_ids.append(row.image_id)
                continue
            else:
                counts.updated += 1
            to_upsert.append(
                {
                    "image_id": row.image_id,
                    **row.columns,
                    "first_synced_at": now,
                    "last_synced_at": now,
                    "last_changed_at": now,
                    "deleted_at": None,
                }
            )
        deleted_ids = [image_id for image_id in batch.missing if image_id in known]
        failures = list(batch.failures) + [
            Failure(image_id, "not_found", "HTTP 404: the API does not know this image", 404)
            for image_id in batch.missing
            if image_id not in known
        ]
        counts.deleted = len(deleted_ids)
        counts.not_found = len(batch.missing) - len(deleted_ids)
        counts.failed = len(batch.failures)
        if dry_run:
            return counts, failures

        if to_upsert:
            connection.execute(_upsert_statement(connection), to_upsert)
        if unchanged_ids:
            connection.execute(
                update(images_table)
                .where(images_table.c.image_id.in_(unchanged_ids))
                .values(last_synced_at=now)
            )
        if deleted_ids:
            connection.execute(
                update(images_table)
                .where(images_table.c.image_id.in_(deleted_ids))
                .values(deleted_at=func.coalesce(images_table.c.deleted_at, now))
            )
        if failures and run_id is not None:
            connection.execute(
                insert(sync_failures_table),
                [
                    {
                        "run_id": run_id,
                        "image_id": f.image_id,
                        "kind": f.kind,
                        "http_status": f.http_status,
                        "message": f.message,
                        "occurred_at": now,
                    }
                    for f in failures
                ],
            )
        if run_id is not None:
            _add_to_run(connection, run_id, counts)
        return counts, failures


def _known_images(connection: Connection, image_ids: Sequence[str]) -> dict[str, tuple[str, bool]]:
    """image_id → (content_hash, is_deleted) for those of `image_ids` already mirrored."""
    if not image_ids:
        return {}
    t = images_table.c
    rows = connection.execute(
        select(t.image_id, t.content_hash, t.deleted_at.is_not(None)).where(
            t.image_id.in_(image_ids)
        )
    )
    return {image_id: (digest, bool(deleted)) for image_id, digest, deleted in rows}


def _upsert_statement(connection: Connection) -> Any:
    """INSERT ... ON CONFLICT (image_id) DO UPDATE of every content column, in the dialect's SQL."""
    dialect_insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    stmt = dialect_insert(images_table)
    replaced = [*CONTENT_COLUMNS, "last_synced_at", "last_changed_at", "deleted_at"]
    return stmt.on_conflict_do_update(
        index_elements=[images_table.c.image_id],
        set_={name: stmt.excluded[name] for name in replaced},
    )


def _add_to_run(connection: Connection, run_id: int, counts: Counts) -> None:
    """Keep the run's row current batch by batch, so an aborted run still tells what it did."""
    c = sync_runs_table.c
    increments = {name: c[name] + value for name, value in counts.as_dict().items() if value}
    if increments:
        connection.execute(update(sync_runs_table).where(c.id == run_id).values(increments))
