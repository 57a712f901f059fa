"""Pure classification: what one fetch result becomes on its way to the writer.

A 200's body becomes a row (or, if it cannot be mapped for any reason, an `invalid_payload`
failure of that image alone); a 404 becomes `Missing`; any other failure stays a `Failure`.
"""

from __future__ import annotations

from mirror.api import FetchResult
from mirror.errors import InvalidPayload
from mirror.outcomes import Failure, Missing, Outcome
from mirror.payload import parse_body, to_row


def classify(result: FetchResult) -> Outcome:
    if isinstance(result, Failure):
        return Missing(result.image_id) if result.kind == "not_found" else result
    try:
        return to_row(parse_body(result.body), requested_id=result.image_id)
    except InvalidPayload as exc:
        return Failure(result.image_id, "invalid_payload", str(exc), 200)
    except Exception as exc:  # a body nobody foresaw must fail its image, not the run
        message = f"body cannot be mapped: {type(exc).__name__}: {exc}"[:300]
        return Failure(result.image_id, "invalid_payload", message, 200)
