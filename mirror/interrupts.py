"""The signals that stop a run, before a command can act on them: noted, raised as it starts.

Raised as KeyboardInterrupt in the middle of the start-up's imports, a signal lands wherever
the interpreter is: a library's bare `except` may swallow it (the process then runs on), and
Python 3.11 turns one raised in a class body's `__set_name__` into a RuntimeError (a
traceback, exit 1); raised while click parses the command line, click prints `Aborted!` and
exits 1. SIGTERM at random moments of a sync's first 0.13 s did one of these about once in a
hundred. So until a command runs, a signal is only noted; the command raises it as it starts
(exit 130, nothing done), and a sync then turns them into its own handling.
Kept free of imports beyond the standard library's smallest: `mirror.__main__` needs it first.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

# SIGHUP too (the terminal of an interactive run closed, an ssh session dropped), unless the
# process started with it ignored: `nohup` asks for the run to outlive its terminal.
_HANGUP = () if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN else (signal.SIGHUP,)
SIGNALS = (signal.SIGINT, signal.SIGTERM, *_HANGUP)
_noted: list[int] = []
_raising = False  # while a command runs (`raised_while_running`), until one signal is raised


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """The handler of `SIGNALS`: notes the signal, and while a command runs raises
    KeyboardInterrupt for the first one too. Noted, one whose KeyboardInterrupt a callback
    swallows (importlib's reports it as "Exception ignored" and goes on) still stops a sync
    as its pipeline starts; a second one raised would land in the handling of the first
    (restoring the handlers, printing `error: interrupted`) and escape it."""
    global _raising
    _noted.append(signum)
    if _raising:
        _raising = False
        raise KeyboardInterrupt


def defer() -> None:
    """From now on, until a command starts, the signals are only noted. Also called as a
    sync's pipeline starts (it takes them itself while it runs) and stays so once the run is
    over and recorded: raised while it is told, one would add `error: interrupted` and exit
    130 to the summary of a run that finished (two JSON objects with --json)."""
    global _raising
    _raising = False
    _handle(_on_signal)


def take_noted() -> bool:
    """Whether a signal was noted since the handlers became `defer`'s (they are forgotten)."""
    noted = bool(_noted)
    _noted.clear()
    return noted


def ignore() -> None:
    """Once the command is over and its output written: the signals are ignored while
    Python tears the process down. Python resets its own handlers to the default there, and a
    SIGTERM in those last milliseconds killed a process whose work was done (exit 143). An
    ignored signal is left as it is."""
    _handle(signal.SIG_IGN)


@contextlib.contextmanager
def raised_while_running() -> Iterator[None]:
    """While a command runs, the first signal raises KeyboardInterrupt, and one noted before
    it is raised at once; the handlers are put back as they were afterwards (noting again,
    after a command of the console script: its work is done, its exit code stands), and what
    came meanwhile is forgotten. Such a KeyboardInterrupt that a callback swallowed is not
    reported ("Exception ignored in ..."): the signal is noted all the same."""
    global _raising
    previous = _handle(_on_signal)
    previous_hook = sys.unraisablehook

    def unraisable(report: sys.UnraisableHookArgs) -> None:
        if report.exc_type is not KeyboardInterrupt:  # ours, swallowed: noted all the same
            previous_hook(report)

    sys.unraisablehook = unraisable
    try:
        if previous and _noted:
            _noted.clear()
            raise KeyboardInterrupt
        _raising = bool(previous)  # the main thread's: signals reach no other
        yield
    except KeyboardInterrupt:
        _forget_unhandled_interrupt()
        raise
    except RuntimeError as exc:
        # Python 3.11 wraps what `__set_name__` raises (a class being built as a command's
        # imports run): a signal that lands there is a KeyboardInterrupt all the same.
        if isinstance(exc.__cause__, KeyboardInterrupt):
            _forget_unhandled_interrupt()
            raise KeyboardInterrupt from None
        raise
    finally:
        _raising = False
        for sig, handler in previous:
            signal.signal(sig, handler)
        _noted.clear()
        sys.unraisablehook = previous_hook


def _forget_unhandled_interrupt() -> None:
    """CPython takes a KeyboardInterrupt that escaped code run by `exec` (dataclasses build
    their methods so, as a command's imports run) for an unhandled one, even once caught: a
    process started with `python -m mirror` then killed itself with SIGINT as it exited (-2,
    not the 130 it chose; seen under a storm of SIGTERMs). Code run by `exec` clears that."""
    exec("")


# signal._HANDLER: typeshed's name for what signal.signal takes, for mypy only (annotations are
# not evaluated here; importing typing for Any would delay the handlers by 9 ms of start-up).
def _handle(handler: signal._HANDLER) -> list[tuple[signal.Signals, signal._HANDLER]]:
    """Give the signals (`SIGNALS`) to `handler`; returns the handlers they had. Signals
    reach the main thread only: elsewhere nothing changes (an embedding program handles its
    own)."""
    if threading.current_thread() is not threading.main_thread():
        return []
    previous = [(sig, signal.getsignal(sig)) for sig in SIGNALS]
    for sig in SIGNALS:
        signal.signal(sig, handler)
    return previous
