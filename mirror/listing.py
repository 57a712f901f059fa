"""The order listing stage (`sync --all`): `GET /v3/orders/` page after page (spec §7).

Pages are sequential by nature: each needs the previous page's `next_offset`. So the next
page is requested as soon as its token can be read from the raw page, while this page's
orders are mapped and handed on; the guess is checked against the parsed page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from mirror.api import Fetched, Fetcher, FetchResult, Target, Transport, TransportFactory
from mirror.classify import classify_page
from mirror.control import RunControl
from mirror.errors import ListingRunaway
from mirror.fetching import fetch_one
from mirror.order_payload import ListedOrderFailure, OrderRow, listed_order, peek_next_offset
from mirror.outcomes import Failure

# A listing longer than this is taken for one that never ends (spec §7): 1.5 million orders.
MAX_LISTING_PAGES = 100_000


class Listing:
    """Reads the whole listing once, handing on each listed order (`on_order`) and a failed
    page (`on_failure`: the listing stops there). `complete` says whether it reached its end
    without error: only then may the run reconcile what it did not list."""

    def __init__(
        self,
        *,
        fetcher: Fetcher,
        transports: TransportFactory,
        control: RunControl,
        on_order: Callable[[OrderRow | ListedOrderFailure], Awaitable[None]],
        on_failure: Callable[[Failure], Awaitable[None]],
    ) -> None:
        self._fetcher = fetcher
        self._transports = transports
        self._control = control
        self._on_order = on_order
        self._on_failure = on_failure
        self.complete = False

    async def run(self) -> None:
        """Stops the run (ListingRunaway) on a repeated token or more than MAX_LISTING_PAGES
        pages."""
        transport = self._transports()
        tokens: set[str] = set()
        request: _PageRequest | None = self._page(transport, None)
        pages = 0
        while request is not None:
            result = await request.answer
            if result is None:
                return  # the run stopped
            pages += 1
            guess = peek_next_offset(result.body) if isinstance(result, Fetched) else None
            request = None
            if guess is not None and guess not in tokens and pages < MAX_LISTING_PAGES:
                request = self._page(transport, guess)
                # Parsing a page takes milliseconds of the loop: let the request out first.
                await _sent(request)
            page = classify_page(result)
            if isinstance(page, Failure):
                await self._on_failure(page)  # the listing is incomplete
                return
            token = page.next_offset
            if request is None or token != guess:  # no guess, or a wrong one
                if request is not None:
                    request.answer.cancel()
                    transport = self._transports()  # the cancelled one may be mid-answer
                request = None
                if token is not None:
                    if token in tokens or pages >= MAX_LISTING_PAGES:
                        self._control.abort(_runaway(token in tokens, pages))
                    else:
                        request = self._page(transport, token)
            if token is not None:
                tokens.add(token)
            for body in page.orders:
                # Yield to the loop between orders, so the next page is read as it arrives
                # (putting into a free queue never yields).
                await asyncio.sleep(0)
                await self._on_order(listed_order(body))
            if request is None and not self._control.stopping:
                self.complete = True

    def _page(self, transport: Transport, token: str | None) -> _PageRequest:
        sent = asyncio.get_running_loop().create_future()

        def on_send() -> None:
            if not sent.done():
                sent.set_result(None)

        request = asyncio.create_task(
            fetch_one(
                Target.listing_page(token),
                fetcher=self._fetcher,
                transport=transport,
                control=self._control,
                on_send=on_send,
            )
        )
        return _PageRequest(request, sent)


class _PageRequest(NamedTuple):
    """A page in flight, and a future done once its request has gone out."""

    answer: asyncio.Task[FetchResult | None]
    sent: asyncio.Future[None]


async def _sent(request: _PageRequest) -> None:
    """Until the request is on its way (or over: a stopped run never sends it)."""
    pending: set[asyncio.Future[Any]] = {request.answer, request.sent}
    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)


def _runaway(repeated: bool, pages: int) -> ListingRunaway:
    why = (
        "repeated a next_offset token it had already given"
        if repeated
        else f"went on for more than {MAX_LISTING_PAGES:,} pages"
    )
    return ListingRunaway(
        f"the order listing {why} (after {pages} pages), so it would never end; what was "
        "fetched is committed, no order was marked deleted. Sync by --order or image IDs, "
        "and report it to Autoenhance"
    )
