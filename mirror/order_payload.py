"""Pure transformation: one API order body → one `orders` row and its embedded images (spec §7).

The same rules as `payload.py` for images: every property lands in its typed column or,
verbatim, in `extra` (a value whose JSON type does not fit its column too, with a warning);
no coercion. `images` is not a column: each embedded image is mapped exactly as if it had been
fetched on its own, and one that cannot be mapped fails alone. Nothing here touches the
database or the network; the sync writes what this returns.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from mirror.errors import InvalidPayload
from mirror.ids import canonical_id
from mirror.payload import (
    FieldKind,
    ImageRow,
    content_hash,
    json_type,
    map_fields,
    shorten,
    to_row,
)

ORDER_STRING_FIELDS = ("name", "default_image_sort_order")
ORDER_BOOLEAN_FIELDS = ("is_deleted", "is_merging", "is_processing")
ORDER_INTEGER_FIELDS = ("total_images",)
ORDER_ANY_FIELDS = ("status",)  # typed "any": text when a string, else its JSON text
ORDER_TIME_FIELDS = ("created_at", "last_updated_at")  # ISO 8601; without a zone: UTC
ORDER_API_COLUMNS = (
    *ORDER_STRING_FIELDS,
    *ORDER_BOOLEAN_FIELDS,
    *ORDER_INTEGER_FIELDS,
    *ORDER_ANY_FIELDS,
    *ORDER_TIME_FIELDS,
)
ORDER_CONTENT_COLUMNS = (*ORDER_API_COLUMNS, "extra", "content_hash")
ORDER_FIELDS: dict[str, FieldKind] = {
    **dict.fromkeys(ORDER_STRING_FIELDS, FieldKind.STRING),
    **dict.fromkeys(ORDER_BOOLEAN_FIELDS, FieldKind.BOOLEAN),
    **dict.fromkeys(ORDER_INTEGER_FIELDS, FieldKind.BIGINT),
    **dict.fromkeys(ORDER_ANY_FIELDS, FieldKind.ANY),
    **dict.fromkeys(ORDER_TIME_FIELDS, FieldKind.TIMESTAMP),
}


@dataclass
class EmbeddedFailure:
    """An embedded image that cannot be mapped: a failure of that image alone (its ID is
    None when the body did not say which image it is)."""

    image_id: str | None
    message: str


@dataclass
class OrderRow:
    """What one order body becomes: the `orders` columns, and each embedded image."""

    order_id: str
    columns: dict[str, Any]  # every ORDER_CONTENT_COLUMNS key
    images: list[ImageRow | EmbeddedFailure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def order_to_row(body: Any, *, requested_id: str | None) -> OrderRow:
    """Map a parsed order body (from `GET /v3/orders/{id}` or a listing page) to a row.

    `requested_id` is the order asked for (None for a listed order). Raises InvalidPayload
    when the body is not an object, names no order, or names another order than requested.
    """
    if not isinstance(body, dict):
        raise InvalidPayload(f"order body is a JSON {json_type(body)}, not an object")
    sent_id = body.get("order_id")
    if sent_id is None and requested_id is not None:
        order_id = requested_id
    elif isinstance(sent_id, str) and sent_id and (requested_id in (None, sent_id)):
        order_id = sent_id
    elif sent_id is None:
        raise InvalidPayload("a listed order has no order_id")
    else:
        raise InvalidPayload(f"order body is for order_id {shorten(json.dumps(sent_id))}")

    columns, extra, warnings = map_fields(body, ORDER_FIELDS, skip=("order_id", "images"))
    images: list[ImageRow | EmbeddedFailure] = []
    embedded = body.get("images")
    if isinstance(embedded, list):
        images = [_embedded(image, order_id) for image in embedded]
    elif embedded is not None:
        extra["images"] = embedded
        warnings.append(
            f"images: {shorten(json.dumps(embedded))} is not an array of images; "
            "kept in extra.images"
        )

    columns["extra"] = extra
    # The order's own content: its images are rows of their own, with their own hashes, so
    # a change to one image does not make the order look changed.
    columns["content_hash"] = content_hash({k: v for k, v in body.items() if k != "images"})
    return OrderRow(order_id=order_id, columns=columns, images=images, warnings=warnings)


@dataclass
class ListedOrderFailure:
    """A listed order that cannot be mapped (its ID is None when the body names none)."""

    order_id: str | None
    message: str


@dataclass
class ListingPage:
    """One page of `GET /v3/orders/`: its orders (bodies still to map, with `listed_order`,
    so the next page can be asked for first), and the next page's token (None: the last)."""

    orders: list[Any]
    next_offset: str | None


