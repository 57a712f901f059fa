"""Request pacing shared by every request of a run, retries included (spec §5, Rate)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable

# The window guard counts one second plus this margin, so that scheduling jitter on either
# side (a late send here, an early arrival there) cannot put max_rate + 1 requests into one
# second as the server sees it. It costs about 2 % of throughput at the cap.
WINDOW_SECONDS = 1.02


class RateLimiter:
    """Spaces requests evenly at `max_rate` per second, never more than that in any 1 s window.

    Two mechanisms: slots reserved `1 / max_rate` apart (reservation is synchronous in one event
    loop, so concurrent callers never share a slot), and a guard over the actual send times of
    the last `max_rate` requests, so a request that woke late cannot bunch up with the next.
    `pause` delays every later request: a 429 storm slows the whole run, not one request.
    `max_rate` None or 0 means no cap.
    """

    def __init__(
        self, max_rate: float | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._interval = 1.0 / max_rate if max_rate else 0.0
        window = math.floor(max_rate) if max_rate else 0
        self._sent: deque[float] | None = deque(maxlen=window) if window >= 1 else None
        self._next = 0.0
        self._paused_until = 0.0
        self._gate = asyncio.Lock()

    @property
    def limited(self) -> bool:
        return self._interval > 0.0 or self._paused_until > self._clock()

    def reserve(self) -> float:
        """Reserve the next evenly spaced slot; returns the seconds to wait for it."""
        now = self._clock()
        slot = max(now, self._next, self._paused_until)
        self._next = slot + self._interval
        return slot - now

    async def acquire(self) -> None:
        """Wait until a request may be sent, and count it as sent."""
        if not self.limited:
            return
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = self._sent
        if sent is None:
            return
        # One task at a time waits at the window guard: the others queue on the lock rather
        # than all waking for every send (that herd cost ~0.5 ms of CPU per request).
        async with self._gate:
            while (
                len(sent) == sent.maxlen and (wait := sent[0] + WINDOW_SECONDS - self._clock()) > 0
            ):
                await asyncio.sleep(wait)
            sent.append(self._clock())

    def pause(self, seconds: float) -> None:
        """Hold every request not yet sent for `seconds` from now (e.g. after a 429)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)
