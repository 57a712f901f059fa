"""API order JSON → `orders` row and embedded images: nothing lost, images as if fetched alone."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from helpers import new_ids
from hypothesis import HealthCheck, given, settings
from strategies import BODIES

from mirror.errors import InvalidPayload
from mirror.ids import canonical_order_id
from mirror.order_payload import (
    ORDER_API_COLUMNS,
    ORDER_CONTENT_COLUMNS,
    EmbeddedFailure,
    ListedOrderFailure,
    OrderRow,
    listed_order,
    listing_page,
    order_to_row,
)
from mirror.payload import ImageRow, parse_body, parse_timestamp, to_row
from mirror.sample_account import SampleAccount
from mirror.standin import record_for


def sample_order() -> dict[str, Any]:
    account = SampleAccount.generate(200)  # the 11th order carries an unknown property
    order_id = next(o for o in account.orders if account.orders[o].extra)  # has "branding"
    body = account.order_body(order_id)
    assert body is not None
    return json.loads(json.dumps(body))  # as parsed from the wire


def test_every_property_lands_in_a_column_or_in_extra() -> None:
    body = sample_order()
    row = order_to_row(body, requested_id=body["order_id"])
    assert row.warnings == []
    assert set(row.columns) == set(ORDER_CONTENT_COLUMNS)
    assert row.columns["extra"] == {"branding": True}
    for key in ORDER_API_COLUMNS:
        if key in ("created_at", "last_updated_at"):
            assert row.columns[key] == parse_timestamp(body[key])
        else:
            assert row.columns[key] == body[key], key
    assert "images" not in row.columns and "images" not in row.columns["extra"]


def test_embedded_images_are_mapped_exactly_as_if_fetched_alone() -> None:
    body = sample_order()
    row = order_to_row(body, requested_id=None)
    assert len(row.images) == len(body["images"]) == body["total_images"]
    for embedded, image in zip(row.images, body["images"], strict=True):
        assert isinstance(embedded, ImageRow)
        alone = to_row(image, requested_id=image["image_id"])
        assert embedded.columns == alone.columns


def test_an_embedded_image_without_order_id_belongs_to_its_order() -> None:
    """And hashes as the same image fetched by ID (which names its order) does."""
    image_id = new_ids(1)[0]
    by_id = record_for(image_id) | {"order_id": "ord-1"}
    for missing in (
        {k: v for k, v in by_id.items() if k != "order_id"},
        by_id | {"order_id": None},
    ):
        row = order_to_row({"order_id": "ord-1", "images": [missing]}, requested_id="ord-1")
        [embedded] = row.images
        assert isinstance(embedded, ImageRow)
        assert embedded.columns["order_id"] == "ord-1"
        assert embedded.columns == to_row(by_id, requested_id=image_id).columns


@pytest.mark.parametrize(
    ("image", "image_id", "words"),
    [
        ([1, 2], None, "embedded image is a JSON array"),
        ({"image_name": "a.jpg"}, None, "no image_id"),
        ({"image_id": "not-a-uuid"}, None, 'image_id "not-a-uuid"'),
    ],
)
def test_a_malformed_embedded_image_fails_alone(
    image: Any, image_id: str | None, words: str
) -> None:
    good = record_for(new_ids(1)[0])
    row = order_to_row({"order_id": "o", "images": [image, good]}, requested_id="o")
    bad, fine = row.images
    assert isinstance(bad, EmbeddedFailure) and bad.image_id == image_id and words in bad.message
    assert isinstance(fine, ImageRow) and fine.image_id == good["image_id"]


def test_an_embedded_image_for_another_order_is_still_that_image() -> None:
    image = record_for(new_ids(1)[0]) | {"order_id": "elsewhere"}
    [row] = order_to_row({"order_id": "o", "images": [image]}, requested_id="o").images
    assert isinstance(row, ImageRow) and row.columns["order_id"] == "elsewhere"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("total_images", "5", "a 64-bit integer"),
        ("total_images", True, "a 64-bit integer"),
        ("total_images", 2**63, "a 64-bit integer"),
        ("is_processing", "yes", "a boolean"),
        ("is_deleted", 0, "a boolean"),
        ("name", 7, "a string"),
        ("created_at", "yesterday", "an ISO 8601 timestamp"),
        ("last_updated_at", 1746698400123, "an ISO 8601 timestamp"),
        ("images", {"not": "a list"}, "an array of images"),
    ],
)
def test_wrong_typed_values_are_kept_verbatim_in_extra(key: str, value: Any, expected: str) -> None:
    row = order_to_row({"order_id": "o", key: value}, requested_id="o")
    assert row.columns["extra"] == {key: value}
    assert row.columns.get(key) is None
    assert row.warnings == [f"{key}: {json.dumps(value)} is not {expected}; kept in extra.{key}"]


def test_status_typed_any_is_text_and_null_is_null() -> None:
    row = order_to_row({"order_id": "o", "status": {"code": 3}, "name": None}, requested_id="o")
    assert row.columns["status"] == '{"code":3}'
    assert row.columns["name"] is None and row.columns["extra"] == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-07-05T02:27:21.305Z", datetime(2025, 7, 5, 2, 27, 21, 305000, tzinfo=UTC)),
        ("2006-01-02T15:04:05.999999", datetime(2006, 1, 2, 15, 4, 5, 999999, tzinfo=UTC)),
        (
            "2025-07-05T04:27:21+02:00",
            datetime(2025, 7, 5, 4, 27, 21, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2025-07-05", datetime(2025, 7, 5, tzinfo=UTC)),
        ("not a date", None),
        ("", None),
        (17, None),
    ],
)
def test_timestamps_are_utc_and_a_missing_zone_is_utc(value: Any, expected: Any) -> None:
    parsed = parse_timestamp(value)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo == UTC


@pytest.mark.parametrize(
    ("body", "requested", "words"),
    [
        ([], "o", "order body is a JSON array"),
        ({"order_id": "other"}, "o", 'order body is for order_id "other"'),
        ({"order_id": 5}, None, "order body is for order_id 5"),
        ({"order_id": ""}, None, 'order body is for order_id ""'),
        ({"name": "x"}, None, "a listed order has no order_id"),
    ],
)
def test_bodies_that_are_not_the_order_asked_for_are_invalid(
    body: Any, requested: str | None, words: str
) -> None:
    with pytest.raises(InvalidPayload, match=words):
        order_to_row(body, requested_id=requested)


def test_a_body_without_order_id_is_the_order_requested() -> None:
    assert order_to_row({"name": "x"}, requested_id="MLS#1/b").order_id == "MLS#1/b"


def test_the_order_hash_ignores_its_images() -> None:
    body = sample_order()
    before = order_to_row(body, requested_id=None).columns["content_hash"]
    body["images"][0]["rating"] = 5 - body["images"][0]["rating"]
    assert order_to_row(body, requested_id=None).columns["content_hash"] == before
    body["name"] += " (renamed)"
    assert order_to_row(body, requested_id=None).columns["content_hash"] != before


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("9d3e5b7a-2c4f-4a8e-b1d6-0f7e9a2c3b41", True),
        ("MLS#4711/b", True),
        ("order-00042", True),
        ("x" * 200, True),
        ("x" * 201, False),
        ("", False),
        ("two words", False),
        ("tab\there", False),
        ("nul\x00", False),
    ],
)
def test_order_ids_are_opaque_but_bounded(value: str, ok: bool) -> None:
    assert (canonical_order_id(value) == value) is ok


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BODIES, BODIES)
def test_no_order_body_can_do_more_than_fail_its_order(order: str, image: str) -> None:
    """An arbitrary order body, and arbitrary embedded images in a valid one: either the
    order is refused as InvalidPayload, or it maps, each image to a row or a failure."""
    for text in (order, '{"order_id": "o", "images": [' + image + ", " + image + "]}"):
        try:
            row = order_to_row(parse_body(text.encode("utf-8", "surrogatepass")), requested_id="o")
        except InvalidPayload:
            continue
        assert all(isinstance(i, ImageRow | EmbeddedFailure) for i in row.images)
        json.dumps(row.columns["extra"], allow_nan=False)


def test_a_listing_page_gives_its_orders_and_the_next_token() -> None:
    order = {"order_id": "o-1", "name": "A", "images": []}
    page = listing_page({"orders": [order, "junk"], "pagination": {"next_offset": "tok"}})
    assert page.next_offset == "tok" and len(page.orders) == 2
    mapped = [listed_order(body) for body in page.orders]
    assert isinstance(mapped[0], OrderRow) and mapped[0].order_id == "o-1"
    assert isinstance(mapped[1], ListedOrderFailure) and mapped[1].order_id is None
    # A number is taken as its text; null, "" and an empty page end the listing.
    assert listing_page({"orders": [order], "pagination": {"next_offset": 15}}).next_offset == "15"
    for pagination in ({"next_offset": None}, {"next_offset": ""}, {}):
        assert listing_page({"orders": [order], "pagination": pagination}).next_offset is None
    assert listing_page({"orders": [], "pagination": {"next_offset": "x"}}).next_offset is None


@pytest.mark.parametrize(
    "body",
    [[], "page", {"orders": {}}, {"orders": [], "pagination": {"next_offset": True}}],
)
def test_what_is_not_a_listing_page_is_refused(body: object) -> None:
    with pytest.raises(InvalidPayload):
        listing_page(body)
