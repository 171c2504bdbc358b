"""Media recognised by its first bytes: every real sample, synthetic signatures, non-media."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import pytest

from picpipe.sources.sniff import HEADER_BYTES, media_format
from tests.conftest import MEDIA

# What the sniffer calls each file type exiftool reports (TIFF-based raws are "tiff").
EXPECTED = {
    "JPEG": "jpeg",
    "HEIC": "heic",
    "HEIF": "heic",
    "MOV": "mov",
    "MP4": "mp4",
    "3GP": "mp4",
    "AVI": "avi",
    "M2TS": "mts",
    "CR2": "cr2",
    "CR3": "cr3",
    "CRW": "crw",
    "RW2": "rw2",
    "DNG": "tiff",
    "NEF": "tiff",
    "ARW": "tiff",
    "EMPTY": None,
}


def _manifest() -> list[dict[str, str]]:
    if not (MEDIA / "MANIFEST.csv").is_file():
        pytest.skip(f"../shared/testdata/media is absent ({MEDIA})")
    with open(MEDIA / "MANIFEST.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_every_real_sample_is_recognised_by_its_content() -> None:
    rows = _manifest()
    assert len(rows) > 50
    wrong = []
    for row in rows:
        head = (MEDIA / row["path"]).read_bytes()[:HEADER_BYTES]
        if media_format(head) != EXPECTED[row["file_type"]]:
            wrong.append((row["path"], row["file_type"], media_format(head)))
    assert wrong == []


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "png"),
        (b"GIF89a\x01\x00", "gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "webp"),
        (b"FUJIFILMCCD-RAW 0201FF383501", "raf"),
        (b"IIRO\x08\x00\x00\x00", "orf"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "avif"),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", "heic"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ", "mov"),
        (b"\x00\x00\x00\x08wide\x00\x10\x00\x00mdat", "mov"),
        (bytes([0x47]) + bytes(187) + bytes([0x47]) + bytes(8), "ts"),
    ],
)
def test_synthetic_signatures(head: bytes, expected: str) -> None:
    assert media_format(head) == expected


def test_other_content_is_not_media(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        archive.writestr("x.txt", "hello")
    for head in (
        b"",
        b"hello, this is text\n",
        b"%PDF-1.7\n",
        (tmp_path / "a.zip").read_bytes()[:HEADER_BYTES],
        b"RIFF\x10\x00\x00\x00WAVEfmt ",  # audio, not video
        b"\x00\x00\x00\x00ftyp",  # too short to name a brand
        b"\x00\x00\x00\x00moov",  # an atom of size 0 is not a QuickTime file
        bytes([0x47]) + bytes(100),  # one sync byte is not a transport stream
    ):
        assert media_format(head) is None, head
