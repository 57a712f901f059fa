"""Request pacing shared by every request of a run, retries included (spec §5, Rate)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    """Spaces requests evenly at `max_rate` per second, never more than that in any 1 s window.

    Slots are reserved synchronously (one event loop, no await between reading and reserving),
    so concurrent callers never share a slot. `pause` delays every later slot: a 429 storm slows
    the whole run, not one request. `max_rate` None or 0 means no cap.
    """

    def __init__(
        self, max_rate: float | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._interval = 1.0 / max_rate if max_rate else 0.0
        window = math.floor(max_rate) if max_rate else 0
        # The last `window` reserved slots: a guard on top of the even spacing.
        self._recent: deque[float] | None = deque(maxlen=window) if window >= 1 else None
        self._next = 0.0
        self._paused_until = 0.0

    @property
    def limited(self) -> bool:
        return self._interval > 0.0 or self._paused_until > self._clock()

    def reserve(self) -> float:
        """Reserve the next slot; returns the seconds to wait before sending."""
        now = self._clock()
        slot = max(now, self._next, self._paused_until)
        if self._recent is not None and len(self._recent) == self._recent.maxlen:
            slot = max(slot, self._recent[0] + 1.0)
        self._next = slot + self._interval
        if self._recent is not None:
            self._recent.append(slot)
        return slot - now

    async def acquire(self) -> None:
        if not self.limited:
            return
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)

    def pause(self, seconds: float) -> None:
        """Hold every request not yet sent for `seconds` from now (e.g. after a 429)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)
