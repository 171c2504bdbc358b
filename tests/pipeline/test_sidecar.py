"""XMP sidecars: written beside each original, read back by exiftool, edits re-imported and kept.

Real exiftool throughout; "digiKam" and "darktable" are exiftool commands that edit a sidecar
the way those tools do (digiKam adds keywords, its TagsList, rating, label and face regions).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from picpipe.catalog.models import Asset
from picpipe.cli.app import app
from picpipe.config import load_settings
from picpipe.jobs.workflows import import_sources
from picpipe.library.layout import TEMP_PREFIX, sidecar_path
from picpipe.library.verify import verify_library
from picpipe.library.writer import sweep_temp_files
from picpipe.pipeline.exiftool import CONFIG_FILE, ExifTool
from picpipe.pipeline.runner import SessionSummary
from picpipe.pipeline.sidecar import (
    SidecarFacts,
    UserFields,
    read_sidecar,
    write_sidecar,
)
from picpipe.samples import make_jpeg
from tests.conftest import LibraryFixture, tree_digest

SOURCE_XMP = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
    xmp:Rating="3" xmp:Label="Green" darktable:xmp_version="5">
   <dc:subject><rdf:Bag><rdf:li>beach</rdf:li><rdf:li>1.50</rdf:li></rdf:Bag></dc:subject>
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">Low tide</rdf:li></rdf:Alt></dc:title>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""
REGION = (
    "{AppliedToDimensions={W=640,H=480,Unit=pixel},RegionList=[{Area={X=0.5,Y=0.4,W=0.2,"
    "H=0.3,Unit=normalized},Name=Anna|, the elder,Type=Face}]}"
)
ANNA = {
    "name": "Anna, the elder",
    "type": "Face",
    "area": {"x": 0.5, "y": 0.4, "w": 0.2, "h": 0.3, "unit": "normalized"},
}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def exiftool(*args: str) -> subprocess.CompletedProcess[str]:
    """The exiftool command line, with picpipe's namespace config (as a user would run it)."""
    return subprocess.run(
        ["exiftool", "-config", CONFIG_FILE, *args], capture_output=True, text=True, check=True
    )


def read_back(path: Path) -> dict[str, Any]:
    """Every XMP field of a sidecar as exiftool reports it (-n: numbers, -struct: structures)."""
    out = exiftool("-j", "-G1", "-struct", "-n", "-XMP:all", str(path)).stdout
    record: dict[str, Any] = json.loads(out)[0]
    return record


def text_of(path: Path, tag: str) -> str:
    """One tag as exiftool prints it (JSON would turn a keyword like 1.50 into a number)."""
    return exiftool("-s3", "-sep", "|", f"-{tag}", str(path)).stdout.strip()


def digikam_edit(path: Path) -> None:
    """Tag, rate, label, caption and mark a face the way digiKam writes a sidecar."""
    exiftool(
        "-overwrite_original",
        "-XMP-dc:Subject+=Holiday",
        "-XMP-lr:HierarchicalSubject+=Places|Holiday",
        "-XMP-digiKam:TagsList+=Places/Holiday",
        "-XMP-xmp:Rating=4",
        "-XMP-xmp:Label=Red",
        "-XMP-dc:Title=At the beach",
        "-ec",
        "-XMP-dc:Description=first line\\nsecond line",
        f"-XMP-mwg-rs:RegionInfo={REGION}",
        str(path),
    )


def run_import(library: LibraryFixture, folder: Path, name: str | None = None) -> SessionSummary:
    """Import with the stages the settings ask for (the sidecar stage is on by default)."""
    return import_sources(
        library.settings,
        library.catalog,
        [library.folder(folder, name)],
        tools=library.tools,
        workers=2,
    )


def sidecars_cli(library: LibraryFixture, *args: str) -> tuple[int, dict[str, Any]]:
    """`picpipe sidecars ARGS --json` on this library's catalog, through Typer's runner."""
    env = {
        "PICPIPE_HOME": str(library.settings.home_root),
        "PICPIPE_LIBRARY": str(library.root),
        "PICPIPE_DATABASE_URL": library.settings.catalog_url,
        "PICPIPE_IMPORT__FSYNC": "false",
    }
    # The command sets up logging on the runner's stderr, which is closed once it returns:
    # give the root logger its handlers back for the rest of the test.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        result = CliRunner().invoke(app, ["sidecars", *args, "--json"], env=env)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else {}


