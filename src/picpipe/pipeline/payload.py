"""A second SHA-256 over a picture's coded image only, blind to its metadata.

Two files with the same payload hash and different bytes are the same picture with different
metadata: an EXIF date patched by icloudpd ``--set-exif-datetime``, keywords digiKam wrote
into the file. picpipe records the hash per asset and lists such groups; it never merges them.

- JPEG: every marker segment except APP0-APP15 (EXIF, XMP, ICC, maker data, thumbnails) and
  COM, from SOI through the entropy-coded scans to EOI; bytes after EOI (trailers, appended
  videos) are left out.
- HEIF/HEIC/AVIF: the data of the primary item and, for a grid, of its tiles (``dimg``
  references, in order), as ``iloc`` locates them (in the file, or a grid's descriptor in
  ``idat``); the Exif and XMP items are separate items and so left out.
- PNG: IHDR, PLTE and the IDAT chunks (text, EXIF and time chunks left out).

Anything else, or a file whose structure does not parse, has no payload hash (None).
"""

from __future__ import annotations

import mmap
import re
import struct
from typing import TYPE_CHECKING

from picpipe.hashing import new_hasher
from picpipe.pipeline.heifbox import top_level_box

if TYPE_CHECKING:
    from collections.abc import Iterator

_MARKER_IN_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_APP_OR_COM = frozenset([*range(0xE0, 0xF0), 0xFE])
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])  # TEM, RST0-7: no length field
_PNG = b"\x89PNG\r\n\x1a\n"
_PNG_KEPT = frozenset([b"IHDR", b"PLTE", b"IDAT"])
_HEIF_TYPES = frozenset(["HEIC", "HEIF", "AVIF"])
MAX_PAYLOAD_FILE = 1 << 30  # PNGs are read whole; larger ones are not photos this is for


def payload_sha256(path: str | bytes, file_type: str | None) -> str | None:
    """Hex SHA-256 of the coded image of the file at ``path`` (exiftool's ``file_type``).

    None when the type has no payload rule or the file does not parse; never raises for a
    damaged file (OSError included).
    """
    kind = (file_type or "").upper()
    try:
        if kind == "JPEG":
            # Mapped, not read: a copy of the whole file would cost more than hashing it.
            with (
                open(path, "rb") as handle,
                mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
            ):
                return _jpeg(mapped)
        if kind == "PNG":
            with open(path, "rb") as handle:
                return _png(handle.read(MAX_PAYLOAD_FILE))
        if kind in _HEIF_TYPES:
            return _heif(path)
    except (OSError, struct.error, IndexError, ValueError):
        return None
    return None


def _jpeg(data: mmap.mmap) -> str | None:
    if data[:2] != b"\xff\xd8":
        return None
    digest = new_hasher()
    digest.update(b"\xff\xd8")
    with memoryview(data) as view:  # released before the map is closed
        for start, end, marker in _jpeg_segments(data):
            if marker not in _APP_OR_COM:
                digest.update(view[start:end])
            if marker == 0xD9:
                return digest.hexdigest()
    return None  # no EOI: a truncated file has no stable payload


def _jpeg_segments(data: mmap.mmap) -> Iterator[tuple[int, int, int]]:
    """(start, end, marker) of each segment after SOI; a scan's entropy data goes with its SOS."""
    pos, size = 2, len(data)
    while pos + 2 <= size:
        if data[pos] != 0xFF:
            raise ValueError("not at a marker")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9 or marker in _STANDALONE:
            yield pos, pos + 2, marker
            if marker == 0xD9:
                return
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if marker == 0xDA:
            end = _scan_end(data, end)
        if end > size:
            raise ValueError("segment runs past the end")
        yield pos, end, marker
        pos = end


def _scan_end(data: mmap.mmap, pos: int) -> int:
    # Entropy-coded data ends at the first marker that is neither stuffing (FF00), RSTn nor
    # a fill byte; a regular expression finds it at C speed.
    found = _MARKER_IN_SCAN.search(data, pos)
    if found is None:
        raise ValueError("scan without an end")
    return found.start()


