"""Requested IDs: validated in one pass, fetched exactly as validated."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import new_ids

from mirror.errors import InputError
from mirror.ids import IdSource, collect_ids, collect_order_ids


def test_a_bom_and_trailing_comments_are_accepted(tmp_path: Path) -> None:
    ids = new_ids(3)
    path = tmp_path / "ids.txt"
    path.write_text(
        f"\ufeff{ids[0]}\r\n{ids[1].upper()}  # the kitchen\n#{ids[2]}\n\n{ids[1]}#again\n",
        encoding="utf-8",
    )
    assert list(collect_ids(IdSource(file_name=str(path)))) == ids[:2]


def test_the_ids_fetched_are_the_ids_validated_even_if_the_file_changes(tmp_path: Path) -> None:
    ids = new_ids(3)
    path = tmp_path / "ids.txt"
    path.write_text("\n".join(ids) + "\n")
    requested = collect_ids(IdSource(arguments=(ids[1],), file_name=str(path)))
    path.write_text("not a uuid\n" + "\n".join(new_ids(5)) + "\n")  # `generate > ids.txt`
    assert len(requested) == 3
    assert list(requested) == [ids[1], ids[0], ids[2]]


def test_a_huge_bad_line_is_quoted_short(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("x" * 5_000_000 + "\n")
    with pytest.raises(InputError) as caught:
        collect_ids(IdSource(file_name=str(path)))
    message = str(caught.value)
    assert len(message) < 400
    assert f"{path}:1: 'xxxx" in message and "(5,000,000 characters)" in message


def test_a_byte_that_is_not_utf8_is_placed_in_its_line(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    good = "\n".join(new_ids(200)) + "\n"
    path.write_bytes(good.encode() + b"abc\xff\n")
    with pytest.raises(InputError, match=r"ids.txt:201: not UTF-8 text \(byte 4 of the line\)"):
        collect_ids(IdSource(file_name=str(path)))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_a_utf16_file_is_named_as_such(tmp_path: Path, encoding: str) -> None:
    """What Windows Notepad saves as "Unicode"; with its byte order mark either way round."""
    path = tmp_path / "ids.txt"
    text = "\n".join(new_ids(3)) + "\n"
    bom = "\ufeff" if encoding == "utf-16-be" else ""  # "utf-16" writes its own
    path.write_bytes((bom + text).encode(encoding))
    with pytest.raises(InputError, match=r"ids.txt:1: .*\(it is UTF-16: save it as UTF-8\)"):
        collect_ids(IdSource(file_name=str(path)))
    with pytest.raises(InputError, match=r"\(it is UTF-16: save it as UTF-8\)"):
        collect_order_ids(IdSource(file_name=str(path), option="--orders-from-file"))


def test_a_file_that_cannot_be_opened_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot open it"):
        collect_ids(IdSource(file_name=str(tmp_path / "missing.txt")))