def listing_page(body: Any) -> ListingPage:
    """Read a parsed listing page. Raises InvalidPayload when it is not a page at all (the
    listing cannot go on)."""
    if not isinstance(body, dict):
        raise InvalidPayload(f"listing page is a JSON {json_type(body)}, not an object")
    listed = body.get("orders")
    if not isinstance(listed, list):
        raise InvalidPayload("listing page has no array of orders")
    pagination = body.get("pagination")
    token: Any = pagination.get("next_offset") if isinstance(pagination, dict) else None
    if isinstance(token, int) and not isinstance(token, bool):
        token = str(token)  # documented as an opaque string; a number is taken as its text
    if token is not None and not isinstance(token, str):
        raise InvalidPayload(f"next_offset {shorten(json.dumps(token))} is not a token")
    # An empty page ends the listing too, whatever its token says (api-notes §5).
    return ListingPage(listed, (token or None) if listed else None)


_NEXT_OFFSET = re.compile(rb'"next_offset"\s*:\s*("(?:[^"\\]|\\.)*"|null|[0-9]+)')


def peek_next_offset(raw: bytes) -> str | None:
    """The next page's token read straight from a page's bytes, before the whole page is
    parsed, so the next request can go out at once; None when it is not plainly there.

    A guess only: the caller checks it against the parsed page. The last `"next_offset"`
    key is the pagination's (one inside a string would be escaped, `\\"`).
    """
    at = raw.rfind(b'"next_offset"')
    if at <= 0 or raw[at - 1 : at] == b"\\":
        return None
    match = _NEXT_OFFSET.match(raw, at)
    if match is None:
        return None
    try:
        value = json.loads(match.group(1))
    except ValueError:
        return None
    if isinstance(value, int):
        value = str(value)
    return value if isinstance(value, str) and value else None


def listed_order(body: Any) -> OrderRow | ListedOrderFailure:
    """One order of a listing page; a malformed one fails alone."""
    try:
        return order_to_row(body, requested_id=None)
    except InvalidPayload as exc:
        raw_id = body.get("order_id") if isinstance(body, dict) else None
        return ListedOrderFailure(raw_id if isinstance(raw_id, str) else None, str(exc))
    except Exception as exc:  # a body nobody foresaw must fail its order, not the run
        return ListedOrderFailure(
            None, f"order cannot be mapped: {type(exc).__name__}: {exc}"[:300]
        )


def _embedded(image: Any, order_id: str) -> ImageRow | EmbeddedFailure:
    """An embedded image, mapped as if fetched alone. One without an order_id (absent or
    null) belongs to the order that embeds it: filled in before hashing, so that fetching
    the same image by ID later (which names its order) does not look like a change."""
    if not isinstance(image, dict):
        return EmbeddedFailure(None, f"embedded image is a JSON {json_type(image)}")
    raw_id = image.get("image_id")
    image_id = canonical_id(raw_id) if isinstance(raw_id, str) else None
    if image_id is None:
        shown = "no image_id" if raw_id is None else f"image_id {shorten(json.dumps(raw_id))}"
        return EmbeddedFailure(None, f"embedded image has {shown}")
    if image.get("order_id") is None:
        image = {**image, "order_id": order_id}
    try:
        return to_row(image, requested_id=image_id)
    except InvalidPayload as exc:
        return EmbeddedFailure(image_id, str(exc))
