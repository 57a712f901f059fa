"""One vocabulary for what a run does with each image and order, shared by every layer.

The fetcher (`api.py`) answers with a body or a `Failure`; the run (`sync.py`) turns each
answer into one `Outcome`: a row to write (an image's or an order's), a 404 (`Missing` /
`MissingOrder`: a deletion or a not-found, depending on the mirror), or a `Failure`; the store
(`store.py`) writes them and records the run under a `RunStatus`. Nothing here imports the
database or the network.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, NamedTuple

from mirror.order_payload import OrderRow
from mirror.payload import ImageRow

# `sync_failures.kind`
FailureKind = Literal["not_found", "http_error", "timeout", "connection", "invalid_payload"]
# `sync_runs.status` (a dry run reports what the status would be)
RunStatus = Literal["running", "succeeded", "partial", "failed", "interrupted"]
# What a failure is a failure of: one image, one order, or a page of the order listing.
Subject = Literal["image", "order", "listing"]


def exit_code_of(status: RunStatus) -> int:
    """The exit code of a run that ended without an exception: 0 only when everything was
    mirrored (the others end in an exception that carries its own code)."""
    return 0 if status == "succeeded" else 1


@dataclass(frozen=True)
class Failure:
    """Why an image, an order or a listing page could not be mirrored (after any retries):
    a `sync_failures` row. An order's failure has no image_id; a listing page's has neither
    ID, and so has an embedded image whose body names none (its order_id is its order's)."""

    image_id: str | None
    kind: FailureKind
    message: str
    http_status: int | None = None
    order_id: str | None = None
    of: Subject = "image"

    @property
    def subject(self) -> str:
        """What failed, for a person: an image ID, `order X`, or `order listing`."""
        if self.image_id is not None:
            return self.image_id
        if self.of == "image":
            return f"an image of order {self.order_id}"
        return f"order {self.order_id}" if self.order_id is not None else "order listing"


def failure_line(kind: str, subject: str, message: str, http_status: int | None) -> str:
    """A failure as the sync's summary and `status` print it: the HTTP status said once, and
    a listing page named once (its message names the page: "order listing page (offset ...)").
    """
    if message.startswith(subject):
        subject, _, message = message.partition(": ")
    said = message.startswith(f"HTTP {http_status}")  # "HTTP 404: ..."
    status = f" (HTTP {http_status})" if http_status and not said else ""
    return f"  {kind}: {subject}{status}: {message}"


@dataclass(frozen=True)
class Missing:
    """The API answered 404: a deletion if the image is mirrored, else a not-found failure."""

    image_id: str

    def not_found(self) -> Failure:
        return Failure(
            self.image_id, "not_found", "HTTP 404: the API does not know this image", 404
        )


@dataclass(frozen=True)
class MissingOrder:
    """The API answered 404 for an order: a deletion if it is mirrored, else a not-found."""

    order_id: str

    def not_found(self) -> Failure:
        return Failure(
            None,
            "not_found",
            "HTTP 404: the API does not know this order",
            404,
            order_id=self.order_id,
            of="order",
        )


# What one fetched image or order becomes, on its way to the writer. An `OrderRow` goes to
# the writer with the IDs of the images it embeds; those images travel as rows of their own.
Outcome = ImageRow | Missing | OrderRow | MissingOrder | Failure


class Change(NamedTuple):
    """What a dry run found would happen to one image or order: new, changed or deleted."""

    of: Subject
    key: str  # its image_id or order_id
    change: str


@dataclass
class Counts:
    """Per-run tallies of images (or, as `OrderCounts`, of orders); `requested` minus the
    rest is what was never tried."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    not_found: int = 0
    failed: int = 0

    def add(self, other: Counts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    def mirrored(self) -> int:
        """Those the API answered for with a record or a 404 of a mirrored one."""
        return self.inserted + self.updated + self.unchanged + self.deleted

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class OrderCounts(Counts):
    """The same tallies for orders: the `orders_*` columns of `sync_runs` and JSON keys."""

    def as_dict(self) -> dict[str, int]:
        return {f"orders_{name}": value for name, value in super().as_dict().items()}
