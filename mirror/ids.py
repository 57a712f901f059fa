"""Reading and validating the image IDs a sync is asked for, before any request is made.

Lists can hold millions of IDs, so they are streamed: one pass validates everything, keeps
each distinct ID as a 128-bit integer (to drop duplicates) and spools it, 16 bytes, to a
temporary file in first-seen order. The fetch then reads the spool, never the sources again:
the IDs fetched are exactly the IDs validated, even if the file is rewritten meanwhile.
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass
from typing import IO, BinaryIO

from mirror.errors import InputError, SpoolFailed

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
MAX_ERRORS_SHOWN = 20
MAX_VALUE_SHOWN = 60  # characters of a bad value quoted in an error (a line can be megabytes)
_BOM = "\ufeff"


@dataclass(frozen=True)
class IdSource:
    """Where IDs come from: command-line arguments, and a file path (`-` is standard input),
    named in errors as `argument_label N` and `option`."""

    arguments: tuple[str, ...] = ()
    file_name: str | None = None
    argument_label: str = "argument"
    option: str = "--from-file"


MAX_ORDER_ID_LENGTH = 200


def canonical_order_id(value: str) -> str | None:
    """An order ID as given, or None when it cannot be one (spec §7).

    Order IDs are chosen by the API's users, so they are opaque: any text of 1 to 200
    characters without whitespace or control characters (it is percent-encoded in a path).
    """
    if not value or len(value) > MAX_ORDER_ID_LENGTH:
        return None
    if any(c.isspace() or not c.isprintable() for c in value):
        return None
    return value


def canonical_id(value: str) -> str | None:
    """The canonical lower-case form of a hyphenated 8-4-4-4-12 UUID, or None if it is not one."""
    value = value.strip()
    return value.lower() if _UUID.fullmatch(value) else None


class RequestedIds:
    """The validated, de-duplicated IDs: `len()` is their number; iterating yields them
    (canonical) in first-seen order from the spool. Iterable once; closes the spool then."""

    def __init__(self, spool: BinaryIO, count: int, unique: set[int]) -> None:
        self._spool: BinaryIO | None = spool
        self._count = count
        self._unique = unique  # the IDs given directly, to skip them in selections

    def __len__(self) -> int:
        return self._count

    def add_selected(self, image_ids: Iterable[str]) -> int:
        """Append IDs selected from the mirror (canonical, each once: a primary key), skipping
        those given directly; returns how many were added. Only before iterating."""
        spool = self._spool
        if spool is None:
            raise RuntimeError("RequestedIds can be extended only before iterating")
        added = 0
        try:
            spool.seek(0, 2)
            for image_id in image_ids:
                key = int(image_id.replace("-", ""), 16)
                if key not in self._unique:
                    spool.write(key.to_bytes(16, "big"))
                    added += 1
            spool.flush()  # a full disk says so here, before anything is fetched
        except OSError as exc:
            # Closed here: left to the collector, its flush of what it buffered failed again
            # as "Exception ignored ... No space left on device" (Python 3.13).
            self._spool = None
            _close_quietly(spool)
            raise _spool_failed(exc) from None
        self._count += added
        return added

    def __iter__(self) -> Iterator[str]:
        spool, self._spool = self._spool, None
        if spool is None:
            raise RuntimeError("RequestedIds can be iterated only once")
        # Needed only to add selections, which come before: 1,000,000 IDs given hold ~70 MB
        # here, which kept for the run pushed its peak RSS from 191 to 203 MB (bench/run.py).
        self._unique = set()
        with spool:
            spool.seek(0)
            while chunk := spool.read(16 * 4096):
                hexed = chunk.hex()  # 32 hex digits an ID; formatting by hand is 5x faster
                for i in range(0, len(hexed), 32):
                    h = hexed[i : i + 32]
                    yield f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def collect_ids(source: IdSource) -> RequestedIds:
    """Validate every requested ID before anything is fetched.

    In the file, blank lines are skipped and `#` starts a comment anywhere on a line;
    surrounding spaces, CRLF line ends and a UTF-8 byte order mark are tolerated. Raises
    InputError naming every bad value and where it came from (argument N, or file:line) when
    any is not a UUID, or when the file cannot be read or is not UTF-8 text.
    """
    unique: set[int] = set()
    errors: list[str] = []
    try:
        spool = tempfile.TemporaryFile()  # noqa: SIM115 (handed to RequestedIds, which closes it)
    except OSError as exc:
        raise _spool_failed(exc) from None
    try:
        for where, raw in _entries(source):
            image_id = canonical_id(raw)
            if image_id is None:
                errors.append(f"{where}: {_quoted(raw)} is not a UUID")
                continue
            key = int(image_id.replace("-", ""), 16)
            if key not in unique:
                unique.add(key)
                if not errors:
                    spool.write(key.to_bytes(16, "big"))
        spool.flush()  # a full disk says so here, before anything is fetched
    except OSError as exc:
        _close_quietly(spool)
        raise _spool_failed(exc) from None
    except BaseException:
        _close_quietly(spool)
        raise
    if errors:
        _close_quietly(spool)
        raise _invalid(
            errors, "image ID", "expected UUIDs like 3f6c2a9e-8b1d-4c57-9e2a-6d0b7f41c8a5"
        )
    return RequestedIds(spool, len(unique), unique)


def collect_order_ids(source: IdSource) -> list[str]:
    """Validate every requested order ID (spec §7) before anything is fetched: the unique
    IDs in first-seen order. In the file a line starting with `#` is a comment, and so is
    anything after whitespace and a `#` (an order ID may hold `#`, never whitespace).
    Raises InputError naming every bad value and where it came from."""
    unique: dict[str, None] = {}
    errors: list[str] = []
    for where, raw in _entries(source, _order_line):
        order_id = canonical_order_id(raw)
        if order_id is None:
            errors.append(f"{where}: {_quoted(raw)} is not an order ID")
        else:
            unique.setdefault(order_id, None)
    if errors:
        rule = f"1 to {MAX_ORDER_ID_LENGTH} characters, no whitespace or control characters"
        raise _invalid(errors, "order ID", rule)
    return list(unique)


def _spool_failed(exc: OSError) -> SpoolFailed:
    try:
        where = tempfile.gettempdir()
    except OSError:  # none usable at all: the error names the places tried
        where = "TMPDIR or /tmp"
    return SpoolFailed(
        f"cannot keep the run's list of image IDs in a temporary file in {where}: "
        f"{exc.strerror or exc}; make room there, or set TMPDIR to a directory with room "
        "(nothing was fetched or written)"
    )


def _close_quietly(spool: BinaryIO) -> None:
    """Close a spool that is given up on: what it still buffered may not fit either."""
    with suppress(OSError):
        spool.close()


def _invalid(errors: list[str], what: str, rule: str) -> InputError:
    """One error naming every bad value (the first MAX_ERRORS_SHOWN) and where it was."""
    shown = errors[:MAX_ERRORS_SHOWN]
    more = len(errors) - len(shown)
    lines = "\n".join(f"  {e}" for e in shown) + (f"\n  … and {more} more" if more else "")
    plural = "s" if len(errors) != 1 else ""
    return InputError(
        f"{len(errors)} invalid {what}{plural} ({rule}); nothing was fetched or written:\n{lines}"
    )


def _image_line(text: str) -> str:
    return text.split("#", 1)[0].strip()


def _order_line(text: str) -> str:
    text = text.strip()
    if text.startswith("#"):
        return ""
    return re.split(r"\s+#", text, maxsplit=1)[0].strip()


def _entries(
    source: IdSource, value_of: Callable[[str], str] = _image_line
) -> Iterator[tuple[str, str]]:
    for number, value in enumerate(source.arguments, start=1):
        yield f"{source.argument_label} {number}", value.strip()
    if source.file_name is None:
        return
    name = "<stdin>" if source.file_name == "-" else source.file_name
    with _open(source.file_name, source.option) as file:
        try:
            for number, line in enumerate(file, start=1):
                text = _decode(line, name, number)
                if number == 1:
                    text = text.removeprefix(_BOM)
                value = value_of(text)
                if value:
                    yield f"{name}:{number}", value
        except OSError as exc:
            raise InputError(
                f"{source.option} {name}: cannot read it: {exc.strerror or exc}"
            ) from None


def _open(file_name: str, option: str) -> AbstractContextManager[IO[bytes]]:
    if file_name == "-":
        stdin = sys.stdin.buffer if sys.stdin is not None else None
        if stdin is None or stdin.closed:
            raise InputError(f"{option} -: standard input is closed; nothing to read")
        return nullcontext(stdin)  # read, not closed: it is not ours
    try:
        return open(file_name, "rb")
    except OSError as exc:
        raise InputError(
            f"{option} {file_name}: cannot open it: {exc.strerror or exc}; "
            "nothing was fetched or written"
        ) from None


def _decode(line: bytes, name: str, number: int) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        utf16 = number == 1 and line[:2] in (b"\xff\xfe", b"\xfe\xff")
        why = " (it is UTF-16: save it as UTF-8)" if utf16 else ""
        raise InputError(
            f"{name}:{number}: not UTF-8 text (byte {exc.start + 1} of the line){why}; "
            "nothing was fetched or written"
        ) from None


def _quoted(value: str) -> str:
    if len(value) <= MAX_VALUE_SHOWN:
        return repr(value)
    return f"{value[:MAX_VALUE_SHOWN]!r}… ({len(value):,} characters)"
