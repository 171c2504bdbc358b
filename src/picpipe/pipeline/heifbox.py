"""Reading HEIF boxes (ISO/IEC 23008-12): is the primary image rotated or mirrored by the file?

libheif applies a primary item's ``irot`` and ``imir`` properties and ignores EXIF orientation.
Some files (the iPhone 7's) carry neither and are upright only after their EXIF orientation,
so the decoder asks here which case it has. Reads only the ``meta`` box; a file it cannot
parse counts as untransformed.
"""

from __future__ import annotations

import io
import struct
from typing import BinaryIO


def primary_is_transformed(path: str) -> bool:
    """True when the primary item carries an ``irot`` or ``imir`` property (ISO 23008-12)."""
    try:
        with open(path, "rb") as handle:
            meta = _top_level_box(handle, b"meta")
        if meta is None:
            return False
        children = dict(_boxes(meta[4:]))  # meta is a FullBox
        pitm, iprp = children.get(b"pitm"), children.get(b"iprp")
        if pitm is None or iprp is None:
            return False
        primary = struct.unpack_from(">H" if pitm[0] == 0 else ">I", pitm, 4)[0]
        props = list(_boxes(iprp))
        kinds = [kind for name, body in props if name == b"ipco" for kind, _ in _boxes(body)]
        for name, body in props:
            if name == b"ipma" and any(
                kinds[index - 1] in (b"irot", b"imir")
                for index in _associations(body, primary)
                if 0 < index <= len(kinds)
            ):
                return True
    except (OSError, struct.error, IndexError, ValueError):
        return False
    return False


def top_level_box(handle: BinaryIO, wanted: bytes, limit: int = 16 << 20) -> bytes | None:
    """The body of the first top-level box named ``wanted`` (at most ``limit`` bytes)."""
    return _top_level_box(handle, wanted, limit)


def _top_level_box(handle: BinaryIO, wanted: bytes, limit: int = 16 << 20) -> bytes | None:
    while header := handle.read(8):
        if len(header) < 8:
            return None
        size, name = struct.unpack(">I4s", header)
        skip = size - 8
        if size == 1:
            skip = struct.unpack(">Q", handle.read(8))[0] - 16
        elif size == 0:
            skip = -1
        if name == wanted:
            return handle.read(limit if skip < 0 else min(skip, limit))
        if skip < 0:
            return None
        handle.seek(skip, io.SEEK_CUR)
    return None


def _boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 0
    while pos + 8 <= len(data):
        size, name = struct.unpack_from(">I4s", data, pos)
        start = pos + 8
        if size == 1:
            size = struct.unpack_from(">Q", data, start)[0]
            start += 8
        end = len(data) if size == 0 else pos + size
        if end < start:
            break
        out.append((name, data[start:end]))
        pos = end
    return out


def _associations(ipma: bytes, item: int) -> list[int]:
    version, flags = ipma[0], int.from_bytes(ipma[1:4], "big")
    (count,), pos = struct.unpack_from(">I", ipma, 4), 8
    for _ in range(count):
        item_id = struct.unpack_from(">H" if version < 1 else ">I", ipma, pos)[0]
        pos += 2 if version < 1 else 4
        n, pos = ipma[pos], pos + 1
        indexes = []
        for _ in range(n):
            if flags & 1:
                indexes.append(struct.unpack_from(">H", ipma, pos)[0] & 0x7FFF)
                pos += 2
            else:
                indexes.append(ipma[pos] & 0x7F)
                pos += 1
        if item_id == item:
            return indexes
    return []
