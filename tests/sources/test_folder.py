"""The folder source contract: listing reads no content, open detects changes, refs are stable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from picpipe.config import ScanOptions
from picpipe.errors import TornRead, VanishedFile
from picpipe.sources.base import ScanProblem, SourceEntry, iter_entries, load_source_kind
from picpipe.sources.folder import FolderSource


def entries(source: FolderSource) -> dict[str, SourceEntry]:
    """The entries with a media name (neither skipped nor to be sniffed)."""
    return {
        e.ref: e
        for e in iter_entries(source)
        if isinstance(e, SourceEntry) and e.skipped is None and not e.sniff
    }


def test_folder_kind_is_registered_through_entry_points() -> None:
    assert load_source_kind("folder") is FolderSource


def test_listing_gives_relative_refs_sizes_and_mtimes(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "IMG.JPG").write_bytes(b"12345")
    (tmp_path / "top.heic").write_bytes(b"1")
    (tmp_path / "readme.txt").write_bytes(b"1")
    found = entries(FolderSource("x", tmp_path))
    assert set(found) == {"a/b/IMG.JPG", "top.heic"}
    entry = found["a/b/IMG.JPG"]
    assert (entry.size, entry.mtime_ns) == (5, os.stat(tmp_path / "a/b/IMG.JPG").st_mtime_ns)


def test_configurable_extensions_and_hidden_folders(tmp_path: Path) -> None:
    (tmp_path / ".thumbs").mkdir()
    (tmp_path / ".thumbs" / "a.jpg").write_bytes(b"1")
    (tmp_path / "b.xyz").write_bytes(b"1")
    scan = ScanOptions(photo_extensions=["xyz"], skip_hidden=False)
    assert set(entries(FolderSource("x", tmp_path, scan))) == {"b.xyz"}
    scan = ScanOptions(skip_hidden=False)
    assert set(entries(FolderSource("x", tmp_path, scan))) == {".thumbs/a.jpg"}


def test_open_notices_changes_and_disappearance(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(b"abc")
    source = FolderSource("x", tmp_path)
    entry = entries(source)["a.jpg"]
    with source.open(entry) as stream:
        assert stream.read() == b"abc"
    path.write_bytes(b"abcd")
    with pytest.raises(TornRead), source.open(entry):
        pass
    path.unlink()
    with pytest.raises(VanishedFile), source.open(entry):
        pass


def test_missing_root_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    items = list(FolderSource("x", tmp_path / "nope").listing())
    assert len(items) == 1
    assert isinstance(items[0], ScanProblem)


def test_each_folder_is_listed_in_one_piece(tmp_path: Path) -> None:
    for folder in ("a", "a/b", "c", ""):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            (tmp_path / folder / f"{i}.jpg").write_bytes(b"x")
    listings = [item for item in FolderSource("x", tmp_path).listing()]
    assert sorted(item.folder for item in listings) == ["", "a", "a/b", "c"]  # type: ignore[union-attr]
    for item in listings:
        assert all(e.ref.rpartition("/")[0] == item.folder for e in item.entries)  # type: ignore[union-attr]


def test_ignore_patterns_apply_to_media_names(tmp_path: Path) -> None:
    for name in ("._a.jpg", ".~b.jpg", "~$c.jpg", ".picpipe-tmp-d.jpg", "keep.jpg", "x.JPG.part"):
        (tmp_path / name).write_bytes(b"1")
    scan = ScanOptions(
        skip_hidden=False,
        ignored_patterns=["._*", ".~*", "~$*", ".picpipe-tmp-*", "*.part", "IMG_?.jpg"],
    )
    (tmp_path / "IMG_1.jpg").write_bytes(b"1")
    (tmp_path / "IMG_12.jpg").write_bytes(b"1")
    assert set(entries(FolderSource("x", tmp_path, scan))) == {"keep.jpg", "IMG_12.jpg"}
    custom = ScanOptions(ignored_patterns=["*.jpg"])
    assert set(entries(FolderSource("x", tmp_path, custom))) == set()


def test_a_folder_named_like_a_photo_is_walked(tmp_path: Path) -> None:
    (tmp_path / "trip.jpg").mkdir()
    (tmp_path / "trip.jpg" / "inside.jpg").write_bytes(b"1")
    assert set(entries(FolderSource("x", tmp_path))) == {"trip.jpg/inside.jpg"}
