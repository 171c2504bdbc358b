"""Embedded descriptive metadata: rating, keywords, title, description, label and face regions.

exiftool writes the tags into generated JPEGs the way cameras, Lightroom, digiKam and Windows
Photo Gallery do; picpipe reads them back on import into the catalog, its sidecar and the API.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from picpipe.catalog.models import Asset
from picpipe.library.layout import sidecar_path
from picpipe.pipeline.descriptive import embedded_fields
from picpipe.pipeline.exiftool import ExifTool
from picpipe.pipeline.sidecar import UserFields
from picpipe.samples import make_jpeg
from picpipe.web.app import create_app
from tests.conftest import LibraryFixture
from tests.web.conftest import TestClient

MWG = (
    "-XMP-mwg-rs:RegionInfo={AppliedToDimensions={W=640,H=480,Unit=pixel},RegionList=["
    "{Area={X=0.5,Y=0.4,W=0.2,H=0.3,Unit=normalized},Name=Anna,Type=Face}]}"
)
MPRI = "-XMP-MP:RegionInfoMP={Regions=[{PersonDisplayName=Bob,Rectangle=0.1|, 0.2|, 0.3|, 0.4}]}"
ANNA = {
    "name": "Anna",
    "type": "Face",
    "area": {"x": 0.5, "y": 0.4, "w": 0.2, "h": 0.3, "unit": "normalized"},
}
BOB = {
    "name": "Bob",
    "type": "Face",
    "area": {"x": 0.25, "y": 0.4, "w": 0.3, "h": 0.4, "unit": "normalized"},
}


def exiftool(*args: str) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args], check=True)


def tagged(path: Path, *args: str, seed: int = 0) -> Path:
    """A camera JPEG (Canon EOS 5D) with the given exiftool assignments written into it."""
    photo = make_jpeg(path, taken=datetime(2021, 5, 6, 7, 8, 9), seed=seed).path
    if args:
        exiftool(*args, str(photo))
    return photo


# (exiftool assignments, expected UserFields)
MATRIX: list[tuple[str, tuple[str, ...], UserFields]] = [
    ("nothing", (), UserFields()),
    (
        "xmp rating wins over exif and percent",
        ("-XMP-xmp:Rating=4", "-IFD0:Rating=2", "-IFD0:RatingPercent=25"),
        UserFields(rating=4),
    ),
    ("exif rating", ("-IFD0:Rating=3",), UserFields(rating=3)),
    ("windows percent 75", ("-IFD0:RatingPercent=75",), UserFields(rating=4)),
    ("windows percent 1", ("-XMP-microsoft:RatingPercent=1",), UserFields(rating=1)),
    ("windows percent 99", ("-IFD0:RatingPercent=99",), UserFields(rating=5)),
    ("rating 0 is unrated", ("-XMP-xmp:Rating=0", "-IFD0:Rating=0"), UserFields()),
    ("rejected", ("-XMP-xmp:Rating=-1",), UserFields(rating=-1)),
    (
        "xmp subject and lightroom leaves; stale iptc ignored",
        (
            "-XMP-dc:Subject=beach",
            "-XMP-dc:Subject=sun, fun",
            "-XMP-lr:HierarchicalSubject=People|Anna",
            "-IPTC:Keywords=????",
        ),
        UserFields(keywords=("beach", "sun, fun", "Anna")),
    ),
    (
        "iptc keywords alone",
        ("-IPTC:CodedCharacterSet=UTF8", "-IPTC:Keywords=Marienkäfer", "-IPTC:Keywords=2021"),
        UserFields(keywords=("Marienkäfer", "2021")),
    ),
    (
        "digikam tags list and microsoft last keywords",
        ("-XMP-digiKam:TagsList=Places/Rome", "-XMP-microsoft:LastKeywordXMP=Family/Ben"),
        UserFields(keywords=("Rome", "Ben")),
    ),
    (
        "xmp title over iptc object name; iptc caption",
        ("-XMP-dc:Title=Low tide", "-IPTC:ObjectName=Other", "-IPTC:Caption-Abstract=At dusk"),
        UserFields(title="Low tide", description="At dusk"),
    ),
    ("iptc object name", ("-IPTC:ObjectName=Harbour",), UserFields(title="Harbour")),
    ("windows title", ("-IFD0:XPTitle=Kitchen",), UserFields(title="Kitchen")),
    (
        "camera placeholders are no description",
        ("-IFD0:ImageDescription=SONY DSC", "-IPTC:Caption-Abstract=OLYMPUS DIGITAL CAMERA"),
        UserFields(),
    ),
    ("the model is no description", ("-IFD0:ImageDescription=Canon EOS 5D  ",), UserFields()),
    (
        "a placeholder gives way to a real text further down",
        ("-XMP-dc:Description=SONY DSC", "-IFD0:ImageDescription=Stromboli at night"),
        UserFields(description="Stromboli at night"),
    ),
    ("label", ("-XMP-xmp:Label=Red",), UserFields(label="Red")),
    ("mwg face", (MWG,), UserFields(regions=(ANNA,))),
    ("mwg wins over microsoft", (MWG, MPRI), UserFields(regions=(ANNA,))),
    ("microsoft photo regions", (MPRI,), UserFields(regions=(BOB,))),
]


@pytest.mark.parametrize(
    ("args", "expected"), [(a, e) for _, a, e in MATRIX], ids=[n for n, _, _ in MATRIX]
)
def test_embedded_fields_matrix(
    tmp_path: Path, exiftool_available: None, args: tuple[str, ...], expected: UserFields
) -> None:
    photo = tagged(tmp_path / "IMG_0001.JPG", *args)
    tool = ExifTool()
    try:
        tags = tool.read(str(photo), extra_args=("-struct",))
    finally:
        tool.close()
    assert embedded_fields(tags) == expected


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_import(library: LibraryFixture, folder: Path) -> None:
    summary = library.run(library.folder(folder, "card"), workers=2)
    assert (summary.failed, summary.warnings) == (0, [])


def asset_of(library: LibraryFixture, digest: str) -> Asset:
    with library.catalog.session() as db:
        asset = db.get_one(Asset, digest)
        db.expunge(asset)
        return asset


def sidecar_record(library: LibraryFixture, asset: Asset) -> dict[str, Any]:
    path = library.root / sidecar_path(asset.library_path)
    out = subprocess.run(
        ["exiftool", "-j", "-G1", "-struct", "-n", "-XMP:all", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    record: dict[str, Any] = json.loads(out)[0]
    return record


SOURCE_XMP = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="5">
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">Edited title</rdf:li></rdf:Alt></dc:title>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def test_embedded_fields_reach_catalog_sidecar_and_api(
    library: LibraryFixture, tmp_path: Path
) -> None:
    card = tmp_path / "card"
    lightroom = tagged(
        card / "IMG_0001.JPG",
        "-XMP-xmp:Rating=3",
        "-XMP-dc:Subject=beach",
        "-XMP-lr:HierarchicalSubject=Places|Sylt",
        "-XMP-dc:Title=From the file",
        "-XMP-dc:Description=Waves",
        "-XMP-xmp:Label=Green",
        MWG,
        seed=1,
    )
    # A sidecar that came with the file: its rating and title are the user's edit and win;
    # the file's keywords, description, label and regions fill what the sidecar lacks.
    (card / "IMG_0001.JPG.xmp").write_text(SOURCE_XMP, encoding="utf-8")
    windows = tagged(
        card / "IMG_0002.JPG", "-IFD0:RatingPercent=50", "-IPTC:Keywords=harbour", MPRI, seed=2
    )
    plain = tagged(card / "IMG_0003.JPG", "-IFD0:ImageDescription=SONY DSC", seed=3)

    run_import(library, card)

    one = asset_of(library, sha(lightroom))
    assert (one.rating, one.title, one.description, one.label) == (
        5,
        "Edited title",
        "Waves",
        "Green",
    )
    assert (one.keywords, one.regions) == (["beach", "Sylt"], [ANNA])
    xmp = sidecar_record(library, one)
    assert (xmp["XMP-xmp:Rating"], xmp["XMP-dc:Title"], xmp["XMP-dc:Description"]) == (
        5,
        "Edited title",
        "Waves",
    )
    assert xmp["XMP-dc:Subject"] == ["beach", "Sylt"]
    two = asset_of(library, sha(windows))
    assert (two.rating, two.keywords, two.regions) == (3, ["harbour"], [BOB])
    xmp = sidecar_record(library, two)
    assert xmp["XMP-mwg-rs:RegionInfo"]["RegionList"][0]["Name"] == "Bob"
    assert xmp["XMP-dc:Subject"] == ["harbour"]
    three = asset_of(library, sha(plain))
    assert (three.description, three.keywords, three.rating) == (None, None, None)

    with TestClient(create_app(library.settings)) as client:

        def found(**params: Any) -> set[str]:
            response = client.get("/api/assets", params=params)
            assert response.status_code == 200, response.text
            return {a["sha256"] for a in response.json()["assets"]}

        assert found(keyword="beach") == {one.sha256}
        assert found(keyword="BEACH") == {one.sha256}, "ASCII case does not matter"
        assert found(keyword="bea") == set(), "a keyword is matched whole"
        assert found(person="bob") == {two.sha256}
        assert found(person="Anna") == {one.sha256}
        assert found(rating=3) == {one.sha256, two.sha256}
        assert found(rating=4) == {one.sha256}
        assert found(label="green") == {one.sha256}
        assert found(q="wave") == {one.sha256}, "text in the description"
        assert found(q="harb") == {two.sha256}, "part of a keyword"
        assert found(q="100%_") == set(), "LIKE wildcards are plain characters"
        detail = client.get(f"/api/assets/{one.sha256}").json()
        assert (detail["regions"], detail["rating"], detail["title"]) == ([ANNA], 5, "Edited title")
