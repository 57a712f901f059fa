"""Pure transformation: one API image body (JSON) → one `images` row, losing nothing.

Every property lands in its typed column or, when it has no column or its JSON type does not
fit the column, verbatim in `extra` under its own key (with a warning). No coercion: a JSON
boolean is not an integer, a number is not a string or a boolean.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NotRequired, TypedDict

from mirror.errors import InvalidPayload


class ImageOut(TypedDict, total=False):
    """GET /v3/images/{id}, API version 2025-08-31 (api-notes.md §7). Every key may be absent."""

    image_id: str  # "3f6c2a9e-8b1d-4c57-9e2a-6d0b7f41c8a5"
    ai_version: str  # "5.x", "latest"
    cloud_type: str | None  # "CLEAR", "LOW_CLOUD", "HIGH_CLOUD"
    date_added: int  # 1746698400123 (epoch milliseconds)
    downloaded: bool
    enhance: bool
    enhance_type: str  # "warm", "neutral", "modern", ...
    finetune_settings: dict[str, Any] | None  # opaque, keys undocumented
    image_name: str  # "IMG_3090.JPG"
    lens_correction: bool
    order_id: Any  # "9d3e5b7a-2c4f-4a8e-b1d6-0f7e9a2c3b41"
    parent_image_id: str | None  # set on restaged sub-images
    preset_id: Any  # "preset_2b7f0c"
    privacy: bool | None
    rating: int  # 0..5
    restage: dict[str, Any] | None  # {"grass": "GREEN", "tvs": "BLACK_OUT", ...}
    scene: str  # "kitchen", "garden", ...
    sky_replacement: bool
    status: Any  # "processing", "processed", "error", "expired"
    status_reason: Any  # free text
    upscale: bool
    user_id: Any  # "auth0|6363dbcb77f7e74122ea6350"
    vertical_correction: bool
    window_pull_type: str | None  # "NONE", "ONLY_WINDOWS", "WINDOWS_WITH_SKIES"
    # Sent today without a column of their own: they land in `extra`.
    metadata: NotRequired[dict[str, Any]]
    window_pull: NotRequired[bool | None]


STRING_FIELDS = (
    "ai_version",
    "cloud_type",
    "enhance_type",
    "image_name",
    "parent_image_id",
    "scene",
    "window_pull_type",
)
BOOLEAN_FIELDS = (
    "downloaded",
    "enhance",
    "lens_correction",
    "privacy",
    "sky_replacement",
    "upscale",
    "vertical_correction",
)
INTEGER_FIELDS = ("date_added", "rating")
# Typed "any" by the API: text when a string, else the value's JSON text.
ANY_FIELDS = ("order_id", "preset_id", "status", "status_reason", "user_id")
JSON_FIELDS = ("finetune_settings", "restage")

API_COLUMNS = (*STRING_FIELDS, *BOOLEAN_FIELDS, *INTEGER_FIELDS, *ANY_FIELDS, *JSON_FIELDS)
# Every column a response replaces: the API fields, plus what is derived from them.
CONTENT_COLUMNS = (*API_COLUMNS, "date_added_at", "extra", "content_hash")

_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1


class FieldKind(enum.Enum):
    """How a property fits its typed column: what a misfit is told it should have been."""

    STRING = "a string"
    BOOLEAN = "a boolean"
    BIGINT = "a 64-bit integer"
    ANY = "anything"  # typed "any": a string as is, any other value as its JSON text
    OBJECT = "an object"
    TIMESTAMP = "an ISO 8601 timestamp"


IMAGE_FIELDS: dict[str, FieldKind] = {
    **dict.fromkeys(STRING_FIELDS, FieldKind.STRING),
    **dict.fromkeys(BOOLEAN_FIELDS, FieldKind.BOOLEAN),
    **dict.fromkeys(INTEGER_FIELDS, FieldKind.BIGINT),
    **dict.fromkeys(ANY_FIELDS, FieldKind.ANY),
    **dict.fromkeys(JSON_FIELDS, FieldKind.OBJECT),
}


def map_fields(
    body: dict[str, Any], fields: dict[str, FieldKind], *, skip: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Place every property of `body` (but those in `skip`) in its typed column, or verbatim
    in `extra`: one without a column, and one whose JSON type does not fit (with a warning).
    No coercion: true is not 1, 1 is not true. Returns (columns, extra, warnings); a JSON
    null is a NULL column. (The checks are inlined: this runs for every field of every image.)
    """
    columns: dict[str, Any] = dict.fromkeys(fields)
    extra: dict[str, Any] = {}
    warnings: list[str] = []
    for key, value in body.items():
        kind = fields.get(key)
        if kind is None:
            if key not in skip:
                extra[key] = value
            continue
        if value is None:
            continue
        if kind is _STRING:
            fits = isinstance(value, str)
        elif kind is _BOOLEAN:
            fits = isinstance(value, bool)
        elif kind is _ANY:
            if not isinstance(value, str):
                value = json_text(value)
            fits = True
        elif kind is _BIGINT:
            fits = _is_bigint(value)
        elif kind is _OBJECT:
            fits = isinstance(value, dict)
        else:
            moment = parse_timestamp(value)
            fits = moment is not None
            value = moment if fits else value
        if fits:
            columns[key] = value
        else:
            extra[key] = value
            warnings.append(
                f"{key}: {shorten(json.dumps(value))} is not {kind.value}; kept in extra.{key}"
            )
    return columns, extra, warnings


