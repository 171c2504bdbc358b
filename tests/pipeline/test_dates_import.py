"""Capture dates from every place, sidecars that correct them, and time zones from the place.

Generated JPEGs with the tags written by exiftool, imported through the real pipeline. The
import's default zone is deliberately far off (Pacific/Kiritimati, UTC+14) so a test passes
only when the date's own offset, the GPS position's zone or the configured zone was used.
"""

from __future__ import annotations

import codecs
import hashlib
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from picpipe.catalog.db import open_catalog
from picpipe.catalog.models import Asset
from picpipe.config import load_settings
from picpipe.errors import ConfigError
from picpipe.pipeline.exiftool import ExifToolPool
from picpipe.pipeline.runner import SessionSummary, build_context
from picpipe.samples import make_jpeg
from tests.conftest import LibraryFixture

TOKYO = (35.6812, 139.7671)
NEW_YORK = (40.7128, -74.0060)
BERLIN = (52.5200, 13.4050)
SYLT = (54.9079, 8.3104)


@pytest.fixture
def lib(tmp_path: Path, exiftool_available: None) -> Iterator[LibraryFixture]:
    yield from _library(tmp_path)


def _library(tmp_path: Path, **extra: Any) -> Iterator[LibraryFixture]:
    settings = load_settings(
        home=tmp_path / "home",
        library=tmp_path / "library",
        **{"import": {"fsync": False, "default_timezone": "Pacific/Kiritimati"}},
        **extra,
    )
    catalog = open_catalog(settings.catalog_url)
    tools = ExifToolPool()
    try:
        yield LibraryFixture(settings, catalog, tools)
    finally:
        tools.close()
        catalog.close()


def exiftool(path: Path, *args: str) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args, str(path)], check=True)


def photo(folder: Path, name: str, *args: str, seed: int, **kwargs: Any) -> Path:
    path = make_jpeg(folder / name, seed=seed, **kwargs).path
    if args:
        exiftool(path, *args)
    return path


def imported(lib: LibraryFixture, folder: Path, name: str = "card") -> tuple[SessionSummary, Any]:
    summary = lib.run(lib.folder(folder, name), workers=2)

    def asset(path: Path) -> Asset:
        with lib.catalog.session() as db:
            row = db.get_one(Asset, hashlib.sha256(path.read_bytes()).hexdigest())
            db.expunge(row)
            return row

    return summary, asset


def when(asset: Asset) -> tuple[datetime, int | None, str, str | None, datetime | None, str]:
    return (
        asset.taken_local,
        asset.taken_offset_min,
        asset.date_source,
        asset.offset_source,
        asset.taken_utc,
        asset.library_path[len("originals/") : len("originals/YYYY/MM/DD")],
    )


def test_dates_from_every_place(lib: LibraryFixture, tmp_path: Path) -> None:
    card = tmp_path / "card"
    gps_exif = photo(
        card, "a.jpg", "-GPS:GPSDateStamp=2021:03:04", "-GPS:GPSTimeStamp=10:20:30", seed=1
    )
    gps_xmp = photo(card, "b.jpg", "-XMP-exif:GPSDateTime=2021:03:05 10:20:30Z", seed=2)
    iptc = photo(
        card, "c.jpg", "-IPTC:DateCreated=2020:07:23", "-IPTC:TimeCreated=23:32:20-05:00", seed=3
    )
    photoshop = photo(card, "d.jpg", "-XMP-photoshop:DateCreated=2019:01:02 03:04:05+01:00", seed=4)
    xmp_exif = photo(card, "e.jpg", "-XMP-exif:DateTimeOriginal=2018:02:03 04:05:06-03:00", seed=5)
    exif_wins = photo(
        card,
        "f.jpg",
        "-IPTC:DateCreated=2001:01:01",
        "-IPTC:TimeCreated=01:01:01+00:00",
        "-XMP-photoshop:DateCreated=2002:02:02 02:02:02",
        seed=6,
        taken=datetime(2017, 5, 6, 7, 8, 9),
        offset="+02:00",
    )

    summary, asset = imported(lib, card)

    assert (summary.new, summary.failed, summary.warnings) == (6, 0, [])
    kiritimati = 14 * 60
    assert when(asset(gps_exif)) == (
        datetime(2021, 3, 5, 0, 20, 30),
        kiritimati,
        "gps",
        "default",
        datetime(2021, 3, 4, 10, 20, 30),
        "2021/03/05",
    )
    assert when(asset(gps_xmp))[2:5] == ("gps", "default", datetime(2021, 3, 5, 10, 20, 30))
    assert when(asset(iptc)) == (
        datetime(2020, 7, 23, 23, 32, 20),
        -300,
        "iptc",
        "tag",
        datetime(2020, 7, 24, 4, 32, 20),
        "2020/07/23",
    )
    assert when(asset(photoshop))[:4] == (datetime(2019, 1, 2, 3, 4, 5), 60, "xmp", "tag")
    assert when(asset(xmp_exif))[:4] == (datetime(2018, 2, 3, 4, 5, 6), -180, "xmp", "tag")
    assert when(asset(exif_wins))[:4] == (datetime(2017, 5, 6, 7, 8, 9), 120, "exif", "tag")


