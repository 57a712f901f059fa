"""Reading and validating the image IDs a sync is asked for, before any request is made."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from mirror.errors import InputError

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
MAX_ERRORS_SHOWN = 20


@dataclass(frozen=True)
class IdSource:
    """Where IDs come from: command-line arguments, or a named file (`-` is standard input)."""

    arguments: tuple[str, ...] = ()
    file_name: str | None = None
    file: TextIO | None = None


def canonical_id(value: str) -> str | None:
    """The canonical lower-case form of a hyphenated 8-4-4-4-12 UUID, or None if it is not one."""
    value = value.strip()
    return value.lower() if _UUID.fullmatch(value) else None


def collect_ids(source: IdSource) -> list[str]:
    """Every requested ID, canonical and de-duplicated, in first-seen order.

    Blank lines and `#` comments in the file are skipped. Raises InputError naming every bad
    value and where it came from (argument N, or file:line) when any is not a UUID.
    """
    seen: dict[str, None] = {}
    errors: list[str] = []
    for where, raw in _entries(source):
        image_id = canonical_id(raw)
        if image_id is None:
            errors.append(f"{where}: {raw.strip()!r} is not a UUID")
        else:
            seen.setdefault(image_id)
    if errors:
        shown = errors[:MAX_ERRORS_SHOWN]
        more = len(errors) - len(shown)
        lines = "\n".join(f"  {e}" for e in shown) + (f"\n  … and {more} more" if more else "")
        raise InputError(
            f"{len(errors)} invalid image ID{'s' if len(errors) != 1 else ''} "
            f"(expected UUIDs like 3f6c2a9e-8b1d-4c57-9e2a-6d0b7f41c8a5); "
            f"nothing was fetched or written:\n{lines}"
        )
    return list(seen)


def _entries(source: IdSource) -> Iterable[tuple[str, str]]:
    for number, value in enumerate(source.arguments, start=1):
        yield f"argument {number}", value
    if source.file is not None:
        name = "<stdin>" if source.file_name in (None, "-") else source.file_name
        for number, line in enumerate(source.file, start=1):
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                yield f"{name}:{number}", stripped
