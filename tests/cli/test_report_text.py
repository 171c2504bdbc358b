"""Paths and photos in reports: plain text, shell-quoted, named as people know them."""

from __future__ import annotations

import shlex
from pathlib import Path

from picpipe.cli.report_text import failure_path, photo_label, sha_of_library_path

SHA = "3fa4c2e1b0" + "0" * 54


def test_failure_paths_resolve_sources_with_colons_in_their_folder(tmp_path: Path) -> None:
    odd = tmp_path / "smile:thumbs_up:"
    odd.mkdir()
    shown = failure_path(f"{odd}:it's.jpg", {})
    assert shlex.split(shown) == [str(odd / "it's.jpg")]
    assert failure_path("phone:DCIM/a b.jpg", {"phone": str(tmp_path)}) == shlex.quote(
        str(tmp_path / "DCIM/a b.jpg")
    )
    assert failure_path("gone:x.jpg", {}) == "gone:x.jpg"


def test_photos_are_named_by_their_source_path_and_a_short_hash() -> None:
    library_path = f"originals/2024/05/01/{SHA}.arw"
    assert sha_of_library_path(library_path) == SHA
    label = photo_label(library_path, {SHA: "/srv/phone/DCIM/IMG 1.ARW"})
    assert label == "'/srv/phone/DCIM/IMG 1.ARW' (3fa4c2e1b0)"
    assert photo_label(library_path, {}) == library_path
    assert sha_of_library_path("notes/readme.txt") is None
