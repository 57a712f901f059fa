"""API JSON → row: the cheapest place to prove that nothing is lost."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from strategies import BODIES

from mirror.errors import InvalidPayload
from mirror.payload import API_COLUMNS, CONTENT_COLUMNS, content_hash, parse_body, to_row

DATA = Path(__file__).parent / "data"
ID = "3f6c2a9e-8b1d-4c57-9e2a-6d0b7f41c8a5"


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((DATA / name).read_text()))


@pytest.mark.parametrize(
    "name", ["image_processed.json", "image_processing.json", "image_restaged.json"]
)
def test_every_property_lands_in_a_column_or_in_extra(name: str) -> None:
    body = load(name)
    row = to_row(body, requested_id=body["image_id"])
    assert row.warnings == []
    assert set(row.columns) == set(CONTENT_COLUMNS)
    for key, value in body.items():
        if key == "image_id":
            assert row.image_id == value
        elif key in API_COLUMNS:
            assert row.columns[key] == value, key
            assert key not in row.columns["extra"]
        else:
            assert row.columns["extra"][key] == value, key


def test_restaged_example_columns() -> None:
    row = to_row(load("image_restaged.json"), requested_id="7a8b9c0d-1e2f-4a3b-9c4d-5e6f7a8b9c0d")
    assert row.columns["restage"]["tvs"] == "BLACK_OUT"
    assert row.columns["finetune_settings"] == {
        "brightness": 0.15,
        "contrast": -0.05,
        "saturation": 0.1,
    }
    assert row.columns["extra"] == {
        "metadata": {"source": "api"},
        "window_pull": True,
        "render_revision": 3,
    }
    assert row.columns["date_added_at"] == datetime(2026, 2, 25, 6, 13, 20, 456000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("rating", "4", "a 64-bit integer"),
        ("rating", True, "a 64-bit integer"),
        ("rating", 4.0, "a 64-bit integer"),
        ("rating", 2**63, "a 64-bit integer"),
        ("date_added", "1746698400123", "a 64-bit integer"),
        ("upscale", 1, "a boolean"),
        ("upscale", "true", "a boolean"),
        ("scene", 5, "a string"),
        ("scene", ["kitchen"], "a string"),
        ("cloud_type", False, "a string"),
        ("restage", "ALIGHT", "an object"),
        ("finetune_settings", [1, 2], "an object"),
    ],
)
def test_a_value_that_does_not_fit_its_column_is_kept_verbatim_in_extra(
    key: str, value: Any, expected: str
) -> None:
    row = to_row({"image_id": ID, key: value}, requested_id=ID)
    assert row.columns[key] is None
    assert row.columns["extra"] == {key: value}
    assert len(row.warnings) == 1
    assert key in row.warnings[0] and expected in row.warnings[0]


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("processed", "processed"),
        (5, "5"),
        ({"a": [1, True]}, '{"a":[1,true]}'),
        (False, "false"),
        ("", ""),
    ],
)
def test_any_typed_fields_are_text_holding_the_json(value: Any, stored: str) -> None:
    row = to_row({"status": value, "order_id": value}, requested_id=ID)
    assert row.columns["status"] == stored
    assert row.columns["order_id"] == stored
    assert row.columns["extra"] == {}


def test_json_null_is_sql_null_and_absent_fields_are_null() -> None:
    row = to_row(
        {"image_id": ID, "restage": None, "scene": None, "metadata": None}, requested_id=ID
    )
    assert row.columns["restage"] is None
    assert row.columns["scene"] is None
    assert row.columns["rating"] is None  # absent
    assert row.columns["extra"] == {"metadata": None}  # an unknown key is kept even when null


def test_a_body_without_image_id_is_stored_under_the_requested_id() -> None:
    row = to_row({"scene": "kitchen"}, requested_id=ID)
    assert row.image_id == ID and row.columns["scene"] == "kitchen"


def test_image_id_in_another_case_is_the_same_image() -> None:
    assert to_row({"image_id": ID.upper()}, requested_id=ID).image_id == ID


@pytest.mark.parametrize(
    "body",
    [
        [],
        "text",
        42,
        None,
        {"image_id": "b1e2c3d4-5f60-4a7b-8c9d-0e1f2a3b4c5d"},
        {"image_id": 7},
    ],
)
def test_bodies_that_are_not_this_images_object_are_invalid(body: Any) -> None:
    with pytest.raises(InvalidPayload):
        to_row(body, requested_id=ID)


@pytest.mark.parametrize(
    ("date_added", "expected"),
    [
        (1746698400123, datetime(2025, 5, 8, 10, 0, 0, 123000, tzinfo=UTC)),
        (1746698400, datetime(2025, 5, 8, 10, 0, 0, tzinfo=UTC)),  # below 10^11: seconds
        (99_999_999_999, datetime(5138, 11, 16, 9, 46, 39, tzinfo=UTC)),
        (100_000_000_000, datetime(1973, 3, 3, 9, 46, 40, tzinfo=UTC)),
        (1, datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)),
    ],
)
def test_date_added_at_is_the_same_instant_in_utc(date_added: int, expected: datetime) -> None:
    row = to_row({"date_added": date_added}, requested_id=ID)
    assert row.columns["date_added"] == date_added
    assert row.columns["date_added_at"] == expected


def test_date_added_out_of_timestamp_range_keeps_the_integer() -> None:
    row = to_row({"date_added": 2**62}, requested_id=ID)
    assert row.columns["date_added"] == 2**62
    assert row.columns["date_added_at"] is None
    assert row.warnings


def test_content_hash_ignores_key_order_but_not_values() -> None:
    assert content_hash({"a": 1, "b": 2}) == content_hash({"b": 2, "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})
    assert content_hash({"a": 1}) != content_hash({"a": True})


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe{}", b"not json", b'{"rating": NaN}', b"", b'{"a": 1'],
)
def test_parse_body_rejects_what_is_not_strict_utf8_json(raw: bytes) -> None:
    with pytest.raises(InvalidPayload):
        parse_body(raw)


def test_parse_body_reads_utf8() -> None:
    assert parse_body('{"image_name": "café.jpg"}'.encode()) == {"image_name": "café.jpg"}


# --- No body can crash a run ----------------------------------------------------------------


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BODIES)
def test_no_body_can_do_more_than_fail_its_image(text: str) -> None:
    """A body is either refused as InvalidPayload or becomes a row whose every value is
    JSON that any database reads back (finite numbers, encodable strings, bounded depth)."""
    try:
        row = to_row(parse_body(text.encode("utf-8", "surrogatepass")), requested_id=ID)
    except InvalidPayload:
        return
    for name in ("finetune_settings", "restage", "extra"):
        encoded = json.dumps(row.columns[name], allow_nan=False, ensure_ascii=False)
        encoded.encode("utf-8")  # raises on a lone surrogate
        assert json.loads(encoded) == row.columns[name]
    for name, value in row.columns.items():
        if isinstance(value, str):
            value.encode("utf-8")
        assert not (isinstance(value, float) and math.isinf(value)), name


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"image_name": "a\\ud800b"}', "lone surrogate"),
        (b'{"metadata": {"x": 1e400}}', "out of range"),
        (b'{"metadata": ' + b"[" * 990 + b"]" * 990 + b"}", "nested deeper"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
    ],
)
def test_bodies_that_no_database_could_read_back_are_refused(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidPayload, match=reason):
        parse_body(body)


def test_surrogate_pairs_and_big_integers_are_kept() -> None:
    body = parse_body(b'{"image_name": "\\ud83d\\ude00", "metadata": {"n": ' + b"9" * 400 + b"}}")
    row = to_row(body, requested_id=ID)
    assert row.columns["image_name"] == "\U0001f600"
    assert row.columns["extra"]["metadata"]["n"] == int("9" * 400)
