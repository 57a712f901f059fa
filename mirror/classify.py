"""Pure classification: what one fetch result becomes on its way to the writer.

A 200's body becomes a row (or, if it cannot be mapped for any reason, an `invalid_payload`
failure of that image or order alone); a 404 becomes `Missing` / `MissingOrder`; any other
failure stays a `Failure`. A listing page becomes its orders and the next page's token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from mirror.api import Fetched, FetchResult
from mirror.errors import InvalidPayload
from mirror.order_payload import ListingPage, OrderRow, listing_page, order_to_row
from mirror.outcomes import Failure, Missing, MissingOrder, Outcome
from mirror.payload import parse_body, to_row

_T = TypeVar("_T")


def classify(result: FetchResult) -> Outcome:
    """An image's fetch result."""
    if isinstance(result, Failure):
        return Missing(result.image_id or "") if result.kind == "not_found" else result
    try:  # inline rather than through _mapped: this runs once per image
        return to_row(parse_body(result.body), requested_id=result.image_id)
    except InvalidPayload as exc:
        return result.target.failure("invalid_payload", str(exc), 200)
    except Exception as exc:  # a body nobody foresaw must fail its image, not the run
        return _unforeseen(result, exc)


def classify_order(result: FetchResult) -> OrderRow | MissingOrder | Failure:
    """An order's fetch result (`GET /v3/orders/{id}`)."""
    if isinstance(result, Failure):
        if result.kind == "not_found" and result.order_id is not None:
            return MissingOrder(result.order_id)
        return result
    return _mapped(result, lambda body: order_to_row(body, requested_id=result.target.key))


def classify_page(result: FetchResult) -> ListingPage | Failure:
    """A listing page's fetch result: a failure here ends the listing."""
    if isinstance(result, Failure):
        return result
    return _mapped(result, listing_page)


def _mapped(result: Fetched, mapping: Callable[[object], _T]) -> _T | Failure:
    try:
        return mapping(parse_body(result.body))
    except InvalidPayload as exc:
        return result.target.failure("invalid_payload", str(exc), 200)
    except Exception as exc:  # a body nobody foresaw must fail its order, not the run
        return _unforeseen(result, exc)


def _unforeseen(result: Fetched, exc: Exception) -> Failure:
    message = f"body cannot be mapped: {type(exc).__name__}: {exc}"[:300]
    return result.target.failure("invalid_payload", message, 200)
