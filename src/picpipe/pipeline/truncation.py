"""Is an image complete? A JPEG whose data ends before its end-of-image marker.

exiftool reports truncated PNG and HEIF files itself (``Truncated PNG image``, ``Truncated
'mdat' data``) but reads a JPEG's metadata without looking at the compressed picture, and
libvips decodes a cut-off JPEG to a grey lower half without an error. `jpeg_truncated` walks
the JPEG's markers instead: segment lengths, then each scan's entropy-coded data up to the
next marker, until the end-of-image marker of the *primary* image (so data appended after
it, such as a motion photo's video, neither hides nor fakes a truncation).

The walk reads the file once through ``mmap`` (it was just hashed, so it comes from the page
cache) and looks only at ``0xFF`` bytes; nothing here raises for a damaged file.
"""

from __future__ import annotations

import mmap
import os

TRUNCATED = "truncated: image data ends early"

_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RST0-7 carry no length


def jpeg_truncated(path: str | bytes | os.PathLike[str]) -> bool:
    """True when the JPEG at ``path`` ends before its primary image's end-of-image marker.

    False for a complete file and for files that cannot be opened or do not start like a
    JPEG (other checks report those).
    """
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < 4:
                return size >= 2
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _truncated(data, size)
    except (OSError, ValueError):
        return False


def _truncated(data: mmap.mmap, size: int) -> bool:
    if data[0] != 0xFF or data[1] != _SOI:
        return False
    view = data
    pos = 2
    while True:
        pos = data.find(b"\xff", pos)  # tolerate stray bytes between segments, as libjpeg does
        if pos < 0 or pos + 1 >= size:
            return True
        marker = view[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == _EOI:
            return False
        if marker in _STANDALONE or marker == 0x00:
            pos += 2
            continue
        if pos + 4 > size:
            return True
        end = pos + 2 + (view[pos + 2] << 8 | view[pos + 3])
        if end > size:
            return True
        pos = end
        if marker == _SOS:
            pos = _end_of_scan(data, pos, size)
            if pos < 0:
                return True


def _end_of_scan(data: mmap.mmap, pos: int, size: int) -> int:
    """Offset of the first marker after a scan's entropy-coded data, or -1 at the end."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= size:
            return -1
        following = data[pos + 1]
        if following == 0x00 or following == 0xFF or 0xD0 <= following <= 0xD7:
            pos += 1 if following == 0xFF else 2  # stuffed byte, fill, restart marker
            continue
        return pos
