"""Atomic placement: verified, never half-written, idempotent."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import BinaryIO

import pytest

from picpipe.errors import CopyMismatch, LibraryUnwritable
from picpipe.library.layout import TEMP_PREFIX, original_path, sidecar_path, thumb_path
from picpipe.library.writer import check_writable, find_temp_files, place_original, sweep_temp_files

DATA = b"\xff\xd8" + bytes(range(256)) * 4000
SHA = hashlib.sha256(DATA).hexdigest()


def opener(data: bytes):  # type: ignore[no-untyped-def]
    @contextmanager
    def open_() -> Iterator[BinaryIO]:
        yield io.BytesIO(data)

    return open_


def test_layout() -> None:
    rel = original_path(SHA, date(2023, 12, 31), "JPG")
    assert rel == f"originals/2023/12/31/{SHA}.jpg"
    assert sidecar_path(rel) == f"originals/2023/12/31/{SHA}.xmp"
    assert thumb_path(SHA, "tiny") == f"thumbs/tiny/{SHA[:2]}/{SHA}.jpg"
    assert original_path(SHA, date(2023, 1, 2), "../x").endswith(".bin")
    with pytest.raises(ValueError, match="sha256"):
        original_path("../../etc/passwd", date(2023, 1, 2), "jpg")


def test_place_writes_verifies_and_is_idempotent(tmp_path: Path) -> None:
    rel = original_path(SHA, date(2023, 1, 2), "jpg")
    first = place_original(tmp_path, rel, opener(DATA), sha256=SHA, size=len(DATA), display="a")
    assert (first.action, first.path.read_bytes()) == ("written", DATA)
    again = place_original(tmp_path, rel, opener(DATA), sha256=SHA, size=len(DATA), display="a")
    assert again.action == "existing"
    assert not find_temp_files(tmp_path)


def test_a_damaged_original_is_replaced_by_good_bytes(tmp_path: Path) -> None:
    rel = original_path(SHA, date(2023, 1, 2), "jpg")
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_bytes(b"rot" + DATA[3:])
    placed = place_original(tmp_path, rel, opener(DATA), sha256=SHA, size=len(DATA), display="a")
    assert (placed.action, placed.path.read_bytes()) == ("written", DATA)


def test_bytes_that_do_not_match_the_hash_are_never_kept(tmp_path: Path) -> None:
    rel = original_path(SHA, date(2023, 1, 2), "jpg")
    with pytest.raises(CopyMismatch):
        place_original(
            tmp_path, rel, opener(DATA[:-1] + b"x"), sha256=SHA, size=len(DATA), display="a"
        )
    assert not (tmp_path / rel).exists()
    assert not find_temp_files(tmp_path)


def test_sweep_removes_only_unfinished_files(tmp_path: Path) -> None:
    day = tmp_path / "originals" / "2020" / "01" / "01"
    day.mkdir(parents=True)
    (day / f"{TEMP_PREFIX}abc").write_bytes(b"half")
    (day / f"{SHA}.jpg").write_bytes(DATA)
    assert sweep_temp_files(tmp_path) == [day / f"{TEMP_PREFIX}abc"]
    assert (day / f"{SHA}.jpg").exists()


def test_check_writable(tmp_path: Path) -> None:
    check_writable(tmp_path / "lib")
    assert (tmp_path / "lib" / "originals").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(LibraryUnwritable, match="not writable"):
        check_writable(tmp_path / "file" / "lib")
