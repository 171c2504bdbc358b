"""Live Photo and RAW+JPEG pairs are linked in the catalog."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from picpipe.catalog.models import Asset
from picpipe.samples import make_jpeg
from tests.conftest import MEDIA, LibraryFixture


def pairs(library: LibraryFixture) -> dict[str, tuple[str | None, str | None]]:
    with library.catalog.session() as db:
        return {a.original_name: (a.pair_id, a.pair_kind) for a in db.scalars(select(Asset))}


@pytest.fixture
def media() -> Path:
    if not MEDIA.is_dir():
        pytest.skip(f"../shared/testdata/media is absent ({MEDIA})")
    return MEDIA


def test_live_photo_in_the_test_media_is_linked_by_content_id(
    library: LibraryFixture, tmp_path: Path, media: Path
) -> None:
    source = tmp_path / "iphone"
    source.mkdir()
    for name in ("train.jpg", "train.mov", "IMG_4120.JPG"):
        shutil.copy(media / "iphone" / name, source / name)

    library.import_folder(source)

    found = pairs(library)
    assert found["train.jpg"] == ("live:E905E6C6-C747-4805-942F-9904A0281F02", "live")
    assert found["train.mov"] == found["train.jpg"]
    assert found["IMG_4120.JPG"] == (None, None)


def test_raw_and_jpeg_with_one_name_and_time_are_linked(
    library: LibraryFixture, tmp_path: Path, media: Path
) -> None:
    card = tmp_path / "DCIM" / "100CANON"
    card.mkdir(parents=True)
    shutil.copy(media / "raw" / "canon_eos_6d.dng", card / "IMG_0001.DNG")
    make_jpeg(
        card / "IMG_0001.JPG",
        taken=datetime(2019, 6, 6, 7, 29, 51),
        make="Canon",
        model="Canon EOS 6D",
    )
    make_jpeg(card / "IMG_0002.JPG", taken=datetime(2019, 6, 6, 7, 29, 51), seed=2)  # other name
    make_jpeg(
        tmp_path / "DCIM" / "IMG_0001.JPG", taken=datetime(2019, 6, 6, 7, 29, 51), seed=3
    )  # other folder

    library.import_folder(tmp_path / "DCIM")

    with library.catalog.session() as db:
        paired = db.scalars(select(Asset).where(Asset.pair_kind == "raw+jpeg")).all()
        lonely = db.scalars(select(Asset).where(Asset.pair_id.is_(None))).all()
    assert {(a.original_name, a.kind) for a in paired} == {
        ("IMG_0001.DNG", "raw"),
        ("IMG_0001.JPG", "photo"),
    }
    assert len({a.pair_id for a in paired}) == 1
    assert len(lonely) == 2  # the other name, and the same name in another folder


def test_a_still_without_content_id_pairs_with_its_motion_by_name_and_time(
    library: LibraryFixture, tmp_path: Path, media: Path
) -> None:
    folder = tmp_path / "icloudpd" / "2021" / "04"
    folder.mkdir(parents=True)
    shutil.copy(media / "iphone" / "train.mov", folder / "IMG_7777.MOV")
    make_jpeg(
        folder / "IMG_7777.JPG",
        taken=datetime(2021, 4, 10, 11, 44, 0),
        make="Apple",
        model="iPhone 6s",
    )

    library.import_folder(tmp_path / "icloudpd")

    found = pairs(library)
    assert found["IMG_7777.JPG"][1] == "live"
    assert found["IMG_7777.MOV"] == found["IMG_7777.JPG"]


def test_the_second_half_arriving_later_completes_the_pair(
    library: LibraryFixture, tmp_path: Path, media: Path
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    shutil.copy(media / "iphone" / "train.jpg", first / "train.jpg")
    shutil.copy(media / "iphone" / "train.mov", second / "train.mov")
    library.import_folder(first)
    assert pairs(library)["train.jpg"] == (None, None)

    library.import_folder(second)

    assert pairs(library)["train.jpg"][1] == "live"
