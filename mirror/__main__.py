"""`python -m mirror` and the console script: SIGTERM is made to act like Ctrl-C first, before
the ~0.5 s of imports, so a signal during start-up still exits 130 rather than 143."""

from __future__ import annotations

import signal


def main() -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        from mirror.cli import main as cli_main
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    cli_main()


if __name__ == "__main__":
    main()
