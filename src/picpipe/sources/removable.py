"""A camera card or other removable volume as a source: a folder source over its mount point.

Every folder of a card is listed, not only the camera folders, because formatting erases all
of them: a card is "safe to format" only when every file on it is accounted for. Cameras write
under ``DCIM`` (DCF folders such as ``100CANON``, GoPro ``100GOPRO``), ``PRIVATE`` (Sony
``M4ROOT/CLIP``, AVCHD ``AVCHD/BDMV/STREAM``) and ``MP_ROOT``, or put media at the root; their
bookkeeping files (GoPro ``.THM``/``.LRV`` proxies, Sony clip XML, AVCHD index and playlist
files, the file systems' own litter) are skipped and **disposable by rule**: they do not keep a
card from being safe. Any other skipped file (a download left half-done, a text file) does.

picpipe never writes on a card: this kind has no ``remove`` (``can_remove`` is off) and opens
files read-only, as the folder source does.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from picpipe.config import ScanOptions
from picpipe.sources.base import SourceCaps, SourceEntry
from picpipe.sources.folder import FolderSource

# Folders cameras write (Rapid Photo Downloader scans these under the volume root).
CAMERA_FOLDERS = ("DCIM", "PRIVATE", "MP_ROOT")

# Files a camera or an operating system keeps on a card that hold no picture of their own.
# Matched case-insensitively against the file's path on the card.
DISPOSABLE_PATTERNS = [
    "*.thm",  # GoPro and Canon thumbnails of a video
    "*.lrv",  # GoPro low-resolution proxy video
    "*.lrf",  # DJI low-resolution proxy video
    "private/m4root/*",  # Sony clip metadata (C0001M01.XML, MEDIAPRO.XML, STATUS.BIN...)
    "private/avchd/*",  # AVCHD index, playlists and clip info (.BDM, .MPL, .CPI)
    "private/sony/*",
    "misc/*",  # Canon/Nikon camera settings and GPS logs kept by the camera itself
    ".trash*",  # file managers' trash on the card
    ".trashes",
    ".spotlight-v100",
    ".fseventsd",
    ".ds_store",
    "._*",
    "*/._*",
    "*/.ds_store",
    "system volume information",
    "system volume information/*",
    "*/thmbnl",  # Sony XDCAM thumbnail folder
    "*/__macosx",
    "__macosx",
    "*/.thumbnails",
]

# Card folders that hold no media, skipped as folders (one row, not one per file).
CARD_IGNORED_NAMES = ["System Volume Information", "THMBNL", "__MACOSX", "MISC"]


class RemovableOptions(BaseModel):
    """Options of a ``kind: removable`` source: where cards appear and when one is safe."""

    model_config = ConfigDict(extra="forbid")  # a typo in a key must not pass silently

    mount_roots: list[Path] = Field(default_factory=lambda: [Path("/media"), Path("/run/media")])
    paths: list[Path] = Field(default_factory=list)  # mount points to watch besides the roots
    safe_replicas: int = Field(default=2, ge=1)  # verified copies, the library counted as one
    library_counts: bool = True  # the library's verified original is one of safe_replicas
    disposable: list[str] = Field(default_factory=lambda: list(DISPOSABLE_PATTERNS))
    udev: bool = True  # also listen to udev block events where pyudev and libudev are there
    poll_seconds: float = Field(default=1.0, gt=0)  # how often the mount roots are looked at
    timezone: str | None = None  # IANA zone of the camera clock (pipeline/zones.py)
    # Where the system does not auto-mount (a headless Pi): mount cards read-only through
    # udisks2 (sources/udisks.py); ``devices`` adds block devices that report themselves fixed.
    udisks_mount: bool = False
    devices: list[str] = Field(default_factory=list)
    eject_when_safe: bool = False  # unmount and power off a card once it is safe to format


class RemovableSource(FolderSource):
    """The files of one mounted card; refs are POSIX paths relative to the card's root."""

    kind: ClassVar[str] = "removable"
    caps: ClassVar[SourceCaps] = SourceCaps(
        can_watch=True, stable_ids=False, can_remove=False, local_paths=True, removable=True
    )
    Options = RemovableOptions  # type: ignore[assignment]  # each kind has its own options

    def __init__(
        self,
        name: str,
        root: Path,
        scan: ScanOptions | None = None,
        *,
        disposable: list[str] | None = None,
    ) -> None:
        base = scan or ScanOptions()
        names = list(dict.fromkeys([*base.ignored_names, *CARD_IGNORED_NAMES]))
        super().__init__(name, root, base.model_copy(update={"ignored_names": names}))
        self.disposable = DisposableRule(DISPOSABLE_PATTERNS if disposable is None else disposable)

    def remove(self, entry: SourceEntry) -> None:
        """Never: picpipe does not delete, format or write anything on a card."""
        raise NotImplementedError("picpipe never removes files from a card")


class DisposableRule:
    """Which skipped files on a card may be lost without the card being unsafe."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = list(patterns)
        joined = "|".join(fnmatch.translate(p.lower()) for p in patterns)
        self._regex = re.compile(joined) if joined else None

    def __call__(self, ref: str) -> bool:
        return self._regex is not None and self._regex.match(ref.lower()) is not None
