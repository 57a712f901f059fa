"""One vocabulary for what a run does with each image, shared by every layer.

The fetcher (`api.py`) answers with a body or a `Failure`; the run (`sync.py`) turns each
answer into one `Outcome`: a row to write, a 404 (`Missing`: a deletion or a not-found,
depending on the mirror), or a `Failure`; the store (`store.py`) writes them and records the
run under a `RunStatus`. Nothing here imports the database or the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mirror.payload import ImageRow

# `sync_failures.kind`
FailureKind = Literal["not_found", "http_error", "timeout", "connection", "invalid_payload"]
# `sync_runs.status` (a dry run reports what the status would be)
RunStatus = Literal["running", "succeeded", "partial", "failed", "interrupted"]


@dataclass(frozen=True)
class Failure:
    """Why one image could not be mirrored (after any retries): a `sync_failures` row."""

    image_id: str
    kind: FailureKind
    message: str
    http_status: int | None = None


@dataclass(frozen=True)
class Missing:
    """The API answered 404: a deletion if the image is mirrored, else a not-found failure."""

    image_id: str

    def not_found(self) -> Failure:
        return Failure(
            self.image_id, "not_found", "HTTP 404: the API does not know this image", 404
        )


# What one fetched image becomes, on its way to the writer.
Outcome = ImageRow | Missing | Failure
