"""Whether a run goes on: a fatal error or a signal stops it, and cancels what is in flight.

Shared by the fetch stage (which stops asking) and the writer (which stops writing after a
database failure or the deletion guard), so one decision stops both.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mirror.errors import MirrorError


class RunControl:
    def __init__(self) -> None:
        self.fatal: MirrorError | None = None  # the first error that stopped the run
        self.interrupted = False  # SIGINT, SIGTERM or SIGHUP (interrupts.SIGNALS)
        self._in_flight: set[asyncio.Future[Any]] = set()

    @property
    def stopping(self) -> bool:
        return self.fatal is not None or self.interrupted

    def abort(self, error: MirrorError) -> None:
        """The run cannot go on: no new requests, those in flight dropped."""
        if self.fatal is None:
            self.fatal = error
        self._cancel_in_flight()

    def interrupt(self) -> None:
        """A signal: no new requests, none waited for; what was fetched is still committed."""
        self.interrupted = True
        self._cancel_in_flight()

    def track(self, request: asyncio.Future[Any]) -> None:
        """A request in flight, for `abort`/`interrupt` to cancel; `untrack` it when done."""
        self._in_flight.add(request)

    def untrack(self, request: asyncio.Future[Any]) -> None:
        self._in_flight.discard(request)

    def _cancel_in_flight(self) -> None:
        for request in self._in_flight:
            request.cancel()
