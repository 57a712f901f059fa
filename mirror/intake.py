"""Between the fetch stage and the writer: each result classified (`classify.py`) and put on
the writer's queue, every image and order once whichever sources name it, and the run's plan
(how many images and orders it tries, which the counts and the deletion guards read) kept
current.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from mirror.api import FetchResult
from mirror.classify import classify, classify_order
from mirror.order_payload import EmbeddedFailure, ListedOrderFailure, OrderRow
from mirror.outcomes import Failure, Outcome
from mirror.payload import ImageRow


@dataclass
class RunPlan:
    """What a run tries: `images`/`orders` are the numbers tried or still to try; the seen
    sets make each image and order tried and counted once."""

    images: int
    orders: int
    explicit_orders: set[str]  # given by --order / --orders-from-file: counted up front
    seen_images: set[int] = field(default_factory=set)  # 128-bit keys: a third of a str's size
    seen_orders: set[str] = field(default_factory=set)

    def first_image(self, image_id: str) -> bool:
        """Whether this image is new to the run (it is then remembered)."""
        key = _image_key(image_id)
        if key in self.seen_images:
            return False
        self.seen_images.add(key)
        return True

    def met_image(self, image_id: str) -> bool:
        """Whether the run has met this image already (nothing is remembered)."""
        return _image_key(image_id) in self.seen_images

    def first_order(self, order_id: str) -> bool:
        if order_id in self.seen_orders:
            return False
        self.seen_orders.add(order_id)
        return True


def _image_key(image_id: str) -> int:
    return int(image_id.replace("-", ""), 16)


class Intake:
    """Hands fetched images and orders to the writer's queue, each once."""

    def __init__(
        self,
        *,
        queue: asyncio.Queue[Outcome | None],
        plan: RunPlan,
        on_start: Callable[[int], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self._queue = queue
        self.plan = plan
        self._on_start = on_start
        self._on_progress = on_progress
        self._on_warning = on_warning

    async def image(self, result: FetchResult) -> None:
        """An image fetched by ID (the sources made sure it is the first time)."""
        outcome = classify(result)
        if isinstance(outcome, ImageRow) and self._on_warning is not None:
            for warning in outcome.warnings:
                self._on_warning(f"image {outcome.image_id}: {warning}")
        await self._queue.put(outcome)
        if self._on_progress is not None:
            self._on_progress(1)

    async def order(self, result: FetchResult) -> None:
        """An order fetched by ID."""
        outcome = classify_order(result)
        key = outcome.order_id
        if key is not None and not self.plan.first_order(key):
            return  # the listing brought it meanwhile
        if isinstance(outcome, OrderRow):
            await self._put_order(outcome)
        else:
            await self._queue.put(outcome)

    async def listed(self, listed: OrderRow | ListedOrderFailure) -> None:
        """An order of the listing."""
        plan = self.plan
        if isinstance(listed, ListedOrderFailure):
            self.planned(orders=1)
            failure = Failure(
                None, "invalid_payload", listed.message, 200, order_id=listed.order_id, of="order"
            )
            await self._queue.put(failure)
            return
        if not plan.first_order(listed.order_id):
            return  # repeated by a shifting listing, or already fetched by ID
        if listed.order_id not in plan.explicit_orders:
            self.planned(orders=1)
        await self._put_order(listed)

    async def failure(self, failure: Failure) -> None:
        """A failure of no image or order (a listing page)."""
        await self._queue.put(failure)

    def planned(self, *, images: int = 0, orders: int = 0) -> None:
        """The run found more (or, negative, fewer) images or orders to try."""
        plan = self.plan
        plan.images += images
        plan.orders += orders
        if images > 0 and self._on_start is not None:
            self._on_start(plan.images)

    async def _put_order(self, order: OrderRow) -> None:
        """The order, then each image it embeds that the run has not met yet."""
        plan = self.plan
        for warning in order.warnings:
            self._warn(f"order {order.order_id}: {warning}")
        await self._queue.put(order)
        delivered = 0
        for image in order.images:
            if image.image_id is not None and not plan.first_image(image.image_id):
                continue
            delivered += 1
            if isinstance(image, EmbeddedFailure):
                message = f"embedded in order {order.order_id}: {image.message}"
                await self._queue.put(
                    Failure(image.image_id, "invalid_payload", message, 200, order.order_id)
                )
                continue
            for warning in image.warnings:
                self._warn(f"image {image.image_id}: {warning}")
            await self._queue.put(image)
        self.planned(images=delivered)
        if self._on_progress is not None and delivered:
            self._on_progress(delivered)

    def _warn(self, message: str) -> None:
        if self._on_warning is not None:
            self._on_warning(message)
