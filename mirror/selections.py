"""Sources of a run read from the mirror itself (spec §7): images to refresh.

Each selection streams image IDs from the database (nothing is held in memory but a cursor's
batch); `sync` spools them before the first request, so a run refreshes the selection as it
was when it started (fetching moves `last_synced_at`, which `--older-than` selects on).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from mirror.errors import InputError
from mirror.ids import canonical_id

if TYPE_CHECKING:  # the queries import SQLAlchemy and the tables when they run
    from sqlalchemy import Connection

# Statuses after which the API changes an image no more (api-notes §7); NULL is unfinished.
FINISHED_STATUSES = ("processed", "error", "expired")
STREAM_BATCH = 10_000
_DURATION = re.compile(r"([0-9]+)([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


@dataclass(frozen=True)
class Selection:
    """What to select from the mirror: `--unfinished`, `--older-than DURATION`."""

    unfinished: bool = False
    older_than: timedelta | None = None

    def __bool__(self) -> bool:
        return self.unfinished or self.older_than is not None


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `12h`, `7d` as a timedelta; raises InputError for anything else."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InputError(
            f"--older-than {text!r} is not a duration; write a number and a unit: "
            "90s, 30m, 12h or 7d"
        )
    number, unit = match.groups()
    seconds = int(number) * _SECONDS[unit]
    # Bounded, as the cutoff (now minus it) must be a date: 1000000d ended in a traceback.
    if seconds > MAX_OLDER_THAN.total_seconds():
        raise InputError(
            f"--older-than {text!r} is longer than 100 years; at most {MAX_OLDER_THAN.days}d"
        )
    return timedelta(seconds=seconds)


MAX_OLDER_THAN = timedelta(days=36_500)


def selected_ids(connection: Connection, selection: Selection, *, now: datetime) -> Iterator[str]:
    """The mirrored, not deleted images the selection names, each once, streamed."""
    from sqlalchemy import or_, select

    from mirror.models import images_table

    images = images_table.c
    conditions = []
    if selection.unfinished:
        conditions.append(or_(images.status.is_(None), images.status.not_in(FINISHED_STATUSES)))
    if selection.older_than is not None:
        conditions.append(images.last_synced_at < now - selection.older_than)
    if not conditions:
        return
    query = (
        select(images.image_id)
        .where(images.deleted_at.is_(None), or_(*conditions))
        .order_by(images.image_id)
    )
    # Streamed, this statement alone: set on the connection, the options would also take the
    # statement that opens its transaction (db's lock timeout) as a cursor to stream.
    result = connection.execute(
        query, execution_options={"stream_results": True, "yield_per": STREAM_BATCH}
    )
    for (image_id,) in result:
        yield str(image_id)


def missing_parent_ids(connection: Connection) -> tuple[list[str], int]:
    """Images that a mirrored, not deleted image names as its `parent_image_id` but that are
    not in the mirror: (their canonical IDs, how many named values were not UUIDs)."""
    from sqlalchemy import exists, func, select

    from mirror.models import images_table

    child = images_table.alias("child")
    parent = images_table.alias("parent")
    query = (
        select(child.c.parent_image_id)
        .where(
            child.c.parent_image_id.is_not(None),
            child.c.deleted_at.is_(None),
            ~exists().where(parent.c.image_id == func.lower(child.c.parent_image_id)),
        )
        .distinct()
    )
    found: set[str] = set()
    malformed = 0
    for (value,) in connection.execute(query):
        image_id = canonical_id(str(value))
        if image_id is None:
            malformed += 1
        else:
            found.add(image_id)
    return sorted(found), malformed


def mirrored_order_ids(connection: Connection) -> list[str]:
    """Every mirrored order not marked deleted (for the listing's reconciliation: those the
    listing did not return are fetched by ID)."""
    from sqlalchemy import select

    from mirror.models import orders_table

    orders = orders_table.c
    query = select(orders.order_id).where(orders.deleted_at.is_(None)).order_by(orders.order_id)
    return [str(order_id) for (order_id,) in connection.execute(query)]


def images_of_deleted_orders(connection: Connection) -> list[str]:
    """Mirrored images, not deleted, whose order is marked deleted. After the order's 404 each
    was left to its own fetch; where that did not settle it (it failed, or the run stopped),
    no listed order embeds it any more, so the listing's reconciliation checks it again."""
    from sqlalchemy import select

    from mirror.models import images_table, orders_table

    images, orders = images_table.c, orders_table.c
    deleted_orders = select(orders.order_id).where(orders.deleted_at.is_not(None))
    query = (
        select(images.image_id)
        .where(images.deleted_at.is_(None), images.order_id.in_(deleted_orders))
        .order_by(images.image_id)
    )
    return [str(image_id) for (image_id,) in connection.execute(query)]
