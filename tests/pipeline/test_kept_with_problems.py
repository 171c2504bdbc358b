"""Damaged and unrecognised files are kept and stay visible (findings 9 and 10).

A truncated JPEG, PNG or HEIC is kept as a photo with the problem "truncated: image data ends
early"; bytes no decoder and no magic recognise are kept as kind ``unknown`` under their own
extension (or ``.bin``), never counted or served as photos. ``status``, ``sessions``, the API
(list and detail) and the gallery's data all show the problem.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from picpipe.catalog.models import Asset
from picpipe.pipeline.truncation import TRUNCATED, jpeg_truncated
from picpipe.samples import make_jpeg
from picpipe.web.app import create_app
from tests.conftest import MEDIA, LibraryFixture, run_cli
from tests.web.conftest import TestClient


def _half(path: Path, target: Path) -> Path:
    data = path.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    source = tmp_path / "hostile"
    source.mkdir()
    whole = make_jpeg(tmp_path / "whole.jpg", size=(640, 480), taken=datetime(2022, 5, 1)).path
    _half(whole, source / "half.jpg")
    shutil.copy(whole, source / "whole.jpg")
    png = tmp_path / "whole.png"
    # Pillow, not pyvips: libvips must not run in this process, whose thumbnail workers fork.
    Image.new("RGB", (300, 200), (90, 90, 90)).save(png)
    _half(png, source / "half.png")
    if MEDIA.is_dir():
        shutil.copy(MEDIA / "broken" / "truncated.heic", source / "truncated.heic")
    (source / "notes.jpg").write_text("not a photo, only words\n" * 50)
    (source / "big.jpg").write_bytes(bytes(1 << 20))  # zeros: nothing recognises them
    return source


def test_damaged_and_unknown_files_are_kept_and_listed(
    sqlite_library: LibraryFixture, damaged: Path
) -> None:
    summary = sqlite_library.import_folder(damaged)
    assert summary.failed == 0
    with sqlite_library.catalog.session() as db:
        assets = {a.original_name: a for a in db.scalars(select(Asset))}
    for name in ("half.jpg", "half.png", *(("truncated.heic",) if MEDIA.is_dir() else ())):
        assert assets[name].kind == "photo", name
        assert TRUNCATED in (assets[name].problems or []), (name, assets[name].problems)
    assert not assets["whole.jpg"].problems
    notes, zeros = assets["notes.jpg"], assets["big.jpg"]
    assert (notes.kind, notes.library_path.rsplit(".", 1)[1]) == ("unknown", "txt")
    assert (zeros.kind, zeros.library_path.rsplit(".", 1)[1]) == ("unknown", "bin")
    assert zeros.thumbs_state == "failed"  # nothing to show; no thumbnail run tries it

    s = sqlite_library.settings
    base = ["--home", str(s.home_root), "--library", str(s.library_root)]
    status = json.loads(run_cli(*base, "status", "--json").stdout)
    assert status["by_kind"]["unknown"]["count"] == 2
    assert status["by_kind"]["photo"]["count"] == len(assets) - 2
    listed = {item["name"]: item for item in status["kept_with_problems"]["newest"]}
    assert TRUNCATED in listed["half.jpg"]["problems"]
    assert listed["big.jpg"]["kind"] == "unknown"
    text = run_cli(*base, "status").stdout
    assert f"half.jpg (photo): {TRUNCATED}" in text
    assert "big.jpg (unknown): content is not a recognised photo or video" in text
    sessions = json.loads(run_cli(*base, "sessions", "--json").stdout)
    kept = {item["name"] for item in sessions[0]["kept_with_problems"]}
    assert {"half.jpg", "half.png", "notes.jpg", "big.jpg"} <= kept
    assert "whole.jpg" not in kept
    assert "session " in run_cli(*base, "sessions").stdout

    with TestClient(create_app(s)) as http:
        unknown = http.get("/api/assets", params={"kind": "unknown"}).json()["assets"]
        assert {a["name"] for a in unknown} == {"notes.jpg", "big.jpg"}
        assert all(a["problems"] for a in unknown)
        every = {a["name"]: a for a in http.get("/api/assets").json()["assets"]}
        assert every["half.jpg"]["problems"] == [TRUNCATED]  # what the gallery tiles show
        detail = http.get(f"/api/assets/{assets['half.jpg'].sha256}").json()
        assert TRUNCATED in detail["problems"]
        names = set(http.get("/files/list").json()["files"])
        assert f"{zeros.sha256}.jpg" not in names  # never served as a photo
        assert http.get("/api/stats").status_code == 200


def test_the_jpeg_check_knows_complete_files(tmp_path: Path) -> None:
    whole = make_jpeg(tmp_path / "whole.jpg", size=(320, 240), taken=datetime(2022, 1, 1)).path
    assert not jpeg_truncated(whole)
    motion = tmp_path / "motion.jpg"  # a motion photo: a video after the JPEG's end
    motion.write_bytes(whole.read_bytes() + b"\x00\x00\x00\x18ftypmp42" + bytes(5000))
    assert not jpeg_truncated(motion)
    data = whole.read_bytes()
    for cut in (4, 100, len(data) // 3, len(data) - 2):
        part = tmp_path / f"cut{cut}.jpg"
        part.write_bytes(data[:cut])
        assert jpeg_truncated(part), cut
    assert not jpeg_truncated(tmp_path / "missing.jpg")
    if MEDIA.is_dir():
        assert jpeg_truncated(MEDIA / "broken" / "truncated.jpg")
        assert jpeg_truncated(MEDIA / "broken" / "broken.jpg")
        for path in MEDIA.glob("jpeg/*.jp*g"):
            assert not jpeg_truncated(path), path.name