SIDECAR = """<?xml version="1.0" encoding="{encoding}"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:exif="http://ns.adobe.com/exif/1.0/"
    xmp:Rating="{rating}" exif:DateTimeOriginal="{date}" {gps}>
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">Grüße {rating}</rdf:li></rdf:Alt></dc:title>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def sidecar(
    rating: int, date: str, *, gps: tuple[str, str] | None = None, decl: bool = True
) -> str:
    position = f'exif:GPSLatitude="{gps[0]}" exif:GPSLongitude="{gps[1]}"' if gps else ""
    text = SIDECAR.format(encoding="UTF-8", rating=rating, date=date, gps=position)
    return text if decl else text.split("?>", 1)[1].lstrip()


def test_a_sidecar_that_came_with_the_file_wins(lib: LibraryFixture, tmp_path: Path) -> None:
    card = tmp_path / "card"
    corrected = photo(card, "IMG_1.JPG", seed=1, taken=datetime(2021, 5, 6, 7, 8, 9), gps=BERLIN)
    (card / "IMG_1.JPG.xmp").write_text(
        sidecar(2, "2015-06-07T08:09:10+02:00", gps=("54,54.474N", "8,18.624E")), encoding="utf-8"
    )
    # Both names: digiKam's <name>.<ext>.xmp wins over <name>.xmp.
    both = photo(card, "IMG_2.JPG", seed=2, taken=datetime(2021, 5, 6, 7, 8, 9))
    (card / "IMG_2.JPG.xmp").write_text(sidecar(5, "2016-01-01T10:00:00"), encoding="utf-8")
    (card / "IMG_2.xmp").write_text(sidecar(1, "2010-01-01T10:00:00"), encoding="utf-8")
    # Same wall time in the sidecar without an offset: the file's offset still holds.
    same = photo(card, "IMG_3.JPG", seed=3, taken=datetime(2021, 5, 6, 7, 8, 9), offset="-04:00")
    (card / "IMG_3.xmp").write_text(sidecar(3, "2021-05-06T07:08:09"), encoding="utf-8")

    summary, asset = imported(lib, card)

    assert (summary.new, summary.warnings) == (3, [])
    one = asset(corrected)
    assert when(one)[:5] == (
        datetime(2015, 6, 7, 8, 9, 10),
        120,
        "sidecar",
        "tag",
        datetime(2015, 6, 7, 6, 9, 10),
    )
    assert one.library_path.startswith("originals/2015/06/07/")
    assert (one.gps_lat, one.gps_lon) == pytest.approx(SYLT, abs=1e-3), "the sidecar's place"
    two = asset(both)
    assert (two.rating, two.taken_local) == (5, datetime(2016, 1, 1, 10))
    assert when(asset(same))[:4] == (datetime(2021, 5, 6, 7, 8, 9), -240, "sidecar", "tag")


def _utf(text: str, codec: str, bom: bytes) -> bytes:
    return bom + text.encode(codec)


ENCODINGS = [
    ("utf-16-le with BOM", "UTF-16", "utf-16-le", codecs.BOM_UTF16_LE, True),
    ("utf-16-be with BOM", "UTF-16", "utf-16-be", codecs.BOM_UTF16_BE, True),
    ("utf-16-le with BOM, no declaration", "", "utf-16-le", codecs.BOM_UTF16_LE, False),
    ("utf-16-be without BOM, no declaration", "", "utf-16-be", b"", False),
    ("utf-32-le with BOM", "UTF-32", "utf-32-le", codecs.BOM_UTF32_LE, True),
    ("utf-32-be without BOM, no declaration", "", "utf-32-be", b"", False),
]


def test_sidecars_in_every_xmp_encoding_are_read(lib: LibraryFixture, tmp_path: Path) -> None:
    card = tmp_path / "card"
    photos = {}
    for i, (label, declared, codec, bom, decl) in enumerate(ENCODINGS):
        path = photo(card, f"IMG_{i}.JPG", seed=i, taken=datetime(2021, 5, 6, 7, 8, 9))
        text = sidecar(i % 5 + 1, f"2014-0{i + 1}-02T03:04:05+01:00", decl=decl)
        if declared:
            text = text.replace('encoding="UTF-8"', f'encoding="{declared}"')
        (card / f"IMG_{i}.JPG.xmp").write_bytes(_utf(text, codec, bom))
        photos[label] = (path, i)

    summary, asset = imported(lib, card)

    assert (summary.new, summary.warnings) == (len(ENCODINGS), [])
    for label, (path, i) in photos.items():
        got = asset(path)
        assert (got.rating, got.title, got.date_source) == (
            i % 5 + 1,
            f"Grüße {i % 5 + 1}",
            "sidecar",
        ), label
        assert got.taken_local == datetime(2014, i + 1, 2, 3, 4, 5), label
        xmp = lib.root / got.library_path.rsplit(".", 1)[0]
        assert Path(f"{xmp}.xmp").read_bytes().startswith(b"<?xpacket"), "picpipe writes UTF-8"


def test_an_unreadable_sidecar_is_a_recorded_warning(lib: LibraryFixture, tmp_path: Path) -> None:
    card = tmp_path / "card"
    odd = photo(card, "IMG_1.JPG", seed=1, taken=datetime(2021, 5, 6, 7, 8, 9))
    (card / "IMG_1.JPG.xmp").write_bytes(codecs.BOM_UTF16_LE + b"<\x00x\x00\x00\xd8")
    photo(card, "IMG_2.JPG", seed=2, taken=datetime(2021, 5, 6, 7, 8, 9))
    (card / "IMG_2.xmp").write_bytes(b"\x89PNG\r\n\x1a\n not xmp at all")

    summary, asset = imported(lib, card)

    assert (summary.new, summary.failed) == (2, 0)
    problems = sorted(w["problem"] for w in summary.warnings)
    assert len(problems) == 2, problems
    assert "IMG_1.JPG.xmp" in problems[0]
    assert "UTF-16-LE" in problems[0]
    assert "IMG_2.xmp" in problems[1]
    assert "picpipe-xmp" not in " ".join(problems), "the source's name, not a temp copy's"
    assert asset(odd).date_source == "exif", "the file's own date stands"


# (name, GPS time or None, DateTimeOriginal without offset or None, position,
#  expected local, offset, folder)
ZONE_CASES = [
    (
        "east, GPS time only",
        "2021:07:10 14:30:00Z",
        None,
        TOKYO,
        datetime(2021, 7, 10, 23, 30),
        540,
        "2021/07/10",
    ),
    (
        "west, GPS time only, after the DST change",
        "2021:03:15 03:30:00Z",
        None,
        NEW_YORK,
        datetime(2021, 3, 14, 23, 30),
        -240,
        "2021/03/14",
    ),
    (
        "west, GPS time only, before the DST change",
        "2021:03:14 04:30:00Z",
        None,
        NEW_YORK,
        datetime(2021, 3, 13, 23, 30),
        -300,
        "2021/03/13",
    ),
    (
        "east, wall time without offset, before the DST change",
        None,
        datetime(2021, 3, 27, 23, 30),
        BERLIN,
        datetime(2021, 3, 27, 23, 30),
        60,
        "2021/03/27",
    ),
    (
        "east, wall time without offset, after the DST change",
        None,
        datetime(2021, 3, 28, 23, 30),
        BERLIN,
        datetime(2021, 3, 28, 23, 30),
        120,
        "2021/03/28",
    ),
    (
        "west, wall time without offset",
        None,
        datetime(2021, 12, 31, 23, 30),
        NEW_YORK,
        datetime(2021, 12, 31, 23, 30),
        -300,
        "2021/12/31",
    ),
]


def test_the_gps_position_gives_the_zone(lib: LibraryFixture, tmp_path: Path) -> None:
    card = tmp_path / "card"
    paths = []
    for i, (_, gps_time, taken, position, _, _, _) in enumerate(ZONE_CASES):
        args = ()
        if gps_time is not None:
            day, time = gps_time.rstrip("Z").split(" ")
            args = (f"-GPS:GPSDateStamp={day}", f"-GPS:GPSTimeStamp={time}")
        paths.append(photo(card, f"z{i}.jpg", *args, seed=i, taken=taken, gps=position))

    summary, asset = imported(lib, card)

    assert (summary.new, summary.warnings) == (len(ZONE_CASES), [])
    for path, (label, _, _, _, local, offset, folder) in zip(paths, ZONE_CASES, strict=True):
        got = when(asset(path))
        assert got[0:2] == (local, offset), label
        assert got[3] == "gps-zone", label
        assert got[4] == local - timedelta(minutes=offset), label
        assert got[5] == folder, label


@pytest.fixture
def zoned(tmp_path: Path, exiftool_available: None) -> Iterator[LibraryFixture]:
    card = tmp_path / "card"
    yield from _library(
        tmp_path,
        sources={"card": {"kind": "folder", "path": str(card), "timezone": "Europe/Berlin"}},
        cameras={"Canon EOS 5D": "America/New_York", "NIKON D70": "Asia/Tokyo"},
    )


def test_configured_zones_per_camera_and_per_source(zoned: LibraryFixture, tmp_path: Path) -> None:
    card = tmp_path / "card"
    january = datetime(2022, 1, 15, 23, 30)
    canon = photo(card, "canon.jpg", seed=1, taken=january)  # make_jpeg's Canon EOS 5D
    nikon = photo(
        card, "nikon.jpg", seed=2, taken=january, make="NIKON CORPORATION", model="NIKON D70"
    )
    other = photo(card, "other.jpg", seed=3, taken=january, make="Acme", model="Snap 1")
    tagged = photo(card, "tagged.jpg", seed=4, taken=january, offset="+05:30")
    placed = photo(card, "placed.jpg", seed=5, taken=january, gps=TOKYO)

    summary, asset = imported(zoned, card)

    assert (summary.new, summary.warnings) == (5, [])
    assert when(asset(canon))[1:4] == (-300, "exif", "configured")
    assert when(asset(nikon))[1:4] == (540, "exif", "configured")
    assert when(asset(other))[1:4] == (60, "exif", "configured"), "the source's zone"
    assert when(asset(tagged))[1:4] == (330, "exif", "tag")
    assert when(asset(placed))[1:4] == (540, "exif", "gps-zone"), "the place beats the config"
    assert asset(other).taken_utc == datetime(2022, 1, 15, 22, 30)


def test_without_any_zone_the_time_stays_floating(lib: LibraryFixture, tmp_path: Path) -> None:
    card = tmp_path / "card"
    path = photo(card, "IMG_1.JPG", seed=1, taken=datetime(2022, 1, 15, 23, 30))
    _, asset = imported(lib, card)
    assert when(asset(path)) == (
        datetime(2022, 1, 15, 23, 30),
        None,
        "exif",
        None,
        None,
        "2022/01/15",
    )


def test_a_zone_that_does_not_exist_is_a_config_error(tmp_path: Path) -> None:
    for extra in (
        {"cameras": {"Canon EOS 5D": "Mars/Olympus"}},
        {"sources": {"card": {"kind": "folder", "path": str(tmp_path), "timezone": "CEST"}}},
    ):
        for lib in _library(tmp_path, **extra):
            with pytest.raises(ConfigError, match="not a time zone"):
                build_context(lib.settings, lib.catalog, lib.tools)
