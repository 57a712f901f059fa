"""Writes of orders (spec §7): upserts with change detection, deletions, and which mirrored
images an order no longer embeds.

Called by `store.apply_batch` inside its transaction, so a batch's orders and images commit
together. Orders are ten to a thousand times fewer than images: SQLAlchemy Core with its type
processing is fast enough here (the images' driver-level statements are not needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mirror.models import images_table, orders_table
from mirror.order_payload import ORDER_CONTENT_COLUMNS, OrderRow
from mirror.outcomes import Failure, MissingOrder, OrderCounts


@dataclass
class StoredOrders:
    """What writing a batch's orders did (in a dry run: would do)."""

    counts: OrderCounts = field(default_factory=OrderCounts)
    failures: list[Failure] = field(default_factory=list)  # 404s of orders never mirrored
    to_delete: list[str] = field(default_factory=list)  # mirrored orders that answered 404
    changes: list[tuple[str, str]] = field(default_factory=list)  # dry runs: (order_id, what)
    # Mirrored images to fetch by ID: those their order no longer embeds, and those of
    # orders that answered 404 (spec §7: they are left to their own fetches).
    recheck: list[str] = field(default_factory=list)


def apply_orders(
    connection: Connection,
    *,
    orders: Sequence[OrderRow],
    missing: Sequence[MissingOrder],
    now: datetime,
    dry_run: bool,
) -> StoredOrders:
    result = StoredOrders()
    if not orders and not missing:
        return result
    o = orders_table.c
    ids = [row.order_id for row in orders] + [m.order_id for m in missing]
    known = {
        order_id: (digest, bool(deleted))
        for order_id, digest, deleted in connection.execute(
            select(o.order_id, o.content_hash, o.deleted_at.is_not(None)).where(o.order_id.in_(ids))
        )
    }
    result.recheck = _images_to_recheck(connection, orders, missing)
    to_upsert: list[OrderRow] = []
    unchanged: list[str] = []
    counts = result.counts
    for row in orders:
        previous = known.get(row.order_id)
        if previous is None:
            counts.inserted += 1
            result.changes.append((row.order_id, "new"))
        elif previous == (row.columns["content_hash"], False):
            unchanged.append(row.order_id)
            continue
        else:
            counts.updated += 1
            result.changes.append((row.order_id, "changed"))
        to_upsert.append(row)
    counts.unchanged = len(unchanged)
    for m in missing:
        previous = known.get(m.order_id)
        if previous is None:
            result.failures.append(m.not_found())
        elif previous[1]:
            counts.deleted += 1  # already marked: nothing changes
        else:
            result.to_delete.append(m.order_id)
    counts.not_found = len(result.failures)
    if dry_run:
        return result
    result.changes = []
    if to_upsert:
        connection.execute(_upsert(connection), [_values(row, now) for row in to_upsert])
    if unchanged:
        connection.execute(
            update(orders_table).where(o.order_id.in_(unchanged)).values(last_synced_at=now)
        )
    return result


def mark_orders_deleted(connection: Connection, order_ids: Sequence[str], now: datetime) -> None:
    o = orders_table.c
    connection.execute(
        update(orders_table)
        .where(o.order_id.in_(order_ids), o.deleted_at.is_(None))
        .values(deleted_at=now)
    )


def _images_to_recheck(
    connection: Connection, orders: Sequence[OrderRow], missing: Sequence[MissingOrder]
) -> list[str]:
    embedded = {row.order_id: {image.image_id for image in row.images} for row in orders}
    for m in missing:
        embedded[m.order_id] = set()
    i = images_table.c
    found = connection.execute(
        select(i.image_id, i.order_id).where(i.order_id.in_(list(embedded)), i.deleted_at.is_(None))
    )
    return [str(image_id) for image_id, order_id in found if image_id not in embedded[order_id]]


def _upsert(connection: Connection) -> Any:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(orders_table)
    replaced = [*ORDER_CONTENT_COLUMNS, "last_synced_at", "last_changed_at", "deleted_at"]
    return stmt.on_conflict_do_update(
        index_elements=[orders_table.c.order_id],
        set_={name: stmt.excluded[name] for name in replaced},
    )


def _values(row: OrderRow, now: datetime) -> dict[str, Any]:
    return {
        **row.columns,
        "order_id": row.order_id,
        "first_synced_at": now,
        "last_synced_at": now,
        "last_changed_at": now,
        "deleted_at": None,
    }
