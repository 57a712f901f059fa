"""`mirror.shown`: text from outside as a terminal may print it."""

from __future__ import annotations

import pytest

from mirror.shown import printable


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kitchen.jpg", "kitchen.jpg"),
        ("café \U0001f373", "café \U0001f373"),  # printable, whatever the script
        ("\x1b[2Jx", "\\x1b[2Jx"),
        ("a\tb\nc\x00\x7f\x9b", "a\\tb\\nc\\x00\\x7f\\x9b"),  # C0, DEL and C1 controls
        ("", ""),
    ],
)
def test_controls_are_escaped_and_the_rest_kept(text: str, expected: str) -> None:
    assert printable(text) == expected
