"""Real camera and phone files: extracted facts match ``shared/testdata/media/MANIFEST.csv``.

Knowingly different, and why:
- GPS stored as exactly 0,0 (Samsung GT-I9000) is a placeholder without a fix: picpipe
  treats it as missing (the MANIFEST keeps the raw value and notes it as a placeholder).
- A DateTimeOriginal in the future (more than a day past now; the WWL ION230's clock) is
  impossible for a capture: picpipe ignores it, records the problem, and falls back.
- broken/30-type_error.jpg: its EXIF DateTimeOriginal is unreachable (MANIFEST: empty), but
  the file's embedded XMP carries DateTimeOriginal 2013-07-05T03:18:27Z, which picpipe uses.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from picpipe.catalog.db import open_catalog
from picpipe.catalog.models import Asset, SourceFile
from picpipe.config import load_settings
from picpipe.jobs.workflows import import_sources
from picpipe.pipeline.dates import plausible
from picpipe.pipeline.exiftool import ExifToolPool
from picpipe.pipeline.runner import SessionSummary
from picpipe.pipeline.stages import IMPORT_STAGES
from picpipe.sources.folder import FolderSource
from tests.conftest import MEDIA, tree_digest

pytestmark = pytest.mark.integration

EXPECTED_EXTENSION = {
    "JPEG": "jpg",
    "HEIC": "heic",
    "HEIF": "heif",
    "MOV": "mov",
    "MP4": "mp4",
    "3GP": "3gp",
    "M2TS": "mts",
    "AVI": "avi",
    "CRW": "crw",
    "CR3": "cr3",
    "CR2": "cr2",
    "DNG": "dng",
    "NEF": "nef",
    "RW2": "rw2",
    "ARW": "arw",
}
PLACEHOLDER_GPS = {"jpeg/Samsung GT-I9000 (Galaxy S).jpg"}
# The MANIFEST extended with the descriptive fields these files carry (keywords, rating,
# title, description); every other file has none. Camera placeholders ("SONY DSC" in
# el_torcal_rocks, "OLYMPUS DIGITAL CAMERA" in door-knocker, the make as in WWL and Samsung,
# "000007") and the rating 0 that Windows and Lightroom write for "unrated" are not fields.
# mongolia.jpeg's IPTC copy of its keywords lost its Cyrillic to "??????": XMP wins.
DESCRIPTIVE: dict[str, tuple[list[str] | None, int | None, str | None, str | None]] = {
    "broken/RangeError_Offset_outside_bounds.jpg": (
        None,
        None,
        "THYSSENKRUPP-RESTRUCTURING/STEEL",
        "FILE PHOTO: A moving stairway of Swiss elevator maker Schindler is pictured at a mall"
        " in Neuss near Duesseldorf, Germany, February 12, 2020. REUTERS/Wolfgang Rattay/File"
        " Photo",
    ),
    "broken/exiv2-bug495.jpg": (
        None,
        None,
        None,
        "Die Insel Stromboli mit dem Vulkan Stromboli, 1000m hoch",
    ),
    "broken/wrong.heic": (["Marienkäfer"], None, None, "Animal with green eyes on table burst"),
    "heic/Stonehenge.heic": (None, None, None, "Classic View"),
    "jpeg/mongolia.jpeg": (["Mongolia", "Ôvôrhangaj", "Хужирт"], None, None, "Willy Gardiol"),
    "raw/Nikon.nef": (None, None, None, "A caption"),
}
# Files with GPS but no offset tag: the offset of the zone at the position on that day (DST
# included), origin "gps-zone". Where the file also has a GPS time, it agrees (huawei 18:52 vs
# 16:52Z, IMG_4120 12:57 vs 10:57Z, iphone_hdr_YES 20:12 vs 18:12Z, elephants, ship).
GPS_ZONE = {
    "broken/huawei-gps-error.jpg": 120,  # Europe/Berlin, summer
    "heic/Stonehenge.heic": 60,  # Europe/London, British Summer Time
    "iphone/Apple iPhone 4.jpg": 60,  # Europe/Rome, January
    "iphone/Apple iPhone 5.jpg": -420,  # America/Los_Angeles (Seattle), September: PDT
    "iphone/IMG_4120.JPG": 120,  # Europe/Berlin (Frankfurt), June
    "iphone/IMG_E4120.JPG": 120,
    "iphone/iphone_7.heic": 540,  # Asia/Tokyo, no DST
    "iphone/iphone_hdr_YES.jpg": 120,  # Europe/Madrid, April
    "jpeg/DSCN0010.jpg": 120,  # Europe/Rome, 22 October 2008: still summer time
    "jpeg/DSCN0021.jpg": 120,
    "jpeg/Kodak_CX7530.jpg": 180,  # Africa/Nairobi
    "jpeg/elephants.jpg": 120,  # Africa/Johannesburg
    "jpeg/mongolia.jpeg": 480,  # Asia/Ulaanbaatar
    "jpeg/ship.jpg": 120,  # Europe/Warsaw, May
}
# Country (and for a few, city) of every file with a real GPS fix, from GeoNames offline.
PLACE_COUNTRY = {
    "broken/huawei-gps-error.jpg": "Germany",
    "heic/HMD_Nokia_8.3_5G_hdr.heif": "Spain",
    "heic/Stonehenge.heic": "United Kingdom",
    "heic/sewing-threads.heic": "Spain",
    "iphone/Apple iPhone 4.jpg": "Italy",
    "iphone/Apple iPhone 5.jpg": "United States",
    "iphone/IMG_4120.JPG": "Germany",
    "iphone/IMG_5195.HEIC": "United States",
    "iphone/IMG_E4120.JPG": "Germany",
    "iphone/exif-at-eof.heic": "Mongolia",
    "iphone/iphone_15_pro.heic": "Germany",
    "iphone/iphone_7.heic": "Japan",
    "iphone/iphone_hdr_YES.jpg": "Spain",
    "iphone/train.jpg": "United Kingdom",
    "iphone/train.mov": "United Kingdom",
    "jpeg/DSCN0010.jpg": "Italy",
    "jpeg/DSCN0021.jpg": "Italy",
    "jpeg/HMD_Nokia_8.3_5G.jpg": "Finland",
    "jpeg/Kodak_CX7530.jpg": "Kenya",
    "jpeg/elephants.jpg": "South Africa",
    "jpeg/mongolia.jpeg": "Mongolia",
    "jpeg/ship.jpg": "Poland",
    "raw/IMG_1361.dng": "United States",
    "video/Issue 515 (java).mp4": "Netherlands",
    "video/quicktime-hvc1.mov": "Germany",
    "video/with-gps.mov": "Israel",
    "video/with-gps.mp4": "United Kingdom",
}
PLACE_CITY = {
    "iphone/Apple iPhone 4.jpg": "Rome",
    "iphone/Apple iPhone 5.jpg": "Seattle",
    "jpeg/DSCN0010.jpg": "Arezzo",
    "jpeg/mongolia.jpeg": "Khujirt",  # its keyword Хужирт
}
EMBEDDED_XMP_DATE = {"broken/30-type_error.jpg": (datetime(2013, 7, 5, 3, 18, 27), 0)}


def manifest() -> list[dict[str, str]]:
    if not (MEDIA / "MANIFEST.csv").is_file():
        return []
    with open(MEDIA / "MANIFEST.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


ROWS = manifest()


@pytest.fixture(scope="module")
def imported(
    tmp_path_factory: pytest.TempPathFactory, exiftool_available: None
) -> Iterator[tuple[SessionSummary, dict[str, Asset], dict[str, SourceFile]]]:
    if not ROWS:
        pytest.skip(f"../shared/testdata/media is absent ({MEDIA}); real-media checks skipped")
    root = tmp_path_factory.mktemp("realmedia")
    settings = load_settings(
        home=root / "home",
        library=root / "library",
        **{"import": {"fsync": False, "default_timezone": "UTC"}},
    )
    catalog = open_catalog(settings.catalog_url)
    tools = ExifToolPool()
    before = tree_digest(MEDIA)
    try:
        summary = import_sources(
            settings,
            catalog,
            [FolderSource("media", MEDIA, settings.scan)],
            tools=tools,
            workers=2,
            stages=IMPORT_STAGES,
        )
        with catalog.session() as db:
            assets = {a.sha256: a for a in db.scalars(select(Asset))}
            files = {f.ref: f for f in db.scalars(select(SourceFile))}
        assert tree_digest(MEDIA) == before
        yield summary, assets, files
    finally:
        tools.close()
        catalog.close()


def test_every_file_is_imported_except_the_empty_one(imported) -> None:  # type: ignore[no-untyped-def]
    summary, assets, files = imported
    empty = [r["path"] for r in ROWS if r["file_type"] == "EMPTY"]
    # MANIFEST.csv and README.md are accounted for as skipped (not media), not imported.
    assert (summary.seen, summary.skipped) == (len(ROWS) + 2, 2)
    assert summary.failed == len(empty)
    assert {f["path"].split(":", 1)[1] for f in summary.failures} == set(empty)
    for row in ROWS:
        if row["file_type"] == "EMPTY":
            continue
        assert files[row["path"]].sha256 == row["sha256"], row["path"]
        assert row["sha256"] in assets


def _asset(imported, row: dict[str, str]) -> Asset:  # type: ignore[no-untyped-def]
    return imported[1][row["sha256"]]


def _rows(*, skip_empty: bool = True) -> list[dict[str, str]]:
    return [r for r in ROWS if not (skip_empty and r["file_type"] == "EMPTY")]


def _ids(rows: list[dict[str, str]]) -> list[str]:
    return [r["path"] for r in rows]


@pytest.mark.parametrize("row", _rows(), ids=_ids(_rows()))
def test_capture_date_and_offset(imported, row: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    asset = _asset(imported, row)
    expected = row["datetime_original"]
    if expected:
        local = datetime.fromisoformat(expected)
        if not plausible(local):
            assert asset.date_source not in {"exif", "quicktime"}, "a future date is ignored"
            assert any("not a usable date" in p for p in asset.problems or [])
            return
        assert asset.taken_local == local
        assert asset.date_source in {"exif", "quicktime"}
        offset = row["offset_time"]
        if offset:
            sign = -1 if offset[0] == "-" else 1
            minutes = sign * (int(offset[1:3]) * 60 + int(offset[4:6]))
            assert asset.taken_offset_min == minutes
            assert asset.offset_source == "tag"
        elif row["path"] in GPS_ZONE:
            assert (asset.taken_offset_min, asset.offset_source) == (
                GPS_ZONE[row["path"]],
                "gps-zone",
            )
            assert asset.taken_utc == local - timedelta(minutes=GPS_ZONE[row["path"]])
        else:
            assert (asset.taken_offset_min, asset.offset_source) == (None, None)
    elif row["path"] in EMBEDDED_XMP_DATE:
        assert (asset.taken_local, asset.taken_offset_min) == EMBEDDED_XMP_DATE[row["path"]]
    elif row["create_date_utc"]:
        utc = datetime.fromisoformat(row["create_date_utc"].rstrip("Z"))
        assert (asset.date_source, asset.taken_utc, asset.taken_local) == (
            "quicktime-utc",
            utc,
            utc,
        )
    else:
        assert asset.date_source not in {"exif", "quicktime"}
    folder = asset.taken_local.strftime("originals/%Y/%m/%d/")
    assert asset.library_path.startswith(folder)


@pytest.mark.parametrize("row", _rows(), ids=_ids(_rows()))
def test_gps(imported, row: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    asset = _asset(imported, row)
    if not row["gps_lat"] or row["path"] in PLACEHOLDER_GPS:
        assert (asset.gps_lat, asset.gps_lon) == (None, None)
        return
    assert asset.gps_lat == pytest.approx(float(row["gps_lat"]), abs=2e-6)
    assert asset.gps_lon == pytest.approx(float(row["gps_lon"]), abs=2e-6)


@pytest.mark.parametrize("row", _rows(), ids=_ids(_rows()))
def test_camera(imported, row: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    asset = _asset(imported, row)
    assert (asset.make or "", asset.model or "") == (row["make"], row["model"])


@pytest.mark.parametrize("row", _rows(), ids=_ids(_rows()))
def test_stored_extension_follows_the_real_type(imported, row: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    asset = _asset(imported, row)
    assert asset.library_path.rsplit(".", 1)[1] == EXPECTED_EXTENSION[row["file_type"]]
    assert asset.original_name == Path(row["path"]).name
    assert asset.size == int(row["bytes"])
    assert hashlib.sha256((MEDIA / row["path"]).read_bytes()).hexdigest() == asset.sha256


@pytest.mark.parametrize(
    "row",
    [r for r in _rows() if r["width"] and not r["path"].startswith("raw/")],
    ids=_ids([r for r in _rows() if r["width"] and not r["path"].startswith("raw/")]),
)
def test_stored_pixel_size(imported, row: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    asset = _asset(imported, row)
    assert (asset.width, asset.height) == (int(row["width"]), int(row["height"]))


@pytest.mark.parametrize("row", _rows(), ids=_ids(_rows()))
def test_descriptive_fields(imported, row: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    asset = _asset(imported, row)
    got = (asset.keywords, asset.rating, asset.title, asset.description)
    assert got == DESCRIPTIVE.get(row["path"], (None, None, None, None))
    assert asset.regions is None, "none of these files has face regions"


@pytest.mark.parametrize("row", _rows(), ids=_ids(_rows()))
def test_place_names(imported, row: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    asset = _asset(imported, row)
    assert asset.country == PLACE_COUNTRY.get(row["path"])
    assert (asset.region is None) == (asset.country is None)
    if row["path"] in PLACE_CITY:
        assert asset.city == PLACE_CITY[row["path"]]


def test_payload_hash_finds_the_one_picture_stored_twice(imported) -> None:  # type: ignore[no-untyped-def]
    # exif-at-eof.heic is IMG_2927.HEIC's picture with its EXIF item moved after the image
    # data: other bytes, the same coded image. No other two files share a payload.
    by_path = {row["path"]: _asset(imported, row) for row in _rows()}
    twin, other = by_path["iphone/IMG_2927.HEIC"], by_path["iphone/exif-at-eof.heic"]
    assert twin.sha256 != other.sha256
    assert twin.payload_sha256 is not None
    assert twin.payload_sha256 == other.payload_sha256
    payloads = [a.payload_sha256 for a in by_path.values() if a.payload_sha256]
    assert len(payloads) == len(set(payloads)) + 1
    for path, asset in by_path.items():
        if asset.file_type in ("JPEG", "HEIC", "HEIF") and not path.startswith("broken/"):
            assert asset.payload_sha256 is not None, path


def test_live_photo_video_carries_its_content_identifier(imported) -> None:  # type: ignore[no-untyped-def]
    movie = next(r for r in ROWS if r["path"] == "iphone/train.mov")
    assert _asset(imported, movie).live_photo_id == "E905E6C6-C747-4805-942F-9904A0281F02"


def test_kinds(imported) -> None:  # type: ignore[no-untyped-def]
    kinds = {row["path"]: _asset(imported, row).kind for row in _rows()}
    assert kinds["raw/CRW.CRW"] == "raw"
    assert kinds["video/with-gps.mov"] == "video"
    assert kinds["broken/Issue 247-1.nef"] == "photo"  # a JPEG named .nef
    assert kinds["iphone/IMG_2927.HEIC"] == "photo"


def test_utc_dates_are_never_the_folder_date_when_local_is_known(imported) -> None:  # type: ignore[no-untyped-def]
    # train.mov: local 11:43:59 +01:00, movie header 10:44:00 UTC
    movie = next(r for r in ROWS if r["path"] == "iphone/train.mov")
    asset = _asset(imported, movie)
    assert asset.taken_local == datetime(2021, 4, 10, 11, 43, 59)
    assert asset.taken_utc == datetime(2021, 4, 10, 10, 43, 59)
    assert datetime.now(UTC) - timedelta(days=1) > asset.taken_utc.replace(tzinfo=UTC)