_STRING, _BOOLEAN, _BIGINT = FieldKind.STRING, FieldKind.BOOLEAN, FieldKind.BIGINT
_ANY, _OBJECT = FieldKind.ANY, FieldKind.OBJECT


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 timestamp as an aware UTC datetime (no zone: UTC); None if it is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return as_utc(moment)


def as_utc(moment: datetime) -> datetime:
    """The same instant as an aware UTC datetime; a naive one is taken to be UTC already
    (as SQLite keeps timestamps, and as the API sends some)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# An image record is three levels deep. SQLite's JSON functions stop at 1,000 levels and
# Python's json recursion near there: anything deeper than this is not an image record.
MAX_DEPTH = 64
# How an answer that is not JSON at all is told (a web page at --base-url, say).
NOT_JSON = "body is not JSON"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SECONDS_BELOW = 10**11  # a date_added below this is epoch seconds, else milliseconds
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class ImageRow:
    """What one response becomes: the `images` columns it determines, and what to warn about."""

    image_id: str
    columns: dict[str, Any]  # every CONTENT_COLUMNS key
    warnings: list[str] = field(default_factory=list)


def parse_body(raw: bytes) -> Any:
    """Decode a response body as strict UTF-8 JSON that every database can read back.

    Raises InvalidPayload for what is not: bytes that are not UTF-8, text that is not JSON,
    NaN/Infinity and numbers out of a double's range (`1e400` would be stored as `Infinity`,
    which is not JSON), lone surrogate escapes (`"\\ud800"`, not Unicode), nesting deeper
    than MAX_DEPTH.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidPayload(f"body is not UTF-8 (byte {exc.start})") from None
    too_deep = InvalidPayload(f"body is nested deeper than {MAX_DEPTH} levels")
    try:
        body = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise too_deep from None
    except ValueError as exc:
        raise InvalidPayload(f"{NOT_JSON}: {shorten(str(exc))}") from None
    # Counting brackets is enough for an image; a listing page has thousands of them.
    if text.count("[") + text.count("{") > MAX_DEPTH and _too_deep(body):
        raise too_deep
    try:
        # Surrogates can only come from \u escapes (the text was valid UTF-8); then every
        # string, key included, must pair them up.
        if _SURROGATE_ESCAPE.search(text):
            _canonical_json(body).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidPayload(
            f"body holds a lone surrogate escape ({exc.object[exc.start : exc.end]!a}), "
            "which is not Unicode text"
        ) from None
    return body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise ValueError(f"the number {shorten(literal, 40)} is out of range")
    return value


def _too_deep(body: Any) -> bool:
    """Whether a parsed body nests containers deeper than MAX_DEPTH (walked without
    recursion: json.loads has already proved it fits Python's stack)."""
    if not isinstance(body, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def content_hash(body: Any) -> str:
    """A digest of the API's content that ignores key order (`body` as `parse_body` made it)."""
    return hashlib.blake2b(_canonical_json(body).encode("utf-8"), digest_size=16).hexdigest()


# Built once: json.dumps with any non-default option builds an encoder per call (a quarter
# of its cost here, for every image written).
_canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def to_row(body: Any, *, requested_id: str) -> ImageRow:
    """Map a parsed body to an `images` row for `requested_id` (canonical lower-case UUID).

    Raises InvalidPayload when the body is not an object or names another image.
    """
    if not isinstance(body, dict):
        raise InvalidPayload(f"body is a JSON {json_type(body)}, not an object")
    sent_id = body.get("image_id")
    if sent_id is not None and (not isinstance(sent_id, str) or sent_id.lower() != requested_id):
        raise InvalidPayload(f"body is for image_id {shorten(json.dumps(sent_id))}")

    columns, extra, warnings = map_fields(body, IMAGE_FIELDS, skip=("image_id",))
    columns["date_added_at"] = _date_added_at(columns["date_added"], warnings)
    columns["extra"] = extra
    columns["content_hash"] = content_hash(body)
    return ImageRow(image_id=requested_id, columns=columns, warnings=warnings)


def _is_bigint(value: Any) -> bool:
    return type(value) is int and _BIGINT_MIN <= value <= _BIGINT_MAX


def _date_added_at(value: int | None, warnings: list[str]) -> datetime | None:
    if value is None:
        return None
    try:
        if value < _SECONDS_BELOW:
            return _EPOCH + timedelta(seconds=value)
        return _EPOCH + timedelta(milliseconds=value)
    except OverflowError:
        warnings.append(f"date_added: {value} is out of the timestamp range; date_added_at NULL")
        return None


_compact_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def json_text(value: Any) -> str:
    return _compact_json(value)


def json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
