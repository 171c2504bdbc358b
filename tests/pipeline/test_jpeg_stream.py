"""The payload hash and truncation verdict taken from the hash read equal the path-based ones."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import pytest

from picpipe.hashing import sha256_bytes, sha256_stream
from picpipe.pipeline.jpeg_stream import JpegStreamWalk
from picpipe.pipeline.payload import payload_sha256
from picpipe.pipeline.truncation import jpeg_truncated
from picpipe.samples import make_jpeg
from tests.conftest import MEDIA

REAL_JPEGS = sorted(p for p in MEDIA.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))


def walk(data: bytes, chunk: int) -> JpegStreamWalk:
    found = JpegStreamWalk()
    for start in range(0, len(data), chunk):
        found.update(data[start : start + chunk])
    return found


def check(path: Path, chunks: tuple[int, ...]) -> None:
    data = path.read_bytes()
    for chunk in chunks:
        found = walk(data, chunk)
        assert found.payload_sha256 == payload_sha256(path, "JPEG"), (path.name, chunk)
        if found.verdict != "malformed":  # the lenient walk decides those
            assert (found.verdict == "short") == jpeg_truncated(path), (path.name, chunk)


@pytest.mark.parametrize("path", [p for p in REAL_JPEGS if p.stat().st_size > 0], ids=str)
def test_real_jpegs_in_any_chunking(path: Path) -> None:
    check(path, (7, 4096, 1 << 20))


def test_cut_and_appended_files(tmp_path: Path) -> None:
    photo = make_jpeg(tmp_path / "a.jpg", taken=datetime(2021, 5, 6, 7, 8, 9), seed=3).path
    data = photo.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 2 // 3])
    appended = tmp_path / "motion.jpg"
    appended.write_bytes(data + b"\x00\x00\x00\x18ftypmp42" + b"\xff" * 100)
    for path in (photo, cut, appended):
        check(path, (1, 2, 5, 1 << 20))
    assert walk(cut.read_bytes(), 1 << 20).verdict == "short"
    assert walk(appended.read_bytes(), 1 << 20).verdict == "complete"
    assert walk(b"\x89PNG\r\n\x1a\n", 4).verdict == "not-jpeg"


def test_sha256_stream_tees_every_byte(tmp_path: Path) -> None:
    data = make_jpeg(tmp_path / "b.jpg", size=(1200, 900), seed=4).path.read_bytes()
    seen = bytearray()
    digest, size = sha256_stream(io.BytesIO(data), chunk=1000, tee=seen.extend)
    assert (digest, size, bytes(seen)) == (sha256_bytes(data), len(data), data)
