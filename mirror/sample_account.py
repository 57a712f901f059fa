"""A consistent account of orders and their images, for the stand-in to serve (spec §7).

Every order embeds exactly the images whose `order_id` it is, and `GET /v3/images/{id}` of any
of those images answers with the same record. The listing pages through the orders in the
order the API documents (`sort`, `-date` by default) with an opaque `next_offset`; offsets
index the list as it is when each page is asked for, so an order created or deleted
mid-listing makes a page skip or repeat one, as offset paging over a live list does.
Tests change the account between runs and while a run reads it (`add_order`, `delete_order`,
`move_image`, `edit_image`, `delete_image`).
"""

from __future__ import annotations

import base64
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mirror.standin import record_for

_NAMES = ["Maple St", "Harbour View", "Old Mill", "Park Lane", "Riverside", "Hilltop", "Elm Court"]
_SORTS = {"date", "-date", "name", "-name"}
PER_PAGE_DEFAULT = 5
PER_PAGE_MAX = 15  # larger values are clamped silently, as the API does (api-notes §5)


@dataclass
class SampleOrder:
    order_id: str  # opaque: not always a UUID, may hold characters a path must encode
    name: str
    created_at: datetime
    last_updated_at: datetime
    image_ids: list[str] = field(default_factory=list)
    status: str = "processed"
    is_merging: bool = False
    default_image_sort_order: str = "date_added"
    extra: dict[str, Any] = field(default_factory=dict)  # unknown properties, sent verbatim


