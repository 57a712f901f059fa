"""What a fetch result becomes: a row, a 404 (`Missing`), or a failure of that image alone."""

from __future__ import annotations

import json

import pytest
from helpers import new_ids

from mirror.api import Fetched, Target
from mirror.classify import classify
from mirror.outcomes import Failure, Missing
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