def _png(data: bytes) -> str | None:
    if not data.startswith(_PNG):
        return None
    digest, pos, seen = new_hasher(), len(_PNG), False
    digest.update(_PNG)
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            return None
        if kind in _PNG_KEPT:
            digest.update(memoryview(data)[pos:end])
            seen = seen or kind == b"IDAT"
        if kind == b"IEND":
            return digest.hexdigest() if seen else None
        pos = end
    return None


def _heif(path: str | bytes) -> str | None:
    with open(path, "rb") as handle:
        meta = top_level_box(handle, b"meta")
        if meta is None:
            return None
        children = _children(meta[4:])
        pitm, iloc = children.get(b"pitm"), children.get(b"iloc")
        if pitm is None or iloc is None:
            return None
        primary = struct.unpack_from(">H" if pitm[0] == 0 else ">I", pitm, 4)[0]
        items = [primary, *_tiles(children.get(b"iref"), primary)]
        locations = _iloc(iloc)
        idat = children.get(b"idat", b"")
        digest = new_hasher()
        for item in items:
            method, extents = locations.get(item, (-1, []))
            if not extents or method not in (0, 1):
                return None
            for offset, length in extents:
                if method == 1:  # in the meta box's idat (a grid's small descriptor)
                    digest.update(idat[offset : offset + length] if length else idat[offset:])
                    continue
                handle.seek(offset)
                chunk = handle.read(length) if length else handle.read()  # 0: to the end
                if length and len(chunk) != length:
                    return None  # truncated
                digest.update(chunk)
        return digest.hexdigest()


def _children(data: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    pos = 0
    while pos + 8 <= len(data):
        size, name = struct.unpack_from(">I4s", data, pos)
        if size < 8:
            break
        out.setdefault(name, data[pos + 8 : pos + size])
        pos += size
    return out


def _tiles(iref: bytes | None, primary: int) -> list[int]:
    """The items a grid's ``dimg`` reference lists, in order (ISO/IEC 23008-12 9.3)."""
    if iref is None:
        return []
    version, pos = iref[0], 4
    width = 2 if version == 0 else 4
    fmt = ">H" if width == 2 else ">I"
    while pos + 8 <= len(iref):
        size, kind = struct.unpack_from(">I4s", iref, pos)
        body = pos + 8
        source = struct.unpack_from(fmt, iref, body)[0]
        (count,) = struct.unpack_from(">H", iref, body + width)
        if kind == b"dimg" and source == primary:
            first = body + width + 2
            return [struct.unpack_from(fmt, iref, first + i * width)[0] for i in range(count)]
        pos += size
    return []


def _iloc(box: bytes) -> dict[int, tuple[int, list[tuple[int, int]]]]:
    """item id → (construction method, [(offset, length)]): 0 in the file, 1 in ``idat``."""
    version = box[0]
    sizes = box[4] << 8 | box[5]
    offset_size, length_size = sizes >> 12, (sizes >> 8) & 0xF
    base_size, index_size = (sizes >> 4) & 0xF, sizes & 0xF if version in (1, 2) else 0
    pos = 6
    if version < 2:
        (count,) = struct.unpack_from(">H", box, pos)
        pos += 2
    else:
        (count,) = struct.unpack_from(">I", box, pos)
        pos += 4
    out: dict[int, tuple[int, list[tuple[int, int]]]] = {}
    for _ in range(count):
        if version < 2:
            (item,) = struct.unpack_from(">H", box, pos)
            pos += 2
        else:
            (item,) = struct.unpack_from(">I", box, pos)
            pos += 4
        method = 0
        if version in (1, 2):
            method = struct.unpack_from(">H", box, pos)[0] & 0xF
            pos += 2
        pos += 2  # data_reference_index
        base, pos = _uint(box, pos, base_size)
        (extent_count,) = struct.unpack_from(">H", box, pos)
        pos += 2
        extents = []
        for _ in range(extent_count):
            pos += index_size
            offset, pos = _uint(box, pos, offset_size)
            length, pos = _uint(box, pos, length_size)
            extents.append((base + offset, length))
        out[item] = (method, extents)
    return out


def _uint(data: bytes, pos: int, size: int) -> tuple[int, int]:
    if size == 0:
        return 0, pos
    if size not in (4, 8):
        raise ValueError(f"iloc field of {size} bytes")
    return int.from_bytes(data[pos : pos + size], "big"), pos + size
