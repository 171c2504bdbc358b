"""An icloudpd-shaped tree from real test media: Live Photos, edits, in-place EXIF rewrites."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from picpipe.catalog.models import Asset
from picpipe.sources.icloudpd import icloudpd_name, original_name_of_edit
from tests.conftest import MEDIA, LibraryFixture
from tests.sources.watching import assets, names, wait_for, watching

SETTLE = 0.6
CAPTURE = 1_618_054_000_000_000_000  # icloudpd sets the mtime to the capture time


def _download(src: Path, final: Path) -> None:
    """What icloudpd does: write ``<checksum>.part``, rename, then set the mtime."""
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name("QJ7KZ3FBUYW2M.part")
    shutil.copyfile(src, part)
    os.rename(part, final)
    time.sleep(0.1)
    os.utime(final, ns=(CAPTURE, CAPTURE))


@pytest.fixture
def media() -> Path:
    if not MEDIA.is_dir():
        pytest.skip(f"../shared/testdata/media is absent ({MEDIA})")
    return MEDIA


@pytest.mark.slow
def test_an_icloudpd_tree_gives_live_photos_linked_edits_and_no_duplicate(
    sqlite_library: LibraryFixture, tmp_path: Path, media: Path, exiftool_available: None
) -> None:
    root = tmp_path / "icloud"
    root.mkdir()
    day = root / "2021" / "04" / "10"
    options = {"kind": "icloudpd", "path": str(root), "settle_seconds": SETTLE}
    with watching(sqlite_library, "icloud", options):
        # A Live Photo under icloudpd's default names (suffix policy).
        _download(media / "iphone" / "train.jpg", day / "IMG_7001.JPG")
        _download(media / "iphone" / "train.mov", day / "IMG_7001_HEVC.MOV")
        # An original and its edit (--size adjusted --size original).
        _download(media / "iphone" / "IMG_4120.JPG", day / "IMG_4120.JPG")
        _download(media / "iphone" / "IMG_E4120.JPG", day / "IMG_4120-adjusted.JPG")
        # --set-exif-datetime: the JPEG is rewritten in place right after the rename.
        rewritten = day / "IMG_0100.JPG"
        _download(media / "jpeg" / "img_1771_no_exif.jpg", rewritten)
        time.sleep(0.2)
        subprocess.run(
            [
                "exiftool",
                "-q",
                "-overwrite_original",
                "-DateTimeOriginal=2021:04:10 11:00:00",
                str(rewritten),
            ],
            check=True,
        )
        os.utime(rewritten, ns=(CAPTURE, CAPTURE))
        final_bytes = rewritten.read_bytes()
        expected = sorted(
            ["IMG_7001.JPG", "IMG_7001_HEVC.MOV", "IMG_4120.JPG", "IMG_4120-adjusted.JPG"]
        )
        expected = sorted([*expected, "IMG_0100.JPG"])
        wait_for(lambda: names(sqlite_library) == expected, timeout=60)
        time.sleep(SETTLE * 3)
        # --auto-delete: a file vanishing from the folder never reaches the library.
        (day / "IMG_4120.JPG").unlink()
        time.sleep(SETTLE * 3)
    found = {a.original_name: a for a in assets(sqlite_library)}
    assert sorted(found) == expected  # one asset each: no duplicate from the rewrite
    assert found["IMG_7001.JPG"].pair_kind == "live"
    assert found["IMG_7001_HEVC.MOV"].pair_id == found["IMG_7001.JPG"].pair_id
    assert found["IMG_4120-adjusted.JPG"].edit_of == found["IMG_4120.JPG"].sha256
    assert found["IMG_4120.JPG"].edit_of is None
    placed = sqlite_library.root / found["IMG_0100.JPG"].library_path
    assert placed.read_bytes() == final_bytes  # the final bytes, once
    assert (sqlite_library.root / found["IMG_4120.JPG"].library_path).is_file()


def test_a_live_photo_video_with_the_hevc_suffix_pairs_by_name(
    sqlite_library: LibraryFixture, tmp_path: Path, media: Path
) -> None:
    from datetime import datetime

    from picpipe.samples import make_jpeg

    folder = tmp_path / "icloud" / "2021" / "04"
    folder.mkdir(parents=True)
    shutil.copy(media / "iphone" / "train.mov", folder / "IMG_7777_HEVC.MOV")
    make_jpeg(folder / "IMG_7777.HEIC.jpg", seed=1)  # other name: stays alone
    make_jpeg(
        folder / "IMG_7777.JPG", taken=datetime(2021, 4, 10, 11, 44, 0), make="Apple", model="X"
    )
    sqlite_library.import_folder(tmp_path / "icloud")
    with sqlite_library.catalog.session() as db:
        found = {a.original_name: a for a in db.scalars(select(Asset))}
    assert found["IMG_7777.JPG"].pair_kind == "live"
    assert found["IMG_7777_HEVC.MOV"].pair_id == found["IMG_7777.JPG"].pair_id


def test_icloudpd_names_are_recognised() -> None:
    assert icloudpd_name("IMG_1234_HEVC.MOV").role == "live-video"
    assert icloudpd_name("IMG_1234-adjusted.JPG").role == "edit"
    assert icloudpd_name("IMG_1234-567890.JPG").role == "collision"
    assert icloudpd_name("IMG_1234_QAZXSWE.JPG").role == "collision"
    assert icloudpd_name("IMG_1234.HEIC").role == "original"
    assert original_name_of_edit("IMG_1234-adjusted.HEIC") == "IMG_1234"
    assert original_name_of_edit("IMG_1234.HEIC") is None


def test_collision_names_are_known_by_their_icloud_name(tmp_path: Path) -> None:
    """icloudpd's second file of a name gets ``-<its size>`` or ``_<id7>``: picpipe knows it
    by iCloud's name; a camera's own ``DSC-1234.JPG`` keeps its name."""
    from picpipe.samples import make_jpeg
    from picpipe.sources.base import iter_entries
    from picpipe.sources.icloudpd import IcloudpdSource
    from picpipe.sources.watched import WatchedOptions

    folder = tmp_path / "icloud" / "2021" / "04" / "10"
    folder.mkdir(parents=True)
    make_jpeg(folder / "IMG_1234.JPG", seed=1)
    second = folder / "IMG_1234-0.JPG"
    make_jpeg(second, seed=2)
    sized = second.with_name(f"IMG_1234-{second.stat().st_size}.JPG")
    second.rename(sized)
    make_jpeg(folder / "IMG_5555.JPG", seed=3)
    make_jpeg(folder / "IMG_5555_QAZXSWE.JPG", seed=4)
    make_jpeg(folder / "IMG_6666_QAZXSWE.JPG", seed=5)  # no IMG_6666.JPG beside it
    make_jpeg(folder / "DSC-1234.JPG", seed=6)  # a number, not this file's size
    root = tmp_path / "icloud"
    source = IcloudpdSource("icloud", root, options=WatchedOptions(path=root, settle_seconds=0))
    found = {e.ref.rsplit("/", 1)[-1]: e.name for e in iter_entries(source)}  # type: ignore[union-attr]
    assert found == {
        "IMG_1234.JPG": "IMG_1234.JPG",
        sized.name: "IMG_1234.JPG",
        "IMG_5555.JPG": "IMG_5555.JPG",
        "IMG_5555_QAZXSWE.JPG": "IMG_5555.JPG",
        "IMG_6666_QAZXSWE.JPG": "IMG_6666_QAZXSWE.JPG",
        "DSC-1234.JPG": "DSC-1234.JPG",
    }