def asset_of(library: LibraryFixture, digest: str) -> Asset:
    with library.catalog.session() as db:
        asset = db.get_one(Asset, digest)
        db.expunge(asset)
        return asset


def sidecar_of(library: LibraryFixture, asset: Asset) -> Path:
    return library.root / sidecar_path(asset.library_path)


def test_sidecar_reads_back_with_the_catalog_values(
    library: LibraryFixture, tmp_path: Path
) -> None:
    phone = tmp_path / "phone"
    photo = make_jpeg(
        phone / "DCIM" / "IMG_0001.JPG",
        taken=datetime(2021, 4, 10, 11, 44, 0),
        offset="+01:00",
        make="Canon",
        model="Canon EOS R6",
        gps=(52.5, -13.4),
    ).path
    exiftool(
        "-overwrite_original",
        "-ExifIFD:LensModel=RF24-105mm F4 L IS USM",
        "-GPS:GPSAltitude=12.5",
        "-GPS:GPSAltitudeRef#=1",  # below sea level
        str(photo),
    )

    summary = run_import(library, phone, "phone")

    assert (summary.new, summary.failed, summary.warnings) == (1, 0, [])
    asset = asset_of(library, sha(photo))
    path = sidecar_of(library, asset)
    assert path.name == f"{asset.sha256}.xmp"
    assert asset.sidecar_mtime_ns == path.stat().st_mtime_ns
    xmp = read_back(path)
    assert asset.taken_offset_min == 60
    assert xmp["XMP-exif:DateTimeOriginal"] == "2021:04:10 11:44:00+01:00"
    assert xmp["XMP-photoshop:DateCreated"] == "2021:04:10 11:44:00+01:00"
    assert (xmp["XMP-exif:GPSLatitude"], xmp["XMP-exif:GPSLongitude"]) == (
        asset.gps_lat,
        asset.gps_lon,
    )
    assert (asset.gps_lat, asset.gps_lon, asset.gps_alt) == (52.5, -13.4, -12.5)
    assert (xmp["XMP-exif:GPSAltitude"], xmp["XMP-exif:GPSAltitudeRef"]) == (12.5, 1)
    assert (
        (xmp["XMP-tiff:Make"], xmp["XMP-tiff:Model"], xmp["XMP-exifEX:LensModel"])
        == (
            asset.make,
            asset.model,
            asset.lens,
        )
        == ("Canon", "Canon EOS R6", "RF24-105mm F4 L IS USM")
    )
    assert xmp["XMP-picpipe:OriginalFileName"] == asset.original_name == "IMG_0001.JPG"
    assert xmp["XMP-picpipe:Sha256"] == asset.sha256
    assert xmp["XMP-picpipe:DateSource"] == asset.date_source == "exif"
    assert xmp["XMP-picpipe:Provenance"] == [{"Source": "phone", "Path": "DCIM/IMG_0001.JPG"}]
    assert xmp["XMP-picpipe:ImportedAt"].startswith(f"{asset.imported_at:%Y:%m:%d}")
    assert "XMP-dc:Subject" not in xmp, "no user fields were invented"


