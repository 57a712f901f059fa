"""What a fetch result becomes: a row, a 404 (`Missing`), or a failure of that image alone."""

from __future__ import annotations

import json

import pytest
from helpers import new_ids

from mirror.api import Fetched, Target
from mirror.classify import classify, classify_order, classify_page
from mirror.order_payload import ListingPage, OrderRow
from mirror.outcomes import Failure, Missing, MissingOrder
from mirror.payload import ImageRow
from mirror.standin import record_for


def test_a_body_becomes_its_row() -> None:
    image_id = new_ids(1)[0]
    outcome = classify(Fetched(Target.image(image_id), json.dumps(record_for(image_id)).encode()))
    assert isinstance(outcome, ImageRow) and outcome.image_id == image_id


def test_a_404_is_missing_and_other_failures_stay_failures() -> None:
    image_id = new_ids(1)[0]
    assert classify(Failure(image_id, "not_found", "HTTP 404", 404)) == Missing(image_id)
    timeout = Failure(image_id, "timeout", "no response within 30 s")
    assert classify(timeout) is timeout


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[1]", "not an object"),
        (b'{"image_id": "3f6c2a9e-8b1d-4c57-9e2a-6d0b7f41c8a5"}', "body is for image_id"),
        (b'{"a": "\\ud800"}', "lone surrogate"),
        (b"\xff", "not UTF-8"),
    ],
)
def test_a_body_that_cannot_be_mapped_is_an_invalid_payload_of_that_image(
    body: bytes, words: str
) -> None:
    image_id = new_ids(1)[0]
    outcome = classify(Fetched(Target.image(image_id), body))
    assert isinstance(outcome, Failure)
    assert (outcome.image_id, outcome.kind, outcome.http_status) == (
        image_id,
        "invalid_payload",
        200,
    )
    assert words in outcome.message


def test_an_order_result_becomes_its_row_a_missing_order_or_its_failure() -> None:
    target = Target.order("MLS#1/b")
    assert target.path == "/v3/orders/MLS%231%2Fb"
    row = classify_order(Fetched(target, b'{"order_id": "MLS#1/b", "images": []}'))
    assert isinstance(row, OrderRow) and row.order_id == "MLS#1/b"
    assert classify_order(target.failure("not_found", "HTTP 404", 404)) == MissingOrder("MLS#1/b")
    other = classify_order(Fetched(target, b'{"order_id": "another"}'))
    assert isinstance(other, Failure)
    assert (other.of, other.order_id, other.image_id, other.kind) == (
        "order",
        "MLS#1/b",
        None,
        "invalid_payload",
    )


def test_a_page_result_becomes_a_page_or_a_failure_of_the_listing() -> None:
    target = Target.listing_page("tok/1")
    assert target.path == "/v3/orders/?per_page=15&sort=date&offset=tok%2F1"
    page = classify_page(Fetched(target, b'{"orders": [], "pagination": {"next_offset": null}}'))
    assert isinstance(page, ListingPage) and page.next_offset is None
    broken = classify_page(Fetched(target, b'{"orders": 3}'))
    assert isinstance(broken, Failure)
    assert (broken.of, broken.order_id, broken.image_id) == ("listing", None, None)
    assert broken.message.startswith("order listing page (offset tok/1): ")
