"""The fetch stage: workers that take image IDs from a shared source and fetch each once.

Each worker owns one transport (one keep-alive connection). Requests run as tasks of their
own, so a signal or a fatal error (`RunControl`) cancels those in flight without losing what
a worker already handed on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

from mirror.api import FetchResult, ImageFetcher, Transport
from mirror.control import RunControl
from mirror.errors import MirrorError


async def fetch_worker(
    *,
    work: Iterator[str],
    fetcher: ImageFetcher,
    transport: Transport,
    control: RunControl,
    deliver: Callable[[FetchResult], Awaitable[None]],
) -> None:
    """Fetch image IDs from `work` until it is empty or the run stops; `deliver` each result.

    A MirrorError from the fetcher (a rejected key, an unreachable API) stops the whole run.
    """
    for image_id in work:
        if control.stopping:
            return
        request = asyncio.ensure_future(fetcher.fetch(transport, image_id))
        control.track(request)
        try:
            await asyncio.wait({request})
        finally:
            control.untrack(request)
        if request.cancelled():
            return
        error = request.exception()
        if isinstance(error, MirrorError):
            control.abort(error)
            return
        if error is not None:
            raise error
        await deliver(request.result())
