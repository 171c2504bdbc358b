"""Motion photos: the video inside a Samsung or Google still becomes its own asset, paired."""

from __future__ import annotations

import hashlib
import io
import shutil
import struct
import subprocess
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from sqlalchemy import select

from picpipe.catalog.browse import provenance
from picpipe.catalog.models import Asset
from picpipe.web.app import create_app
from tests.conftest import MEDIA, LibraryFixture
from tests.web.conftest import TestClient

STILL = MEDIA / "jpeg" / "DSCN0010.jpg"
VIDEO_TAKEN = datetime(2021, 8, 9, 10, 11, 12)


def clip() -> bytes:
    """A one-second 64×48 MP4 with its own creation time, as a phone's motion clip has."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        container.metadata["creation_time"] = VIDEO_TAKEN.isoformat() + "Z"
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = Fraction(1, 10)
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(
                np.full((48, 64, 3), i * 20, np.uint8), format="rgb24"
            )
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def exiftool(path: Path, *args: str) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args, str(path)], check=True)


def still(path: Path) -> Path:
    shutil.copy(STILL, path)
    path.chmod(0o644)
    return path


def samsung(path: Path, video: bytes, *, xmp: bool = True) -> Path:
    """Samsung's form: MicroVideo XMP, then a SEF trailer whose MotionPhoto_Data block holds
    the MP4 (MicroVideoOffset counts from the video's start to the end of the file); older
    phones write the trailer alone (``xmp`` False)."""
    still(path)
    block = b"\x00\x00\x30\x0a" + struct.pack("<I", 16) + b"MotionPhoto_Data" + video
    entry_offset = len(block)
    directory = b"SEFH" + struct.pack("<II", 106, 1)
    directory += struct.pack("<HHII", 0, 0x0A30, entry_offset, len(block))
    trailer = block + directory + struct.pack("<I", len(directory)) + b"SEFT"
    offset = len(trailer) - 24  # from the MP4's first byte
    if xmp:
        exiftool(path, "-XMP-GCamera:MicroVideo=1", "-XMP-GCamera:MicroVideoVersion=1")
        exiftool(path, f"-XMP-GCamera:MicroVideoOffset={offset}")
    path.write_bytes(path.read_bytes() + trailer)
    return path


GOOGLE_XMP = """<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:GCamera="http://ns.google.com/photos/1.0/camera/"
    xmlns:Container="http://ns.google.com/photos/1.0/container/"
    xmlns:Item="http://ns.google.com/photos/1.0/container/item/"
   GCamera:MotionPhoto="1" GCamera:MotionPhotoVersion="1"
   GCamera:MotionPhotoPresentationTimestampUs="500000">
   <Container:Directory>
    <rdf:Seq>
     <rdf:li rdf:parseType="Resource">
      <Container:Item Item:Mime="image/jpeg" Item:Semantic="Primary" Item:Length="0"
        Item:Padding="0"/>
     </rdf:li>
     <rdf:li rdf:parseType="Resource">
      <Container:Item Item:Mime="video/mp4" Item:Semantic="MotionPhoto" Item:Length="{length}"
        Item:Padding="0"/>
     </rdf:li>
    </rdf:Seq>
   </Container:Directory>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def google(path: Path, video: bytes, length: int | None = None) -> Path:
    """Google's newer form: the XMP container directory (exiftool writes the packet)."""
    still(path)
    packet = path.with_suffix(".packet")
    packet.write_text(GOOGLE_XMP.format(length=len(video) if length is None else length))
    exiftool(path, f"-xmp<={packet}")
    packet.unlink()
    path.write_bytes(path.read_bytes() + video)
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assets(library: LibraryFixture) -> dict[str, Asset]:
    with library.catalog.session() as db:
        rows = db.scalars(select(Asset)).all()
        db.expunge_all()
    return {a.sha256: a for a in rows}


@pytest.mark.slow
@pytest.mark.parametrize("form", ["samsung", "samsung-trailer", "google"])
def test_motion_photo_yields_a_paired_video(
    library: LibraryFixture, tmp_path: Path, exiftool_available: None, form: str
) -> None:
    card = tmp_path / "card"
    card.mkdir()
    video = clip()
    name = card / "PXL_0001.MP.jpg"
    made = google(name, video) if form == "google" else samsung(name, video, xmp=form == "samsung")
    before = made.read_bytes()

    first = library.import_folder(card)

    assert (first.new, first.failed) == (1, 0), first
    found = assets(library)
    assert set(found) == {sha(before), sha(video)}, "the still and its video, by content"
    photo, movie = found[sha(before)], found[sha(video)]
    assert (photo.kind, movie.kind) == ("photo", "video")
    assert photo.pair_id is not None
    assert photo.pair_id == movie.pair_id
    assert (photo.pair_kind, movie.pair_kind) == ("live", "live")
    assert movie.embedded_in == photo.sha256
    assert movie.taken_local.date() == VIDEO_TAKEN.date(), "the video's own date"
    assert movie.library_path.startswith(VIDEO_TAKEN.strftime("originals/%Y/%m/%d/"))
    assert (library.root / photo.library_path).read_bytes() == before, "still byte-exact"
    assert made.read_bytes() == before, "the source is never touched"
    extracted = library.root / movie.library_path
    assert extracted.read_bytes() == video
    with av.open(str(extracted)) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == (64, 48)
    with library.catalog.session() as db:
        origin = provenance(db, movie.sha256)
    assert [p["ref"] for p in origin] == [f"embedded in {photo.sha256}"]
    assert origin[0]["embedded_in"] == photo.sha256
    with TestClient(create_app(library.settings)) as client:
        body = client.get(f"/api/assets/{movie.sha256}").json()
    assert [p["ref"] for p in body["provenance"]] == [f"embedded in {photo.sha256}"]

    copy = tmp_path / "again"
    copy.mkdir()
    shutil.copy(made, copy / "copy.jpg")
    again = library.import_folder(copy)
    rescan = library.import_folder(card)
    assert (again.new, again.duplicate) == (0, 1)
    assert rescan.new == 0
    assert set(assets(library)) == set(found), "nothing extracted twice"


@pytest.mark.slow
def test_offset_past_the_end_keeps_the_still(
    library: LibraryFixture, tmp_path: Path, exiftool_available: None
) -> None:
    card = tmp_path / "card"
    card.mkdir()
    video = clip()
    made = google(card / "PXL_0002.MP.jpg", video, length=len(video) * 1000)
    cut = card / "IMG_0003.jpg"
    samsung(cut, video)
    cut.write_bytes(cut.read_bytes()[: -len(video) // 2])  # the trailer cut short

    summary = library.import_folder(card)

    assert (summary.new, summary.failed) == (2, 0)
    found = assets(library)
    assert {a.kind for a in found.values()} == {"photo"}, "no video asset"
    for asset in found.values():
        motion = [p for p in asset.problems or [] if p.startswith("motion photo:")]
        assert len(motion) == 1, asset.problems
        assert asset.pair_id is None
    assert sha(made.read_bytes()) in found
