"""An icloudpd download folder (``kind: icloudpd``): a watched folder that knows its names.

icloudpd downloads to ``<checksum>.part``, renames it, then sets the mtime (and with
``--set-exif-datetime`` rewrites the JPEG in place): the watched folder's settle rule absorbs
all of it. Its Live Photo videos (``IMG_1234_HEVC.MOV``) pair with their stills in
`pipeline/pairs.py`; its collision names (``IMG_1234-567890.JPG``, ``IMG_1234_QAZXSW.JPG``)
and edits (``IMG_1234-adjusted.JPG``) are recognised by `icloudpd_name`. Its deletions
(``--auto-delete``) only mark files gone in the catalog, as for every source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from picpipe.sources.base import SourceCaps
from picpipe.sources.watched import WatchedSource

# IMG_1234-adjusted.JPG, IMG_1234-567890.JPG (size), IMG_1234_QAZXSW.JPG (7-char asset id),
# IMG_1234_HEVC.MOV (Live Photo video).
_NAME = re.compile(
    r"^(?P<base>.+?)"
    r"(?:(?P<adjusted>-adjusted)|-(?P<size>\d+)|_(?P<id7>[A-Za-z0-9]{7})|(?P<hevc>_HEVC))?"
    r"(?P<ext>\.[^.]+)$"
)


@dataclass(frozen=True, slots=True)
class IcloudpdName:
    base: str  # the original's name without extension (IMG_1234)
    ext: str
    role: str  # original | edit | collision | live-video


def icloudpd_name(name: str) -> IcloudpdName:
    """What an icloudpd file name says about the file."""
    match = _NAME.match(name)
    if match is None:
        stem, _, ext = name.rpartition(".")
        return IcloudpdName(stem or name, f".{ext}" if stem else "", "original")
    role = "original"
    if match["adjusted"]:
        role = "edit"
    elif match["hevc"]:
        role = "live-video"
    elif match["size"] or (match["id7"] and not match["id7"].isdigit()):
        role = "collision"
    base = match["base"] if role != "original" else name[: -len(match["ext"])]
    return IcloudpdName(base, match["ext"], role)


def original_name_of_edit(name: str) -> str | None:
    """``IMG_1234-adjusted.JPG`` → ``IMG_1234`` (the stem its original has), else None."""
    parsed = icloudpd_name(name)
    return parsed.base if parsed.role == "edit" else None


class IcloudpdSource(WatchedSource):
    kind: ClassVar[str] = "icloudpd"
    caps: ClassVar[SourceCaps] = SourceCaps(can_watch=True, local_paths=True)
