"""Text from outside (a server's words, the API's data) as it may be shown on a terminal."""

from __future__ import annotations


def printable(text: str) -> str:
    """`text` with its control characters escaped (`\\x1b`, `\\t`), the rest kept as it is
    ("Café" stays): a terminal obeys an escape sequence in what it prints, so one in an image
    name or a server's reason phrase could retitle, clear or recolour it."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
