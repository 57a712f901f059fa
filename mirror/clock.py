"""The instants a run writes on rows.

The system clock can step back (NTP correcting it, a virtual machine restored from a
snapshot), and cron may take turns on one PostgreSQL from hosts whose clocks differ. A run
that stamped a time before the ones the mirror holds would open an image's new version before
the version it replaces (spec §8) and move `last_synced_at` backwards, so reports would read
the history out of order. A run's clock is the system clock, held to move forwards from the
latest instant the mirror recorded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

TICK = timedelta(microseconds=1)  # the finest step both databases keep


class RunClock:
    """The system clock, never behind an instant it was told of, never backwards."""

    def __init__(self) -> None:
        self._last: datetime | None = None

    def not_before(self, *instants: datetime | None) -> None:
        """Every later reading is after each of `instants` (None: nothing recorded)."""
        for instant in instants:
            if instant is not None and (self._last is None or instant > self._last):
                self._last = instant

    def now(self) -> datetime:
        wall = datetime.now(UTC)
        if self._last is not None and wall <= self._last:
            wall = self._last + TICK
        self._last = wall
        return wall