def test_digikam_edit_is_reimported_and_survives_picpipe_rewriting_the_sidecar(
    library: LibraryFixture, tmp_path: Path
) -> None:
    phone = tmp_path / "phone"
    photo = make_jpeg(phone / "IMG_0002.JPG", taken=datetime(2022, 8, 1, 9, 0, 0)).path
    run_import(library, phone, "phone")
    path = sidecar_of(library, asset_of(library, sha(photo)))
    digikam_edit(path)

    code, report = sidecars_cli(library, "--reimport")

    assert code == 0
    assert (report["assets"], report["changed"], report["reimported"]) == (1, 1, 1)
    asset = asset_of(library, sha(photo))
    assert asset.keywords == ["Holiday"]
    assert (asset.rating, asset.label, asset.title) == (4, "Red", "At the beach")
    assert asset.description == "first line\nsecond line"
    assert asset.regions == [ANNA]
    assert asset.sidecar_mtime_ns == path.stat().st_mtime_ns
    assert sidecars_cli(library)[1]["changed"] == 0, "read once, then settled"

    # A second copy adds provenance; rewriting refreshes picpipe's fields and keeps the edit.
    backup = tmp_path / "backup"
    shutil.copytree(phone, backup / "2022")
    assert run_import(library, backup, "backup").duplicate == 1
    code, report = sidecars_cli(library, "--write", "--all")

    assert (code, report["written"], report["failed"]) == (0, 1, 0)
    xmp = read_back(path)
    assert xmp["XMP-picpipe:Provenance"] == [
        {"Source": "phone", "Path": "IMG_0002.JPG"},
        {"Source": "backup", "Path": "2022/IMG_0002.JPG"},
    ]
    assert xmp["XMP-exif:DateTimeOriginal"] == "2022:08:01 09:00:00"
    assert xmp["XMP-dc:Subject"] == ["Holiday"]
    assert (xmp["XMP-xmp:Rating"], xmp["XMP-xmp:Label"]) == (4, "Red")
    assert xmp["XMP-dc:Title"] == "At the beach"
    assert xmp["XMP-dc:Description"] == "first line\nsecond line"
    assert xmp["XMP-digiKam:TagsList"] == ["Places/Holiday"], "a field picpipe does not know"
    assert xmp["XMP-lr:HierarchicalSubject"] == ["Places|Holiday"]
    assert xmp["XMP-mwg-rs:RegionInfo"]["RegionList"][0]["Name"] == "Anna, the elder"
    after = asset_of(library, sha(photo))
    assert (after.keywords, after.rating, after.regions) == (["Holiday"], 4, [ANNA])
    assert after.sidecar_mtime_ns == path.stat().st_mtime_ns
    assert sidecars_cli(library)[1]["changed"] == 0


def test_sidecars_that_came_with_the_sources_are_read_on_import(
    library: LibraryFixture, tmp_path: Path
) -> None:
    card = tmp_path / "card"
    first = make_jpeg(card / "IMG_1234.JPG", taken=datetime(2020, 2, 3, 4, 5, 6), seed=1).path
    (card / "IMG_1234.JPG.xmp").write_text(SOURCE_XMP, encoding="utf-8")
    second = make_jpeg(card / "IMG_1235.JPG", taken=datetime(2020, 2, 3, 4, 5, 7), seed=2).path
    exiftool(
        "-XMP-lr:HierarchicalSubject=People|Ben",
        "-XMP-dc:Description=From the card",
        f"-XMP-mwg-rs:RegionInfo={REGION}",
        "-o",
        str(card / "IMG_1235.xmp"),
    )
    before = tree_digest(card)

    summary = run_import(library, card, "card")

    assert (summary.new, summary.failed, summary.warnings) == (2, 0, [])
    one = asset_of(library, sha(first))
    assert (one.keywords, one.rating, one.label, one.title) == (
        ["beach", "1.50"],
        3,
        "Green",
        "Low tide",
    )
    xmp = read_back(sidecar_of(library, one))
    assert text_of(sidecar_of(library, one), "XMP-dc:Subject") == "beach|1.50"
    assert (xmp["XMP-xmp:Rating"], xmp["XMP-dc:Title"]) == (3, "Low tide")
    assert xmp["XMP-darktable:Xmp_version"] == 5, "the source sidecar is the starting point"
    assert xmp["XMP-picpipe:Sha256"] == one.sha256
    two = asset_of(library, sha(second))
    assert (two.keywords, two.description, two.regions) == (["Ben"], "From the card", [ANNA])
    assert read_back(sidecar_of(library, two))["XMP-lr:HierarchicalSubject"] == ["People|Ben"]
    assert tree_digest(card) == before, "sources are never modified"


