"""The fetch stage: workers that take targets (images, orders) from a shared source and fetch
each once.

Each worker owns one transport (one keep-alive connection). Requests run as tasks of their
own, so a signal or a fatal error (`RunControl`) cancels those in flight without losing what
a worker already handed on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

from mirror.api import Fetcher, FetchResult, Target, Transport
from mirror.control import RunControl
from mirror.errors import MirrorError


async def fetch_worker(
    *,
    work: Iterator[Target],
    fetcher: Fetcher,
    transport: Transport,
    control: RunControl,
    deliver: Callable[[FetchResult], Awaitable[None]],
) -> None:
    """Fetch targets from `work` until it is empty or the run stops; `deliver` each result.

    A MirrorError from the fetcher (a rejected key, an unreachable API) stops the whole run.
    """
    for target in work:
        result = await fetch_one(target, fetcher=fetcher, transport=transport, control=control)
        if result is None:
            return
        await deliver(result)


async def fetch_one(
    target: Target,
    *,
    fetcher: Fetcher,
    transport: Transport,
    control: RunControl,
    on_send: Callable[[], None] | None = None,
) -> FetchResult | None:
    """Fetch one target in the run's way (cancelled by a stop); None when the run stopped.

    For the listing, whose pages are fetched one after another by a single task.
    """
    if control.stopping:
        return None
    request = asyncio.ensure_future(fetcher.fetch(transport, target, on_send=on_send))
    control.track(request)
    try:
        await asyncio.wait({request})
    finally:
        control.untrack(request)
    if request.cancelled():
        return None
    error = request.exception()
    if isinstance(error, MirrorError):
        control.abort(error)
        return None
    if error is not None:
        raise error
    return request.result()