class SampleAccount:
    """Orders by ID, the order of every image, and the sorted views the listing pages over."""

    def __init__(self) -> None:
        self.orders: dict[str, SampleOrder] = {}
        self._order_of: dict[str, str] = {}  # image_id → order_id
        self._sorted: dict[str, list[str]] = {}  # sort → order IDs, rebuilt after a change
        self.gone: set[str] = set()  # images deleted (alone or with their order): 404 by ID
        self._edits: dict[str, dict[str, Any]] = {}  # image_id → fields changed upstream

    @classmethod
    def generate(cls, images: int, *, seed: int = 2026, max_per_order: int = 20) -> SampleAccount:
        """An account of `images` images in orders of 1 to `max_per_order` images."""
        rng = random.Random(seed)
        account = cls()
        start = datetime(2025, 1, 1, tzinfo=UTC)
        made = 0
        number = 0
        while made < images:
            size = min(rng.randint(1, max_per_order), images - made)
            number += 1
            created = start + timedelta(minutes=number * 37 + rng.randrange(30))
            account.add_order(
                SampleOrder(
                    order_id=_order_id(rng, number),
                    name=f"{rng.choice(_NAMES)} {number}",
                    created_at=created,
                    last_updated_at=created + timedelta(minutes=rng.randrange(600)),
                    status=rng.choice(["processed"] * 8 + ["processing", "error"]),
                    extra={"branding": True} if number % 11 == 0 else {},
                ),
                [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(size)],
            )
            made += size
        return account

    # --- changes, as an account sees them while the mirror reads it ---------------------------

    def add_order(self, order: SampleOrder, image_ids: Sequence[str] = ()) -> None:
        self.orders[order.order_id] = order
        for image_id in image_ids:
            self._place(image_id.lower(), order.order_id)
        self._sorted.clear()

    def delete_order(self, order_id: str) -> list[str]:
        """The order is gone (404, not listed); its images are gone with it. Returns them."""
        order = self.orders.pop(order_id)
        for image_id in order.image_ids:
            self._order_of.pop(image_id, None)
            self.gone.add(image_id)
        self._sorted.clear()
        return order.image_ids

    def move_image(self, image_id: str, to_order_id: str) -> None:
        self._place(image_id.lower(), to_order_id)

    def edit_image(self, image_id: str, **fields: Any) -> None:
        """The image changed upstream (processed now, renamed, ...): its order embeds the new
        record, and `GET /v3/images/{id}` answers with it."""
        self._edits.setdefault(image_id.lower(), {}).update(fields)

    def delete_image(self, image_id: str) -> None:
        """The image alone is gone: its order no longer embeds it, its ID answers 404."""
        image_id = image_id.lower()
        self.orders[self._order_of.pop(image_id)].image_ids.remove(image_id)
        self.gone.add(image_id)

    def _place(self, image_id: str, order_id: str) -> None:
        self.gone.discard(image_id)
        previous = self._order_of.get(image_id)
        if previous is not None:
            self.orders[previous].image_ids.remove(image_id)
        self.orders[order_id].image_ids.append(image_id)
        self._order_of[image_id] = order_id

    # --- what the stand-in serves ---------------------------------------------------------------

    def image_ids(self) -> list[str]:
        return list(self._order_of)

    def holds_image(self, image_id: str) -> bool:
        return image_id in self._order_of

    def image_record(self, image_id: str) -> dict[str, Any]:
        """The record of an image of the account: its order is the one that embeds it."""
        record = record_for(image_id) | self._edits.get(image_id, {})
        record["order_id"] = self._order_of[image_id]
        return record

    def order_body(self, order_id: str) -> dict[str, Any] | None:
        """`GET /v3/orders/{id}`: the order with every image it embeds; None if unknown."""
        order = self.orders.get(order_id)
        if order is None:
            return None
        return {
            "order_id": order.order_id,
            "name": order.name,
            "created_at": _timestamp(order.created_at),
            "last_updated_at": _timestamp(order.last_updated_at),
            "is_deleted": False,
            "is_merging": order.is_merging,
            "is_processing": order.status == "processing",
            "status": order.status,
            "total_images": len(order.image_ids),
            "default_image_sort_order": order.default_image_sort_order,
            "images": [self.image_record(image_id) for image_id in order.image_ids],
            **order.extra,
        }

    def page(self, *, offset: str | None, per_page: int | None, sort: str | None) -> dict[str, Any]:
        """`GET /v3/orders/?offset=…&per_page=…&sort=…`; raises ValueError for a bad value."""
        sort = sort or "-date"
        if sort not in _SORTS:
            raise ValueError(f"sort must be one of {sorted(_SORTS)}")
        size = min(PER_PAGE_MAX, per_page or PER_PAGE_DEFAULT)
        if size < 1:
            raise ValueError("per_page must be at least 1")
        start = decode_offset(offset)
        listed = self._sorted_ids(sort)
        chosen = listed[start : start + size]
        more = start + size < len(listed)
        return {
            "orders": [self.order_body(order_id) for order_id in chosen],
            "pagination": {
                "next_offset": encode_offset(start + size) if more else None,
                "per_page": size,
            },
        }

    def _sorted_ids(self, sort: str) -> list[str]:
        if sort not in self._sorted:
            key = (lambda o: o.created_at) if sort.endswith("date") else (lambda o: o.name)
            ordered = sorted(self.orders.values(), key=key, reverse=sort.startswith("-"))
            self._sorted[sort] = [o.order_id for o in ordered]
        return self._sorted[sort]


def encode_offset(index: int) -> str:
    """An opaque token, as the API's is (a client must not do arithmetic on it)."""
    return base64.urlsafe_b64encode(f"page-at:{index}".encode()).decode().rstrip("=")


def decode_offset(token: str | None) -> int:
    if token in (None, "", "0"):
        return 0
    try:
        padded = token + "=" * (-len(token) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        prefix, _, number = text.partition(":")
        if prefix != "page-at" or not number.isdecimal():
            raise ValueError
        return int(number)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("offset is not a token this server gave out") from None


def _order_id(rng: random.Random, number: int) -> str:
    # Order IDs are chosen by the API's users: mostly UUIDs, sometimes references with
    # characters a path must percent-encode.
    if number % 7 == 0:
        return f"MLS#{1000 + number}/b"
    if number % 5 == 0:
        return f"order-{number:05d}"
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _timestamp(value: datetime) -> str:
    # The API sends ISO 8601 with milliseconds and Z; some deployments send no zone at all.
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