def test_a_broken_sidecar_is_a_recorded_problem_and_never_replaced(
    library: LibraryFixture, tmp_path: Path
) -> None:
    card = tmp_path / "card"
    photo = make_jpeg(card / "IMG_0001.JPG", taken=datetime(2019, 1, 2, 3, 4, 5)).path
    (card / "IMG_0001.xmp").write_text("<x:xmpmeta><rdf:RDF>truncated", encoding="utf-8")

    summary = run_import(library, card, "card")

    assert (summary.new, summary.failed) == (1, 0)
    assert len(summary.warnings) == 1
    assert "not readable as XMP" in summary.warnings[0]["problem"]
    asset = asset_of(library, sha(photo))
    assert asset.problems is not None
    assert any("IMG_0001.xmp" in p for p in asset.problems)
    path = sidecar_of(library, asset)
    assert read_back(path)["XMP-picpipe:Sha256"] == asset.sha256, "written without the seed"

    # Someone damages picpipe's sidecar: picpipe reports it and leaves the file alone.
    path.write_text("<x:xmpmeta><rdf:RDF>oops", encoding="utf-8")
    damaged = path.read_bytes()
    code, report = sidecars_cli(library, "--reimport")
    assert (code, report["failed"]) == (3, 1)
    assert report["failures"][0]["path"].endswith(f"{asset.sha256}.xmp")
    code, report = sidecars_cli(library, "--write", "--all")
    assert (code, report["written"], report["failed"]) == (3, 0, 1)
    assert path.read_bytes() == damaged
    assert not list(path.parent.glob(f"{TEMP_PREFIX}*")), "no temp file is left behind"


def test_missing_sidecars_are_written_from_the_catalog(
    library: LibraryFixture, tmp_path: Path
) -> None:
    """With sidecars off, an import writes none; `sidecars --write` adds them later."""
    off = load_settings(
        home=library.settings.home_root,
        library=library.root,
        database_url=library.settings.catalog_url,
        **{"import": {"fsync": False}, "sidecars": {"write": False}},
    )
    card = tmp_path / "card"
    photo = make_jpeg(card / "IMG_1.JPG", taken=datetime(2018, 5, 6, 7, 8, 9)).path
    (card / "IMG_1.JPG.xmp").write_text(SOURCE_XMP, encoding="utf-8")
    import_sources(
        off, library.catalog, [library.folder(card, "card")], tools=library.tools, workers=1
    )
    asset = asset_of(library, sha(photo))
    path = sidecar_of(library, asset)
    assert not path.exists()
    assert asset.keywords == ["beach", "1.50"], "the catalog has the source sidecar's fields"
    with library.catalog.session() as db, db.begin():
        db.get_one(Asset, asset.sha256).regions = [ANNA]

    code, report = sidecars_cli(library)
    assert (code, report["missing"], report["written"]) == (0, 1, 0)
    assert not path.exists(), "a report writes nothing"
    code, report = sidecars_cli(library, "--write")

    assert (code, report["written"]) == (0, 1)
    xmp = read_back(path)
    assert text_of(path, "XMP-dc:Subject") == "beach|1.50"
    assert (xmp["XMP-xmp:Rating"], xmp["XMP-xmp:Label"], xmp["XMP-dc:Title"]) == (
        3,
        "Green",
        "Low tide",
    )
    regions = xmp["XMP-mwg-rs:RegionInfo"]
    assert regions["AppliedToDimensions"] == {"W": 640, "H": 480, "Unit": "pixel"}
    assert read_sidecar(library.tools.get(), path).user.regions == (ANNA,)
    assert asset_of(library, asset.sha256).sidecar_mtime_ns == path.stat().st_mtime_ns
    assert sidecars_cli(library, "--write")[1]["written"] == 0, "nothing left to write"
    assert sidecars_cli(library, "--all")[0] == 2, "--all needs --write"


def test_the_darktable_name_is_read_and_never_written(
    library: LibraryFixture, tmp_path: Path
) -> None:
    phone = tmp_path / "phone"
    photo = make_jpeg(phone / "IMG_7.JPG", taken=datetime(2023, 3, 4, 5, 6, 7)).path
    run_import(library, phone, "phone")
    asset = asset_of(library, sha(photo))
    exiftool("-overwrite_original", "-XMP-dc:Title=Picpipe era", str(sidecar_of(library, asset)))
    darktable = library.root / f"{asset.library_path}.xmp"
    exiftool("-XMP-dc:Subject=sunset", "-XMP-xmp:Rating=5", "-o", str(darktable))
    os.utime(darktable, ns=(darktable.stat().st_atime_ns, darktable.stat().st_mtime_ns + 10**9))

    code, report = sidecars_cli(library, "--reimport")

    assert (code, report["reimported"]) == (0, 1)
    after = asset_of(library, asset.sha256)
    assert (after.keywords, after.rating, after.title) == (["sunset"], 5, "Picpipe era")
    assert after.sidecar_mtime_ns == darktable.stat().st_mtime_ns
    untouched = darktable.read_bytes()
    assert sidecars_cli(library, "--write", "--all")[0] == 0
    assert darktable.read_bytes() == untouched
    assert read_back(sidecar_of(library, asset))["XMP-dc:Subject"] == ["sunset"]
    assert asset_of(library, asset.sha256).keywords == ["sunset"]


