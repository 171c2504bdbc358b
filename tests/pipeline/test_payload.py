"""Metadata-insensitive duplicates: one payload hash for copies that differ only in metadata."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from picpipe.catalog.models import Asset
from picpipe.cli.app import app
from picpipe.pipeline.payload import payload_sha256
from picpipe.samples import make_jpeg
from picpipe.web.app import create_app
from tests.conftest import MEDIA, LibraryFixture
from tests.web.conftest import TestClient


def exiftool(path: Path, *args: str) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args, str(path)], check=True)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_jpeg_payload_ignores_metadata_but_not_pixels(
    tmp_path: Path, exiftool_available: None
) -> None:
    original = make_jpeg(tmp_path / "a.jpg", taken=datetime(2020, 1, 2, 3, 4, 5), seed=1).path
    patched = tmp_path / "b.jpg"
    shutil.copy(original, patched)
    exiftool(patched, "-DateTimeOriginal=2021:01:01 00:00:00", "-XMP-dc:Subject=beach")
    exiftool(patched, "-IPTC:Keywords=x", "-Comment=hello")
    other = make_jpeg(tmp_path / "c.jpg", taken=datetime(2020, 1, 2, 3, 4, 5), seed=2).path
    truncated = tmp_path / "d.jpg"
    truncated.write_bytes(original.read_bytes()[:-2000])
    trailer = tmp_path / "e.jpg"
    trailer.write_bytes(original.read_bytes() + b"\x00\x00\x00\x18ftypmp42 appended video")

    assert sha(original) != sha(patched)
    digest = payload_sha256(str(original), "JPEG")
    assert digest is not None
    assert payload_sha256(str(patched), "JPEG") == digest
    assert payload_sha256(str(trailer), "JPEG") == digest, "bytes after EOI are not the picture"
    assert payload_sha256(str(other), "JPEG") not in (None, digest)
    assert payload_sha256(str(truncated), "JPEG") is None
    assert payload_sha256(str(tmp_path / "missing.jpg"), "JPEG") is None
    assert payload_sha256(str(original), "MOV") is None


def test_progressive_jpeg_and_png(tmp_path: Path, exiftool_available: None) -> None:
    picture = Image.effect_noise((320, 200), 40).convert("RGB")
    picture.save(tmp_path / "p.jpg", "JPEG", progressive=True, quality=80)
    shutil.copy(tmp_path / "p.jpg", tmp_path / "q.jpg")
    exiftool(tmp_path / "q.jpg", "-XMP-xmp:Rating=5")
    first = payload_sha256(str(tmp_path / "p.jpg"), "JPEG")
    assert first is not None
    assert payload_sha256(str(tmp_path / "q.jpg"), "JPEG") == first
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "a note")
    picture.save(tmp_path / "a.png")
    picture.save(tmp_path / "b.png", pnginfo=text)
    assert payload_sha256(str(tmp_path / "a.png"), "PNG") == payload_sha256(
        str(tmp_path / "b.png"), "PNG"
    )


@pytest.mark.parametrize("name", ["iphone/IMG_5195.HEIC", "heic/sewing-threads.heic"])
def test_heic_payload_is_the_coded_image(
    tmp_path: Path, exiftool_available: None, name: str
) -> None:
    if not (MEDIA / name).is_file():
        pytest.skip(f"{MEDIA / name} is absent")
    copy = tmp_path / Path(name).name
    shutil.copy(MEDIA / name, copy)
    copy.chmod(0o644)
    exiftool(copy, "-DateTimeOriginal=2001:01:01 00:00:00", "-XMP-dc:Subject=edited")
    assert sha(copy) != sha(MEDIA / name)
    original = payload_sha256(str(MEDIA / name), "HEIC")
    assert original is not None
    assert payload_sha256(str(copy), "HEIC") == original


def duplicates_cli(library: LibraryFixture) -> tuple[int, dict[str, Any]]:
    env = {
        "PICPIPE_HOME": str(library.settings.home_root),
        "PICPIPE_LIBRARY": str(library.root),
        "PICPIPE_DATABASE_URL": library.settings.catalog_url,
    }
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        result = CliRunner().invoke(app, ["duplicates", "--json"], env=env)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return result.exit_code, json.loads(result.stdout)


def test_retagged_copies_are_listed_as_one_picture(library: LibraryFixture, tmp_path: Path) -> None:
    card = tmp_path / "card"
    first = make_jpeg(card / "IMG_0001.JPG", taken=datetime(2020, 1, 2, 3, 4, 5), seed=1).path
    icloudpd = card / "icloud" / "IMG_0001.JPG"
    icloudpd.parent.mkdir()
    shutil.copy(first, icloudpd)
    exiftool(icloudpd, "-DateTimeOriginal=2020:01:02 03:04:06")  # --set-exif-datetime
    digikam = card / "digikam" / "IMG_0001.JPG"
    digikam.parent.mkdir()
    shutil.copy(first, digikam)
    exiftool(digikam, "-XMP-dc:Subject=family", "-XMP-xmp:Rating=4")
    make_jpeg(card / "IMG_0002.JPG", taken=datetime(2020, 1, 2, 3, 4, 5), seed=2)

    summary = library.run(library.folder(card, "card"), workers=2)

    assert (summary.new, summary.duplicate) == (4, 0), "different bytes: four assets"
    code, report = duplicates_cli(library)
    assert code == 0
    assert report["count"] == 1
    group = report["groups"][0]
    assert {a["sha256"] for a in group["assets"]} == {sha(first), sha(icloudpd), sha(digikam)}
    assert group["payload_sha256"] == payload_sha256(str(first), "JPEG")
    with library.catalog.session() as db:
        assert db.get_one(Asset, sha(first)).payload_sha256 == group["payload_sha256"]
    with TestClient(create_app(library.settings)) as client:
        body = client.get("/api/duplicates").json()
    assert body["next_after"] is None
    assert [len(g["assets"]) for g in body["groups"]] == [3]
    assert "library_path" not in body["groups"][0]["assets"][0]
