"""`RunClock`: the system clock, held after what the mirror recorded and never backwards.
(What it protects, the order of the history, is tested through the CLI in test_history.)"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from mirror.clock import TICK, RunClock


def test_readings_follow_the_system_clock_and_always_increase() -> None:
    clock = RunClock()
    before = datetime.now(UTC)
    readings = [clock.now() for _ in range(1000)]
    assert before <= readings[0] <= datetime.now(UTC)
    assert all(a < b for a, b in itertools.pairwise(readings))


def test_a_recorded_time_ahead_of_the_system_clock_holds_the_readings_after_it() -> None:
    clock = RunClock()
    ahead = datetime.now(UTC) + timedelta(hours=1)
    clock.not_before(None, ahead - timedelta(minutes=5), ahead, None)
    first, second = clock.now(), clock.now()
    assert (first, second) == (ahead + TICK, ahead + 2 * TICK)


def test_recorded_times_behind_the_system_clock_leave_it_in_charge() -> None:
    clock = RunClock()
    first = clock.now()
    clock.not_before(first - timedelta(hours=1), None)
    second = clock.now()
    assert first < second <= datetime.now(UTC)
