"""The rate limiter on a clock the test moves (its `clock` parameter), and on the real one."""

from __future__ import annotations

import asyncio
import time

import pytest

from mirror.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_slots_are_spaced_evenly_not_in_bursts() -> None:
    clock = Clock()
    limiter = RateLimiter(4, clock=clock)
    waits = [limiter.reserve() for _ in range(6)]
    assert waits == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 1.25])


def test_a_late_caller_does_not_get_a_burst_of_missed_slots() -> None:
    clock = Clock()
    limiter = RateLimiter(10, clock=clock)
    assert limiter.reserve() == 0.0
    clock.now += 5.0  # idle for a while
    assert [limiter.reserve() for _ in range(3)] == pytest.approx([0.0, 0.1, 0.2])


def test_pause_holds_every_later_request() -> None:
    clock = Clock()
    limiter = RateLimiter(None, clock=clock)
    assert not limiter.limited and limiter.reserve() == 0.0
    limiter.pause(2.0)
    assert limiter.limited
    assert limiter.reserve() == pytest.approx(2.0)
    limiter.pause(0.5)  # a shorter pause does not shorten the longer one
    assert limiter.reserve() == pytest.approx(2.0)
    clock.now += 3.0
    assert not limiter.limited and limiter.reserve() == 0.0


def test_no_window_of_one_second_holds_more_than_max_rate() -> None:
    async def main() -> list[float]:
        limiter = RateLimiter(20)
        sent: list[float] = []

        async def worker() -> None:
            for _ in range(5):
                await limiter.acquire()
                sent.append(time.monotonic())

        await asyncio.gather(*(worker() for _ in range(8)))
        return sorted(sent)

    sent = asyncio.run(main())
    assert len(sent) == 40
    for i, start in enumerate(sent):
        assert sum(1 for t in sent[i:] if t - start < 1.0) <= 20
