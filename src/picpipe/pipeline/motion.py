"""Motion photos: where the video inside a Samsung or Google still is, and its extraction.

A motion photo is a JPEG (or HEIC) with an MP4 after the picture; the still's metadata says
where it starts:

- Google, newer form: XMP ``Container:Directory``, a list of ``Item`` (Mime, Semantic, Length,
  Padding). The items after the primary image follow it in order, so a video item starts at
  the file's size minus its own and the later items' lengths and padding.
- Google's older form and Samsung: XMP ``GCamera:MicroVideo`` = 1 and ``MicroVideoOffset``,
  the distance from the video's start to the end of the file (Samsung's trailer after the
  video included).
- Samsung without XMP: the ``MotionPhoto_Data`` marker of its trailer (SEFT) right before
  the MP4, looked for only in the bytes after the JPEG's end-of-image marker.

The video's length is what its top-level MP4 boxes span (never past the declared length or
the file's end). Metadata that points anywhere but at an MP4 (a truncated trailer, an offset
past the end) is one recorded problem: the still imports without its video. The still
itself is never changed; `extract_video` copies the video's bytes to a file of its own, and
the import stages make it an asset paired with the still (`pipeline/stages.py`).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

SAMSUNG_MARKER = b"MotionPhoto_Data"
MAX_TRAILER = 512 << 20  # a motion photo's video is seconds long; more is not one
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class MotionVideo:
    """Where the video is in the still: byte offset, length, and which form said so."""

    start: int
    length: int
    form: str  # container | microvideo | samsung


def find_motion_video(
    path: str | bytes, tags: Mapping[str, Any], size: int, jpeg_end: int | None
) -> tuple[MotionVideo | None, str | None]:
    """(the video, None), (None, a problem) when the metadata points at no MP4, or
    (None, None) for a still that is no motion photo. ``jpeg_end`` is the offset after the
    JPEG's EOI when known (`pipeline/jpeg_stream.py`). Never raises for a damaged file."""
    try:
        declared = _declared(tags, size)
        if declared is not None:
            form, start, limit = declared
            if not 0 < start < size:
                return None, _problem(f"its video offset points outside the file ({form})")
            length = _mp4_length(path, start, min(limit, size - start))
            if length is None:
                return None, _problem(f"no MP4 where its metadata places the video ({form})")
            return MotionVideo(start, length, form), None
        if jpeg_end is not None and 0 < size - jpeg_end <= MAX_TRAILER:
            return _samsung_trailer(path, jpeg_end, size)
    except OSError as exc:
        return None, _problem(f"unreadable ({exc.strerror or exc})")
    return None, None


def extract_video(path: str | bytes, video: MotionVideo, target: str | os.PathLike[str]) -> None:
    """Copy the video's bytes from the still at ``path`` to the new file ``target``."""
    with open(path, "rb") as source, open(target, "xb") as out:
        source.seek(video.start)
        left = video.length
        while left:
            chunk = source.read(min(_CHUNK, left))
            if not chunk:
                raise OSError(f"the still ended {left} bytes before its video's end")
            out.write(chunk)
            left -= len(chunk)


def _problem(detail: str) -> str:
    return f"motion photo: {detail}; the still is imported without its video"


def _declared(tags: Mapping[str, Any], size: int) -> tuple[str, int, int] | None:
    """(form, start, most bytes the video may span) from the XMP, or None."""
    directory = tags.get("XMP-Container:Directory")
    if isinstance(directory, list):
        items = [entry.get("Item", entry) for entry in directory if isinstance(entry, dict)]
        for index, item in enumerate(items):
            if str(item.get("Mime", "")).startswith("video/"):
                after = sum(_int(i.get("Length")) + _int(i.get("Padding")) for i in items[index:])
                return "container", size - after, _int(item.get("Length")) or size
    if _int(tags.get("XMP-GCamera:MicroVideo")) == 1:
        offset = _int(tags.get("XMP-GCamera:MicroVideoOffset"))
        if offset > 0:
            return "microvideo", size - offset, offset
    return None


def _samsung_trailer(
    path: str | bytes, jpeg_end: int, size: int
) -> tuple[MotionVideo | None, str | None]:
    with open(path, "rb") as handle:
        handle.seek(jpeg_end)
        # Samsung's trailer puts the marker right after the picture; 64 KiB covers the
        # blocks (depth maps aside) that come before it.
        head = handle.read(min(size - jpeg_end, 64 << 10))
    found = head.find(SAMSUNG_MARKER)
    if found < 0:
        return None, None
    start = jpeg_end + found + len(SAMSUNG_MARKER)
    length = _mp4_length(path, start, size - start)
    if length is None:
        return None, _problem("no MP4 after Samsung's MotionPhoto_Data marker (samsung)")
    return MotionVideo(start, length, "samsung"), None


def _mp4_length(path: str | bytes, start: int, limit: int) -> int | None:
    """Bytes the top-level MP4 boxes at ``start`` span (at most ``limit``): None unless they
    begin with ``ftyp`` and include the movie's ``moov`` box (a playable file)."""
    pos, seen = 0, set[bytes]()
    with open(path, "rb") as handle:
        while pos + 8 <= limit:
            handle.seek(start + pos)
            header = handle.read(16)
            if len(header) < 8:
                break
            box_size, kind = struct.unpack(">I4s", header[:8])
            if box_size == 1 and len(header) == 16:
                box_size = struct.unpack(">Q", header[8:])[0]
            elif box_size == 0:
                box_size = limit - pos  # to the end
            if box_size < 8 or pos + box_size > limit or not kind.isalnum():
                break
            if not seen and kind != b"ftyp":
                return None
            seen.add(kind)
            pos += box_size
    return pos if b"ftyp" in seen and b"moov" in seen else None


def _int(value: Any) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return 0


def video_name(still_name: str) -> str:
    """The name the extracted video goes by: the still's stem with ``.mp4``."""
    return f"{os.path.splitext(still_name)[0]}.mp4"
