"""The ``immich`` source: the originals of one user's Immich library, or of some albums.

Listing (`clients/immich_listing.py`): ``POST /search/metadata`` pages, one pass per
visibility (timeline, archive, hidden: a Live Photo's motion half is hidden), ``updatedAfter``
the high-water mark the catalog keeps on the source row between runs (`IncrementalSource`).
The first run, a change of ``albums`` and a mark that is not a date list everything; later
runs list what Immich changed since, re-listing a few minutes before the mark (``OVERLAP``) so
an asset committed late is not missed. The mark never passes an asset that failed.

Entries: ref = the Immich asset id (stable), name = the original file name, size from
``exifInfo.fileSizeInByte``, mtime from ``fileModifiedAt``, checksum = Immich's SHA-1 (hex).
Accounted for but not imported (``skipped``): assets of an external library (their checksum is
a hash of the path; the library may be picpipe's own), assets Immich has not read yet (no
size), and anything that is not a photo or video. picpipe's own uploads are known by their
id (a verified replica of an ``immich`` destination) or their SHA-1 (recorded at upload) and
end as provenance without a download (`pipeline/checksum_stage.py`); so does any content
picpipe has. They also carry picpipe's mark in Immich (`clients/immich_marker.py`).

``open`` downloads the original once to a private temp folder (``local_path`` names it, so
exiftool reads it) and checks its size against the listing: a cut-off body is a retryable
DownloadFailed, a complete body of another size a TornRead; nothing partial is ever handed on.
The SHA-1 is checked by the import's hash stage in its one read of the bytes, beside the
SHA-256 (``caps.server_checksum``): a mismatch is a retryable ChecksumMismatch. 5xx
answers, timeouts and resets are retried with backoff (`jobs/retry.py`); a bad API key, an
unknown album or no Immich at the URL are one-line source errors that end the run.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, TypeVar

from pydantic import SecretStr

from picpipe.clients.immich import ImmichClient
from picpipe.clients.immich_listing import download_original, search_page, source_errors
from picpipe.errors import (
    DownloadFailed,
    ItemError,
    SourceMisconfigured,
    SourceUnavailable,
    TornRead,
    VanishedFile,
)
from picpipe.jobs.retry import RetryPolicy, call_with_retries
from picpipe.sources.base import FolderListing, SourceCaps, SourceEntry, SourceRelations
from picpipe.sources.immich_options import ImmichSourceOptions, resolve_api_key
from picpipe.sources.spool import DownloadSpool

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import httpx

    from picpipe.clients.immich_models import ImmichAlbum, ImmichAsset

log = logging.getLogger(__name__)
T = TypeVar("T")

VISIBILITIES = ("timeline", "archive", "hidden")  # "locked" needs a PIN session, not a key
OVERLAP = timedelta(minutes=5)
EXTERNAL = "in an Immich external library (its checksum is of the path, not the bytes)"
NOT_READ = "Immich has not read this file yet (no size); listed again once it has"
NOT_MEDIA = "not a photo or video"


class ImmichSource:
    """One Immich user's library as a source; see the module docstring."""

    kind: ClassVar[str] = "immich"
    caps: ClassVar[SourceCaps] = SourceCaps(
        stable_ids=True,
        server_checksum="sha1",
        local_paths=True,
        incremental=True,
        refs_are_keys_of="immich",
        relations=True,
    )
    Options: ClassVar[type[ImmichSourceOptions]] = ImmichSourceOptions

    def __init__(
        self,
        name: str,
        options: ImmichSourceOptions,
        *,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        page_size: int = 1000,
    ) -> None:
        self.name = name
        self.options = options
        self._transport = transport
        self._retry = retry or RetryPolicy()
        self._page_size = page_size
        self._client: ImmichClient | None = None
        self._lock = threading.Lock()
        self._since: str | None = None  # this listing's updatedAfter (None: everything)
        self._state: dict[str, Any] = {}
        self._updated: dict[str, str] = {}  # ref → updatedAt, of this listing
        self._trashed: set[str] = set()  # refs trashed since the mark
        self._live: list[tuple[str, str]] = []  # (still ref, motion ref) of the last listing
        self._members: dict[str, tuple[str, list[str]]] = {}  # album id → (name, refs)
        self._spool = DownloadSpool("picpipe-immich-")

    @classmethod
    def from_options(cls, name: str, options: ImmichSourceOptions) -> ImmichSource:
        return cls(name, options)

    @property
    def location(self) -> str:
        albums = f" albums {', '.join(self.options.albums)}" if self.options.albums else ""
        return f"{self.options.url.rstrip('/')}{albums}"

    # -- the incremental protocol (sources/base.py IncrementalSource) ------------------------

    def resume(self, state: dict[str, Any]) -> None:
        self._state = dict(state)
        mark = state.get("updated_after")
        same_albums = state.get("albums", []) == sorted(self.options.albums)
        self._since = None
        if isinstance(mark, str) and same_albums:
            with contextlib.suppress(ValueError):
                moment = datetime.fromisoformat(mark.replace("Z", "+00:00")) - OVERLAP
                self._since = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    @property
    def listing_partial(self) -> bool:
        return self._since is not None

    @property
    def gone_refs(self) -> set[str]:
        """Assets moved to Immich's trash since the mark (a listing of changes sees them)."""
        return set(self._trashed)

    def next_state(self, failed: set[str]) -> dict[str, Any]:
        """The mark after this run: the newest ``updatedAt`` listed, but never past an asset
        that failed (``updatedAfter`` is inclusive: it is listed again next time)."""
        stamps = {ref: stamp for ref, stamp in self._updated.items() if stamp}
        if not stamps:
            return self._state
        failed_stamps = [stamps[ref] for ref in failed if ref in stamps]
        pick = min if failed_stamps else max
        mark = pick(failed_stamps or stamps.values(), key=_instant)
        return {"updated_after": mark, "albums": sorted(self.options.albums)}

    # -- listing ------------------------------------------------------------------------------

    def listing(self) -> Iterator[FolderListing]:
        """Every asset (or those changed since the mark) in one listing of folder ``""``."""
        client = self._http()
        albums = self._albums(client)
        album_ids: list[str | None] = [a.id for a in albums] if self.options.albums else [None]
        self._updated = {}
        entries: dict[str, SourceEntry] = {}
        stills: list[ImmichAsset] = []
        seen_in: dict[str, list[str]] = {}  # album id → members, from album-scoped passes
        for visibility in VISIBILITIES:
            for album_id in album_ids:
                for asset in self._search(client, visibility, album_id, self._since):
                    if album_id is not None:
                        seen_in.setdefault(album_id, []).append(asset.id)
                    if asset.id not in entries:
                        entries[asset.id] = self._entry(asset)
                        if asset.live_photo_video_id:
                            stills.append(asset)
        self._trashed = self._trashed_since(client, album_ids) if self._since else set()
        if self.options.albums:
            # An album holds the still; its motion half is a hidden asset of its own.
            for still in stills:
                video_id = still.live_photo_video_id
                if video_id and video_id not in entries:
                    video = self._retrying(video_id, functools.partial(client.get_asset, video_id))
                    if video is not None:
                        entries[video.id] = self._entry(video)
        self._live = [(s.id, s.live_photo_video_id) for s in stills if s.live_photo_video_id]
        self._members = self._album_members(client, albums, {} if self._since else seen_in)
        yield FolderListing("", list(entries.values()))

    def relations(self) -> SourceRelations:
        """The albums (re)listed by the last listing, complete, and its Live Photo pairs."""
        return SourceRelations(dict(self._members), list(self._live))

    def _search(
        self,
        client: ImmichClient,
        visibility: str,
        album_id: str | None,
        since: str | None,
        *,
        trashed: bool = False,
    ) -> Iterator[ImmichAsset]:
        """Every page of one search, each retried while the server is unavailable; assets
        updated since ``since``, or (``trashed``) moved to the trash since then."""
        page: int | None = 1
        while page is not None:
            assets, page = self._retrying(
                "listing",
                functools.partial(
                    search_page,
                    client,
                    page=page,
                    visibility=visibility,
                    updated_after=None if trashed else since,
                    trashed_after=since if trashed else None,
                    album_id=album_id,
                    page_size=self._page_size,
                ),
            )
            yield from assets

    def _album_members(
        self, client: ImmichClient, albums: list[ImmichAlbum], listed: dict[str, list[str]]
    ) -> dict[str, tuple[str, list[str]]]:
        """Every member of each album that changed since the mark (all on a full listing;
        ``listed``: members a full album-scoped listing found already). Adding or removing
        assets changes an album's ``updatedAt``, not the assets'."""
        members: dict[str, tuple[str, list[str]]] = {}
        since = _instant(self._since) if self._since else None
        for album in albums:
            if since is not None and album.updated_at and _instant(album.updated_at) < since:
                continue
            if album.id in listed:
                members[album.id] = (album.name, listed[album.id])
                continue
            refs = [
                asset.id
                for visibility in ("timeline", "archive")  # hidden assets are no album's
                for asset in self._search(client, visibility, album.id, None)
            ]
            members[album.id] = (album.name, refs)
        return members

    def _trashed_since(self, client: ImmichClient, album_ids: list[str | None]) -> set[str]:
        """Ids of assets trashed since the mark: a listing of changes must report deletions
        (Immich's delete moves to the trash first; a full listing simply leaves them out)."""
        return {
            asset.id
            for visibility in VISIBILITIES
            for album_id in album_ids
            for asset in self._search(client, visibility, album_id, self._since, trashed=True)
            if asset.is_trashed
        }

    def _entry(self, asset: ImmichAsset) -> SourceEntry:
        self._updated[asset.id] = asset.updated_at
        name = asset.original_file_name
        mtime_ns = _ns(asset.file_modified_at or asset.file_created_at)
        skipped = None
        if asset.library_id is not None:
            skipped = EXTERNAL
        elif asset.type not in ("IMAGE", "VIDEO"):
            skipped = NOT_MEDIA
        elif asset.file_size is None or asset.sha1 is None:
            skipped = NOT_READ
        ext = os.path.splitext(name)[1].lower()
        return SourceEntry(
            ref=asset.id,
            name=name,
            size=asset.file_size or 0,
            mtime_ns=mtime_ns,
            local_path=self._spool.path_for(asset.id, ext),
            checksum=asset.sha1,
            skipped=skipped,
            # No extension: the name says nothing, the import reads the first bytes.
            sniff=skipped is None and not ext,
        )

    def _albums(self, client: ImmichClient) -> list[ImmichAlbum]:
        """The configured albums (SourceMisconfigured for a name the account lacks), or every
        album of the account for a whole library."""
        if not self.options.albums:
            return self._retrying("albums", client.list_albums)
        found: list[ImmichAlbum] = []
        for name in self.options.albums:
            named = self._retrying(name, functools.partial(client.list_albums, name))
            if not named:
                raise SourceMisconfigured(
                    source=self.name, detail=f"no album named {name!r} in that Immich account"
                )
            found.extend(named)
        return found

    # -- content ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def open(self, entry: SourceEntry) -> Iterator[BinaryIO]:
        """The original's bytes, downloaded once (`sources/spool.py`), its size checked."""
        try:
            stream = open(self._fetch(entry), "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:  # evicted meanwhile: fetch once more
            self._spool.forget(entry.ref)
            stream = open(self._fetch(entry), "rb")  # noqa: SIM115
        with stream:
            yield stream

    def _fetch(self, entry: SourceEntry) -> str:
        path = entry.local_path or self._spool.path_for(entry.ref)
        download = functools.partial(self._download, entry)
        # Only an unavailable server is retried; an item error comes back as a value.
        failed = self._retrying(
            entry.ref,
            functools.partial(_settled, self._spool.fetch, entry.ref, path, download),
            item=True,
        )
        if isinstance(failed, ItemError):
            raise failed
        return failed

    def _download(self, entry: SourceEntry, target: BinaryIO) -> None:
        got = download_original(self._http(), entry.ref, target)
        if got is None:
            raise VanishedFile(path=f"{self.name}:{entry.ref}")
        if got != entry.size:  # a complete answer of another size: the file changed
            raise TornRead(path=f"{self.name}:{entry.ref}")

    def changes(self, stop: threading.Event) -> Iterator[list[SourceEntry]]:
        return iter(())  # polled by the service (poll_seconds), not watched

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self._spool.close()

    # -- plumbing -----------------------------------------------------------------------------

    def _http(self) -> ImmichClient:
        with self._lock:
            if self._client is None:
                key = resolve_api_key(self.name, self.options)
                self._client = ImmichClient(
                    self.options.url,
                    SecretStr(key),
                    errors=source_errors(self.name),
                    verify_tls=self.options.verify_tls,
                    transport=self._transport,
                )
            return self._client

    def _retrying(self, what: str, call: Callable[[], T], *, item: bool = False) -> T:
        """``call`` with backoff while the server is unavailable (5xx, timeouts, resets).

        For an item, only that is retried (a checksum mismatch is not), and the last failure
        becomes a DownloadFailed of the item: the run goes on. The listing's ends the run.
        """
        try:
            return call_with_retries(call, self._retry, what=f"{self.name}: {what}")
        except SourceUnavailable as exc:
            if not item:
                raise
            detail = str(exc.fields.get("detail", exc.message))
            raise DownloadFailed(path=f"{self.name}:{what}", detail=detail) from exc


def _settled(
    fetch: Callable[[str, str, Callable[[BinaryIO], None]], str],
    ref: str,
    path: str,
    download: Callable[[BinaryIO], None],
) -> str | ItemError:
    """``fetch(...)``'s path, or the item error it raised (other bytes, gone) as a value, so
    the retry loop around it waits only for an unavailable server."""
    try:
        return fetch(ref, path, download)
    except ItemError as exc:
        return exc


def _instant(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _ns(stamp: str) -> int:
    try:
        moment = _instant(stamp)
    except ValueError:
        return 0
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000