def test_an_edit_during_a_rewrite_is_merged_not_lost(
    tmp_path: Path, exiftool_available: None
) -> None:
    """digiKam saves the sidecar while picpipe writes its temp copy: picpipe merges again."""
    sidecar = tmp_path / "originals" / f"{'a' * 64}.xmp"

    class EditsDuringWrite(ExifTool):
        # A scripted component: while armed, the next write is raced by a digiKam save.
        armed = False
        writes = 0

        def write(self, args: Any, source: Any, *, display: str) -> None:
            self.writes += 1
            super().write(args, source, display=display)
            if self.armed:
                self.armed = False
                digikam_edit(sidecar)

    facts = SidecarFacts(
        sha256="a" * 64,
        original_name="IMG_1.JPG",
        taken_local=datetime(2020, 1, 2, 3, 4, 5),
        taken_offset_min=-330,
        date_source="exif",
        imported_at=datetime(2024, 1, 1),
        provenance=(("nas", "a,b]|{c}/ d.jpg"),),
    )
    refreshed = replace(facts, provenance=(*facts.provenance, ("phone", "DCIM/IMG_1.JPG")))
    (tmp_path / "originals").mkdir()
    tool = EditsDuringWrite()
    try:
        write_sidecar(
            tool, tmp_path, f"originals/{'a' * 64}.jpg", facts, UserFields(keywords=("mine",))
        )
        tool.armed = True
        written = write_sidecar(
            tool,
            tmp_path,
            f"originals/{'a' * 64}.jpg",
            refreshed,
            UserFields(keywords=("catalog",), title="not written: the sidecar gets one"),
        )
    finally:
        tool.close()

    assert tool.writes == 3, "the raced rewrite started over from digiKam's version"
    xmp = read_back(sidecar)
    assert xmp["XMP-dc:Subject"] == ["mine", "Holiday"], "the sidecar's keywords, plus the edit"
    assert xmp["XMP-dc:Title"] == "At the beach"
    assert xmp["XMP-exif:DateTimeOriginal"] == "2020:01:02 03:04:05-05:30"
    assert xmp["XMP-picpipe:Provenance"] == [
        {"Source": "nas", "Path": "a,b]|{c}/ d.jpg"},
        {"Source": "phone", "Path": "DCIM/IMG_1.JPG"},
    ]
    assert (written.user.keywords, written.user.rating) == (("mine", "Holiday"), 4)
    assert written.mtime_ns == sidecar.stat().st_mtime_ns
    assert not list((tmp_path / "originals").glob(f"{TEMP_PREFIX}*"))


def test_sidecars_are_not_untracked_and_interrupted_writes_are_swept(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    phone = tmp_path / "phone"
    make_jpeg(phone / "IMG_1.JPG", taken=datetime(2021, 1, 1, 1, 1, 1))
    run_import(sqlite_library, phone)
    day = next((sqlite_library.root / "originals").rglob("*.xmp")).parent
    leftover = day / f"{TEMP_PREFIX}{'b' * 16}-0a1b2c3d.xmp"
    leftover.write_text("<x:xmpmeta/>", encoding="utf-8")

    report = verify_library(sqlite_library.catalog, sqlite_library.root)
    assert (report.untracked, report.temp_files) == (
        [],
        [str(leftover.relative_to(sqlite_library.root))],
    )
    assert sweep_temp_files(sqlite_library.root) == [leftover]


@pytest.mark.parametrize("name", ["IMG_0009.xmp", "IMG_0009.JPG.xmp"])
def test_both_source_sidecar_names_are_found(
    sqlite_library: LibraryFixture, tmp_path: Path, name: str
) -> None:
    card = tmp_path / "card"
    photo = make_jpeg(card / "IMG_0009.JPG", taken=datetime(2017, 7, 7, 7, 7, 7)).path
    exiftool("-XMP-xmp:Rating=2", "-o", str(card / name))

    run_import(sqlite_library, card)

    assert asset_of(sqlite_library, sha(photo)).rating == 2
