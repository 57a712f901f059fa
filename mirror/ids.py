"""Reading and validating the image IDs a sync is asked for, before any request is made.

Lists can hold millions of IDs, so they are streamed: a first pass validates everything and
remembers each distinct ID as a 128-bit integer (about 75 bytes each, not a list of strings);
iterating the result reads the sources again and yields each ID once, in first-seen order.
Standard input, which cannot be read twice, is spooled to a temporary file on the first pass.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
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


class RequestedIds:
    """The validated, de-duplicated IDs: `len()` is the number of distinct IDs; iterating
    yields them (canonical) in first-seen order by reading the sources again.

    Iterable once: the set of IDs still to yield shrinks as they are yielded.
    """

    def __init__(self, source: IdSource, file: TextIO | None, unique: set[int]) -> None:
        self._source = source
        self._file = file
        self._count = len(unique)
        self._unique: set[int] | None = unique

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        pending, self._unique = self._unique, None
        if pending is None:
            raise RuntimeError("RequestedIds can be iterated only once")
        if self._file is not None:
            self._file.seek(0)
        for _, raw in _entries(self._source.arguments, self._file, "-"):
            image_id = raw.lower()
            key = int(image_id.replace("-", ""), 16)
            if key in pending:
                pending.discard(key)  # later duplicates are skipped
                yield image_id


def collect_ids(source: IdSource) -> RequestedIds:
    """Validate every requested ID before anything is fetched.

    Blank lines and `#` comments in the file are skipped; surrounding spaces and CRLF line ends
    are tolerated. Raises InputError naming every bad value and where it came from (argument N,
    or file:line) when any is not a UUID, or when the file is not UTF-8 text.
    """
    name = "<stdin>" if source.file_name in (None, "-") else source.file_name
    file = source.file
    if file is not None and not file.seekable():
        file = _spool(file, name)
    unique: set[int] = set()
    errors: list[str] = []
    for where, raw in _entries(source.arguments, file, name):
        image_id = canonical_id(raw)
        if image_id is None:
            errors.append(f"{where}: {raw!r} is not a UUID")
        else:
            unique.add(int(image_id.replace("-", ""), 16))
    if errors:
        shown = errors[:MAX_ERRORS_SHOWN]
        more = len(errors) - len(shown)
        lines = "\n".join(f"  {e}" for e in shown) + (f"\n  … and {more} more" if more else "")
        raise InputError(
            f"{len(errors)} invalid image ID{'s' if len(errors) != 1 else ''} "
            f"(expected UUIDs like 3f6c2a9e-8b1d-4c57-9e2a-6d0b7f41c8a5); "
            f"nothing was fetched or written:\n{lines}"
        )
    return RequestedIds(source, file, unique)


def _entries(
    arguments: tuple[str, ...], file: TextIO | None, name: str | None
) -> Iterator[tuple[str, str]]:
    for number, value in enumerate(arguments, start=1):
        yield f"argument {number}", value.strip()
    if file is None:
        return
    try:
        for number, line in enumerate(file, start=1):
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                yield f"{name}:{number}", stripped
    except UnicodeDecodeError as exc:
        raise _not_utf8(name, exc) from None


def _spool(file: TextIO, name: str) -> TextIO:
    """Copy a stream that cannot be read twice (a pipe) to a temporary file."""
    spooled = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (lives with the run)
    try:
        for line in file:
            spooled.write(line)
    except UnicodeDecodeError as exc:
        spooled.close()
        raise _not_utf8(name, exc) from None
    spooled.seek(0)
    return spooled


def _not_utf8(name: str | None, exc: UnicodeDecodeError) -> InputError:
    return InputError(
        f"{name}: not UTF-8 text (byte {exc.start} of a line); nothing was fetched or written"
    )
