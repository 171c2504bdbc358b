"""Sidecar names for every reader (`sidecars.naming`) and the fields each reader finds.

exiv2 (the library digiKam reads XMP with) and exiftool read every field picpipe writes from
each form; PhotoPrism's and darktable's conventions are checked by their documented field
names; edits that darktable and digiKam write into ``<name>.<ext>.xmp`` come back as user
edits and never make the original count as changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import pytest

from picpipe.config import load_settings
from picpipe.library.layout import sidecar_ext_path, sidecar_path
from picpipe.library.verify import verify_library
from picpipe.pipeline.sidecar_sync import sync_sidecars
from picpipe.samples import make_jpeg
from tests.conftest import LibraryFixture
from tests.pipeline.test_sidecar import asset_of, exiftool, read_back, sha

NEEDS_EXIV2 = pytest.mark.skipif(shutil.which("exiv2") is None, reason="exiv2 not installed")
RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
USER_XMP = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmp:Rating="4" xmp:Label="Red">
   <dc:subject><rdf:Bag><rdf:li>beach</rdf:li><rdf:li>sea side</rdf:li></rdf:Bag></dc:subject>
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">Low tide</rdf:li></rdf:Alt></dc:title>
   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">Evening walk</rdf:li></rdf:Alt>
   </dc:description>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def with_naming(library: LibraryFixture, naming: str) -> LibraryFixture:
    settings = load_settings(
        home=library.settings.home_root,
        library=library.root,
        database_url=library.settings.catalog_url,
        **{"import": {"fsync": False}, "sidecars": {"naming": naming}},
    )
    return LibraryFixture(settings, library.catalog, library.tools)


def import_card(library: LibraryFixture, tmp_path: Path) -> str:
    card = tmp_path / "card"
    photo = make_jpeg(
        card / "IMG_0001.JPG",
        taken=datetime(2021, 4, 10, 11, 44, 0),
        offset="+01:00",
        gps=(52.5, -13.25),
    ).path
    (card / "IMG_0001.JPG.xmp").write_text(USER_XMP, encoding="utf-8")
    summary = library.run(library.folder(card, "card"))
    assert (summary.new, summary.failed) == (1, 0)
    return sha(photo)


def exiv2(path: Path) -> dict[str, str]:
    """``exiv2 -px``: every XMP key with its interpreted value, as digiKam's library sees it."""
    out = subprocess.run(
        ["exiv2", "-px", str(path)], capture_output=True, text=True, check=True
    ).stdout
    values: dict[str, str] = {}
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) >= 3:
            values[parts[0]] = parts[3] if len(parts) == 4 else ""
    return values


def photoprism_view(path: Path) -> dict[str, object]:
    """The fields PhotoPrism's XmpDocument takes (internal/meta/xmp_document.go).

    Go's encoding/xml matches by local name and fills one Description from every
    rdf:Description; keywords come only from ``subject/Seq/li``, the title and description
    from ``Alt/li``, the date from ``DateCreated``, the rating from a ``Rating`` element or
    attribute.
    """
    root = ET.parse(path).getroot()
    found: dict[str, object] = {"keywords": []}
    for description in root.iter(f"{RDF}Description"):
        for name, value in description.attrib.items():
            if name.rsplit("}", 1)[-1] == "Rating":
                found["rating"] = value
        for element in description:
            local = element.tag.rsplit("}", 1)[-1]
            if local == "subject":
                seq = element.find(f"{RDF}Seq")
                if seq is not None:
                    found["keywords"] += [li.text for li in seq.findall(f"{RDF}li")]  # type: ignore[operator]
            elif local in {"title", "description"}:
                li = element.find(f"{RDF}Alt/{RDF}li")
                found[local] = li.text if li is not None else None
            elif local in {"DateCreated", "Rating", "Make", "Model"}:
                found[local.lower() if local != "DateCreated" else "taken"] = element.text
    return found


@pytest.mark.parametrize(
    ("naming", "names"),
    [("sha", ("sha",)), ("sha.ext", ("sha.ext",)), ("both", ("sha", "sha.ext"))],
)
@NEEDS_EXIV2
def test_each_form_carries_every_field_for_exiv2_exiftool_and_photoprism(
    library: LibraryFixture, tmp_path: Path, naming: str, names: tuple[str, ...]
) -> None:
    library = with_naming(library, naming)
    digest = import_card(library, tmp_path)
    asset = asset_of(library, digest)
    forms = {
        "sha": sidecar_path(asset.library_path),
        "sha.ext": sidecar_ext_path(asset.library_path),
    }
    for form, rel in forms.items():
        assert (library.root / rel).exists() == (form in names), form
    for form in names:
        path = library.root / forms[form]
        xmp = read_back(path)
        assert xmp["XMP-exif:DateTimeOriginal"] == "2021:04:10 11:44:00+01:00"
        assert (xmp["XMP-exif:GPSLatitude"], xmp["XMP-exif:GPSLongitude"]) == (52.5, -13.25)
        assert xmp["XMP-dc:Subject"] == ["beach", "sea side"]
        assert (xmp["XMP-xmp:Rating"], xmp["XMP-xmp:Label"]) == (4, "Red")
        assert (xmp["XMP-dc:Title"], xmp["XMP-dc:Description"]) == ("Low tide", "Evening walk")

        seen = exiv2(path)
        assert seen["Xmp.exif.DateTimeOriginal"] == "2021-04-10T11:44:00+01:00"
        assert seen["Xmp.photoshop.DateCreated"] == "2021-04-10T11:44:00+01:00"
        assert seen["Xmp.exif.GPSLatitude"] == "52,30.0N"
        assert seen["Xmp.exif.GPSLongitude"] == "13,15.0W"
        assert seen["Xmp.dc.subject"] == "beach, sea side"
        assert (seen["Xmp.xmp.Rating"], seen["Xmp.xmp.Label"]) == ("4", "Red")
        assert seen["Xmp.dc.title"] == 'lang="x-default" Low tide'
        assert seen["Xmp.dc.description"] == 'lang="x-default" Evening walk'

        prism = photoprism_view(path)
        assert prism["keywords"] == ["beach", "sea side"]
        assert (prism["title"], prism["description"]) == ("Low tide", "Evening walk")
        assert prism["taken"] == "2021-04-10T11:44:00+01:00"
        assert prism["rating"] == "4"
        assert (prism["make"], prism["model"]) == ("Canon", "Canon EOS 5D")
    assert asset.keywords == ["beach", "sea side"]


