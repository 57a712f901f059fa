"""What a slice of a run fetched (`Batch`) and what writing it did (`Stored`): the hand-over
between the writer stage and the store, free of any database import."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from mirror.order_payload import OrderRow
from mirror.outcomes import Change, Counts, Failure, Missing, MissingOrder, OrderCounts
from mirror.payload import ImageRow


@dataclass
class Batch:
    """What a slice of the run fetched: rows to upsert, 404s, and other failures."""

    rows: list[ImageRow]
    missing: list[Missing]  # answered 404
    failures: list[Failure]  # of images, orders and listing pages
    orders: list[OrderRow] = field(default_factory=list)
    missing_orders: list[MissingOrder] = field(default_factory=list)

    def __len__(self) -> int:
        return (
            len(self.rows)
            + len(self.missing)
            + len(self.failures)
            + len(self.orders)
            + len(self.missing_orders)
        )


class SoFar(NamedTuple):
    """How far the run had got when a batch was committed, by the names of its row's columns:
    kept current batch by batch, so that a run killed midway still tells what it tried (a
    listing keeps finding more) and what it asked the API."""

    requested: int  # images planned
    orders_requested: int
    api_requests: int  # sent, retries and listing pages included


@dataclass
class Stored:
    """What writing a batch did (in a dry run: would do)."""

    counts: Counts = field(default_factory=Counts)
    order_counts: OrderCounts = field(default_factory=OrderCounts)
    failures: list[Failure] = field(default_factory=list)
    # Mirrored images that answered 404. They are neither written nor counted here: the run
    # marks them with `mark_deleted` once its deletion guard has agreed.
    to_delete: list[str] = field(default_factory=list)
    orders_to_delete: list[str] = field(default_factory=list)  # likewise, orders
    # Mirrored images to fetch by ID: their order no longer embeds them, or answered 404.
    recheck: list[str] = field(default_factory=list)
    # Dry runs only: what a real run would write, image by image and order by order.
    changes: list[Change] = field(default_factory=list)

    def add(self, other: Stored) -> None:
        self.counts.add(other.counts)
        self.order_counts.add(other.order_counts)
        self.failures.extend(other.failures)
        self.to_delete.extend(other.to_delete)
        self.orders_to_delete.extend(other.orders_to_delete)
        self.recheck.extend(other.recheck)
        self.changes.extend(other.changes)
