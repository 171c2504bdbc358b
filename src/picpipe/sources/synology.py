"""Synology Photos albums (or the Shared Space) as a source: ``kind: synology``.

Each album is one folder of the listing, named by the album; an entry's ref is
``<album>/<file name>`` (``<album>/<stem>~<item id>.<ext>`` when two items of an album share a
name), its extras the item id and cache key, its mtime the item's time. Refs are paths rather
than bare item ids because the source contract, provenance and pairing by name all read
``<folder>/<name>``; an item in two albums is two refs of one asset. The listing reads no
content, with one exception: a Live Photo downloads as a zip of its still and its video, and
only the zip says how big each half is, so a Live Photo seen for the first time is fetched by
the listing into the download cache (the import's ``open`` then reads it from there; nothing
is fetched twice) and the halves' sizes are remembered in the source's state file. The halves
are listed as ``IMG_1234.HEIC`` and ``IMG_1234.MOV`` side by side, which `pipeline/pairs.py`
pairs as a Live Photo.

``open`` downloads the original into a temp file under the home (never into memory), once per
item version (shared by the albums it is in and by a Live Photo's halves), keeps the last
downloads for the import's later reads (hash, exiftool through the entry's local path,
placement), and raises VanishedFile (the item is gone), UnreadableFile (the NAS refuses it),
DownloadInterrupted (the bytes stopped short, after retries), TornRead (the file changed since
it was listed).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Literal, NamedTuple

from picpipe.clients.synology import SynologyClient
from picpipe.clients.synology_lookup import find_album, find_folder, subfolders
from picpipe.clients.synology_models import Folder, Item, ItemScope
from picpipe.config import ScanOptions
from picpipe.errors import (
    DownloadInterrupted,
    SourceError,
    SourceUnavailable,
    TornRead,
    UnreadableFile,
    VanishedFile,
)
from picpipe.sources.base import FolderListing, ScanProblem, SourceAlbum, SourceCaps, SourceEntry
from picpipe.sources.synology_options import SynologyOptions, resolve_password
from picpipe.sources.synology_state import SynologyState

if TYPE_CHECKING:
    from collections.abc import Iterator

    import httpx

    from picpipe.jobs.retry import RetryPolicy

log = logging.getLogger(__name__)

SHARED_FOLDER = "Shared Space"
# An item is read three times (hash, metadata, placement) by one of a few workers.
KEPT_DOWNLOADS = 256
STALE_DOWNLOADS_SECONDS = 86_400.0
LIVE_VIDEO_EXT = "MOV"


class _Listed(NamedTuple):
    item: Item
    passphrase: str | None
    half: Literal["whole", "still", "video"]


class SynologySource:
    """Albums of Synology Photos; see the module docstring for refs, listing and open."""

    kind: ClassVar[str] = "synology"
    caps: ClassVar[SourceCaps] = SourceCaps(stable_ids=True, albums=True)
    Options = SynologyOptions

    def __init__(
        self,
        name: str,
        options: SynologyOptions,
        *,
        home: Path,
        scan: ScanOptions | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.name = name
        self.options = options
        self.scan = scan or ScanOptions()
        self._media = self.scan.media_extensions()
        self.state = SynologyState(home, name)
        self.client = SynologyClient(
            options.url,
            source=name,
            account=options.username,
            password=resolve_password(name, options),
            session_name=options.session,
            otp_code=os.environ.get(options.otp_env) if options.otp_env else None,
            device_id=self.state.device_id(),
            on_device_id=self.state.save_device_id,
            transport=transport,
            timeout=options.timeout,
            retry=retry,
        )
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        _sweep_old_downloads(home / "tmp")
        self._tmp = Path(tempfile.mkdtemp(prefix="synology-", dir=home / "tmp"))
        self._listed: dict[str, _Listed] = {}
        self._listed_once = False
        self._albums: list[SourceAlbum] = []
        self._downloads: OrderedDict[str, tuple[Path, ...]] = OrderedDict()
        self._fetching: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        return f"{self.options.url} ({self.options.username})"

    # -- protocol ----------------------------------------------------------------------------

    def listing(self) -> Iterator[FolderListing | ScanProblem]:
        """One folder per album. Raises SourceMisconfigured (album not found, Photos or the
        Shared Space missing), SourceAuthFailed / SourceOtpNeeded, SourceUnavailable."""
        listed: dict[str, _Listed] = {}
        albums: list[SourceAlbum] = []
        live_keys: set[str] = set()
        for folder, scope, external in self._scopes():
            entries: list[SourceEntry] = []
            members: dict[str, str | None] = {}
            names: dict[str, int] = {}
            items = list(self.client.items(scope))
            for item in items:
                names[item.filename] = names.get(item.filename, 0) + 1
            for item in items:
                for entry, half in self._entries_of(
                    folder, item, names[item.filename] > 1, scope.passphrase
                ):
                    listed[entry.ref] = _Listed(item, scope.passphrase, half)
                    entries.append(entry)
                    members[entry.ref] = item.cache_key
                if item.kind == "live":
                    live_keys.add(item.cache_key)
            if external is not None:  # folders are not albums
                albums.append(SourceAlbum(external, folder, members))
            with self._lock:  # the import opens a folder's entries before the next is listed
                self._listed.update((e.ref, listed[e.ref]) for e in entries)
            yield FolderListing(folder, entries)
        with self._lock:
            self._listed = listed
            self._albums = albums
            self._listed_once = True
        self.state.forget_live_sizes(live_keys)

    @contextmanager
    def open(self, entry: SourceEntry) -> Iterator[BinaryIO]:
        with self._lock:
            found = self._listed.get(entry.ref)
            listed_before = self._listed_once
        if found is None and not listed_before:
            # A source made to serve one photo (full resolution on demand) lists once to
            # learn which item a ref names.
            for _folder in self.listing():
                pass
            with self._lock:
                found = self._listed.get(entry.ref)
        if found is None:
            raise VanishedFile(path=entry.ref)  # the last listing no longer had it
        paths = self._downloaded(entry.ref, found)
        path = paths[1] if found.half == "video" else paths[0]
        if path.stat().st_size != entry.size:
            raise TornRead(path=entry.ref)
        with open(path, "rb") as handle:
            yield handle

    def changes(self, stop: threading.Event) -> Iterator[list[SourceEntry]]:
        return iter(())  # polled by the service (`poll_seconds`), not watched

    def remove(self, entry: SourceEntry) -> None:
        """Never: picpipe does not delete anything on a NAS (no ``can_remove``)."""
        raise NotImplementedError("picpipe never removes photos from Synology Photos")

    def album_members(self) -> list[SourceAlbum]:
        with self._lock:
            return list(self._albums)

    def close(self) -> None:
        self.client.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    # -- listing -----------------------------------------------------------------------------

    def _scopes(self) -> Iterator[tuple[str, ItemScope, str | None]]:
        """(folder of the listing, what to list, the album's id or None for a folder)."""
        team = self.options.space == "shared"
        for path in self.options.folders:
            yield from self._folder_tree(find_folder(self.client, path, team=team), team)
        if self.options.folders:
            return
        if team:
            yield SHARED_FOLDER, ItemScope(team=True), "shared-space"
            return
        if self.options.albums:
            for wanted in self.options.albums:
                album = find_album(self.client, wanted)
                yield album.name, _scope(album.id, album.passphrase), str(album.id)
            return
        seen: set[str] = set()
        for album in sorted(self.client.albums(), key=lambda a: a.id):
            if album.name in seen:
                log.warning("source %s: a second album named %r is left out", self.name, album.name)
                continue
            seen.add(album.name)
            yield album.name, _scope(album.id, album.passphrase), str(album.id)

    def _folder_tree(self, top: Folder, team: bool) -> Iterator[tuple[str, ItemScope, str | None]]:
        """``top`` and every folder under it, parents first (a folder lists only its own)."""
        pending = [top]
        while pending:
            folder = pending.pop(0)
            yield _folder_name(folder, team), ItemScope(folder_id=folder.id, team=team), None
            pending.extend(subfolders(self.client, folder, team=team))

    def _entries_of(
        self, folder: str, item: Item, clash: bool, passphrase: str | None
    ) -> list[tuple[SourceEntry, Literal["whole", "still", "video"]]]:
        mtime_ns = item.time * 1_000_000_000
        stem, dot, ext = item.filename.rpartition(".")
        if not dot:
            stem, ext = item.filename, ""
        if clash:  # two items of one album with one name: the item id tells them apart
            stem = f"{stem}~{item.id}"
        extras: dict[str, Any] = {"item_id": item.id, "cache_key": item.cache_key}
        if item.kind != "live":
            name = f"{stem}.{ext}" if ext else stem
            file = _download_name(item)
            entry = self._entry(folder, name, item.filesize, mtime_ns, extras, file)
            return [(entry, "whole")]
        sizes = self.state.live_sizes(item.cache_key) or self._fetch_live_sizes(
            folder, item, passphrase
        )
        file = _download_name(item)
        still = self._entry(folder, f"{stem}.{ext}", sizes[0], mtime_ns, extras, f"{file}.still")
        video = self._entry(
            folder, f"{stem}.{LIVE_VIDEO_EXT}", sizes[1], mtime_ns, extras, f"{file}.video"
        )
        return [(still, "still"), (video, "video")]

    def _entry(
        self, folder: str, name: str, size: int, mtime_ns: int, extras: dict[str, Any], file: str
    ) -> SourceEntry:
        """``file``: the download's name in the temp folder. The entry names it as its local
        path although it exists only once ``open`` fetched it: the import's metadata stage
        (exiftool) runs after the hash stage's ``open``, and reads it there (hence no
        ``local_paths`` capability: the path is not there before the first read)."""
        ref = f"{folder}/{name}" if folder else name
        skipped = next(
            (
                f"temporary name ({p})"
                for p in self.scan.ignored_patterns
                if fnmatch.fnmatch(name, p)
            ),
            None,
        )
        ext = name.rpartition(".")[2].lower() if "." in name else ""
        sniff = skipped is None and ext not in self._media
        return SourceEntry(
            ref,
            name,
            size,
            mtime_ns,
            local_path=str(self._tmp / file),
            extras=extras,
            skipped=skipped,
            sniff=sniff,
        )

    def _fetch_live_sizes(self, folder: str, item: Item, passphrase: str | None) -> tuple[int, int]:
        ref = f"{folder}/{item.filename}" if folder else item.filename
        try:
            still, video = self._downloaded(ref, _Listed(item, passphrase, "still"))
        except (DownloadInterrupted, UnreadableFile) as exc:
            log.warning("source %s: %s", self.name, exc)
            return (item.filesize, 0)  # listed; its import fails with the reason and retries
        return (still.stat().st_size, video.stat().st_size)

    # -- downloads ---------------------------------------------------------------------------

    def _downloaded(self, ref: str, found: _Listed) -> tuple[Path, ...]:
        """The item's bytes in temp files (a Live Photo: still, video); the NAS's own failures
        become this item's."""
        try:
            return self._fetch(ref, found)
        except SourceUnavailable as exc:  # retries ran out: the next run tries again
            raise DownloadInterrupted(path=ref, detail=exc.fields.get("detail", "")) from exc
        except SourceError as exc:
            raise UnreadableFile(path=ref, detail=exc.message) from exc

    def _fetch(self, ref: str, found: _Listed) -> tuple[Path, ...]:
        """One download per item version, shared by its refs (an item in two albums, the two
        halves of a Live Photo) and by the import's reads; concurrent askers wait for it."""
        key = _download_name(found.item)
        with self._lock:
            item_lock = self._fetching.setdefault(key, threading.Lock())
        with item_lock:
            with self._lock:
                paths = self._downloads.get(key)
                if paths is not None and all(p.exists() for p in paths):
                    self._downloads.move_to_end(key)
                    return paths
            self._tmp.mkdir(parents=True, exist_ok=True)  # a sweep by a later process
            if found.half == "whole":
                path = self._tmp / key
                with open(path, "wb") as target:
                    self.client.download(found.item, target, passphrase=found.passphrase, what=ref)
                paths = (path,)
            else:
                paths = self._download_live(key, ref, found.item, found.passphrase)
            self._keep(key, paths)
            return paths

    def _download_live(
        self, key: str, ref: str, item: Item, passphrase: str | None
    ) -> tuple[Path, Path]:
        """Fetch a Live Photo's zip and unpack its halves (streamed, never whole in memory)."""
        archive_path = self._tmp / f"{key}.zip"
        with open(archive_path, "wb") as target:
            result = self.client.download(item, target, passphrase=passphrase, what=ref)
        still, video = self._tmp / f"{key}.still", self._tmp / f"{key}.video"
        try:
            if not result.is_zip:
                raise UnreadableFile(path=ref, detail="a Live Photo that did not come as a zip")
            with zipfile.ZipFile(archive_path) as archive:
                members = archive.infolist()
                videos = [m for m in members if m.filename.lower().endswith((".mov", ".mp4"))]
                stills = [m for m in members if m not in videos]
                if len(videos) != 1 or len(stills) != 1:
                    raise UnreadableFile(path=ref, detail="a Live Photo zip without its two halves")
                for member, out in ((stills[0], still), (videos[0], video)):
                    with archive.open(member) as source, open(out, "wb") as sink:
                        shutil.copyfileobj(source, sink, 1024 * 1024)
        except (zipfile.BadZipFile, OSError) as exc:
            raise UnreadableFile(path=ref, detail=f"damaged Live Photo zip ({exc})") from exc
        finally:
            archive_path.unlink(missing_ok=True)
        self.state.remember_live_sizes(item.cache_key, still.stat().st_size, video.stat().st_size)
        return still, video

    def _keep(self, key: str, paths: tuple[Path, ...]) -> None:
        with self._lock:
            self._downloads[key] = paths
            self._downloads.move_to_end(key)
            while len(self._downloads) > KEPT_DOWNLOADS:
                old, stale = self._downloads.popitem(last=False)
                self._fetching.pop(old, None)
                for path in stale:
                    path.unlink(missing_ok=True)  # a reader with it open keeps reading


def _download_name(item: Item) -> str:
    """Temp file name of one version of an item: a re-indexed item gets a new one."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{item.id}-{item.cache_key}")[:120]


def _sweep_old_downloads(tmp: Path) -> None:
    """Remove the download folders of processes that died a day ago or more (``close``
    removes a live one's)."""
    cutoff = time.time() - STALE_DOWNLOADS_SECONDS
    for old in tmp.glob("synology-*"):
        try:
            if old.is_dir() and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue


def _folder_name(folder: Folder, team: bool) -> str:
    if team:
        return f"{SHARED_FOLDER}/{folder.path}" if folder.path else SHARED_FOLDER
    return folder.path


def _scope(album_id: int, passphrase: str) -> ItemScope:
    # Albums shared with the account are listed by passphrase (by id: 609, NOTES §4).
    return ItemScope(passphrase=passphrase) if passphrase else ItemScope(album_id=album_id)


__all__ = ["SynologyOptions", "SynologySource"]