@NEEDS_EXIV2
def test_darktable_reads_its_documented_fields_from_the_ext_form(
    library: LibraryFixture, tmp_path: Path
) -> None:
    """darktable reads ``<name>.<ext>.xmp`` (src/common/exif.cc ``dt_exif_xmp_read``):
    Xmp.xmp.Rating, Xmp.dc.subject, Xmp.dc.title, Xmp.dc.description, Xmp.exif.DateTimeOriginal,
    Xmp.exif.GPSLatitude/GPSLongitude."""
    library = with_naming(library, "sha.ext")
    asset = asset_of(library, import_card(library, tmp_path))
    seen = exiv2(library.root / f"{asset.library_path}.xmp")
    for key in (
        "Xmp.xmp.Rating",
        "Xmp.dc.subject",
        "Xmp.dc.title",
        "Xmp.dc.description",
        "Xmp.exif.DateTimeOriginal",
        "Xmp.exif.GPSLatitude",
        "Xmp.exif.GPSLongitude",
    ):
        assert seen.get(key), key


@pytest.mark.parametrize("editor", ["darktable", "digikam", "immich"])
def test_edits_in_the_ext_form_come_back_and_leave_the_original_alone(
    library: LibraryFixture, tmp_path: Path, editor: str
) -> None:
    library = with_naming(library, "sha.ext")
    digest = import_card(library, tmp_path)
    asset = asset_of(library, digest)
    original = library.root / asset.library_path
    before = (original.stat().st_ino, original.stat().st_mtime_ns, original.read_bytes())
    path = library.root / sidecar_ext_path(asset.library_path)
    if editor == "darktable":
        exiftool(
            "-overwrite_original",
            "-XMP-dc:Subject=sunset",
            "-XMP-xmp:Rating=5",
            "-XMP-darktable:XMPVersion=5",
            str(path),
        )
    elif editor == "immich":  # an edit in Immich's web UI, library not mounted read-only
        exiftool(
            "-overwrite_original",
            "-XMP-exif:DateTimeOriginal=2001:01:01 00:00:00+00:00",
            "-XMP-xmp:Rating=2",
            "-XMP-dc:Description=Edited in Immich",
            str(path),
        )
    else:
        exiftool(
            "-overwrite_original",
            "-XMP-dc:Subject+=Holiday",
            "-XMP-digiKam:TagsList+=Places/Holiday",
            "-XMP-xmp:Label=Green",
            "-XMP-dc:Title=At the beach",
            str(path),
        )
    stamp = path.stat()
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))

    report = sync_sidecars(library.settings, library.catalog, reimport=True, tools=library.tools)

    assert (report.reimported, report.failed) == (1, 0)
    after = asset_of(library, digest)
    if editor == "darktable":
        assert (after.keywords, after.rating) == (["sunset"], 5)
    elif editor == "immich":
        assert (after.rating, after.description) == (2, "Edited in Immich")
        assert after.taken_local == asset.taken_local, "picpipe's own date is not re-read"
    else:
        assert after.keywords == ["beach", "sea side", "Holiday"]
        assert (after.label, after.title) == ("Green", "At the beach")
    # The truth stays: same original, same identity, nothing to re-import, verify clean.
    assert (after.sha256, after.library_path, after.size) == (
        digest,
        asset.library_path,
        asset.size,
    )
    assert (original.stat().st_ino, original.stat().st_mtime_ns, original.read_bytes()) == before
    again = library.run(library.folder(tmp_path / "card", "card"))
    assert (again.new, again.failed) == (0, 0)
    assert verify_library(library.catalog, library.root).clean
    # A later rewrite keeps the editor's fields and refreshes PhotoPrism's keyword list.
    sync_sidecars(
        library.settings, library.catalog, write=True, rewrite_all=True, tools=library.tools
    )
    assert read_back(path)["XMP-dc:Subject"] == after.keywords
    if editor == "immich":  # picpipe's date comes back into the sidecar it refreshes
        assert read_back(path)["XMP-exif:DateTimeOriginal"] == "2021:04:10 11:44:00+01:00"
    assert photoprism_view(path)["keywords"] == after.keywords
