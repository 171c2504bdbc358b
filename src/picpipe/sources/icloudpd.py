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
from typing import TYPE_CHECKING, ClassVar

from picpipe.sources.base import FolderListing, ScanProblem, SourceCaps, SourceEntry
from picpipe.sources.watched import WatchedSource

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

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


def icloud_names(entries: list[SourceEntry]) -> list[SourceEntry]:
    """The entries of one folder, each collision-named file known by its iCloud name.

    icloudpd gives the second of two files with one name a suffix: ``-<its size in bytes>``
    (the default policy) or ``_<7 characters of the asset id>`` (``name-id7``). Such a file is
    known by the name iCloud has for it (what Immich and the gallery then show), its path in
    the folder unchanged. Only where the suffix is icloudpd's for sure: the size suffix equals
    the file's size, and an id7 suffix stands beside a file of the plain name; a camera name
    such as ``DSC-1234.JPG`` keeps its own.
    """
    present = {e.name.lower() for e in entries}
    named = []
    for entry in entries:
        match = _NAME.match(entry.name)
        plain = None
        if match is not None and match["size"] and int(match["size"]) == entry.size:
            plain = match["base"] + match["ext"]
        elif match is not None and match["id7"] and not match["id7"].isdigit():
            candidate = match["base"] + match["ext"]
            plain = candidate if candidate.lower() in present else None
        named.append(entry._replace(name=plain) if plain and entry.skipped is None else entry)
    return named


class IcloudpdSource(WatchedSource):
    kind: ClassVar[str] = "icloudpd"
    caps: ClassVar[SourceCaps] = SourceCaps(can_watch=True, local_paths=True)

    def listing(self) -> Iterator[FolderListing | ScanProblem]:
        for item in super().listing():
            if isinstance(item, FolderListing):
                # The fingerprint stays (names do not change what a rescan compares).
                item = FolderListing(
                    item.folder,
                    fingerprint=item.fingerprint,
                    build=_renamed(item),
                )
            yield item


def _renamed(item: FolderListing) -> Callable[[], list[SourceEntry]]:
    return lambda: icloud_names(item.entries)
