"""The ``immich`` destination: replicas as assets in one user's Immich library (API v3).

Immich names what it stores, so ``put`` returns the key: the Immich asset id
(``caps.keyed_by_server``). ``key_for`` gives only a hint (the original file name).

- Upload: multipart ``POST /assets`` with our hex SHA-1 in ``x-immich-checksum`` and the dates
  with their UTC offset (``taken_local`` + ``taken_offset_min``; without a known offset the wall
  time goes as UTC, ``Z``, which Immich shows unchanged); a new asset then gets picpipe's mark
  (`clients/immich_marker.py`). Immich keeps one copy of given bytes
  per user: a "duplicate" answer names the asset holding them and counts as stored; the engine
  still verifies it like any other replica.
- Verification: cheap = ``GET /assets/{id}``: the SHA-1 Immich computed while receiving
  (base64) and ``exifInfo.fileSizeInByte`` against ours; deep = download the original and
  compare SHA-256 and size. A key that is not an asset id, or an id the key's user cannot see,
  is "missing".
- Trash: an asset in Immich's trash is not a safe copy. Immich 3.0 answers "duplicate" for bytes
  that sit in its trash and leaves them there, so ``put`` fails for good ("in Immich's trash;
  restore it there"), ``verify`` fails with the same reason, and ``find_existing`` leaves such
  assets out (the engine then calls ``put``, which says why).
- Repair has a limit: Immich 3 cannot replace an asset's file, and it answers "duplicate" by
  the recorded checksum. A file damaged on Immich's disk under an intact record passes the
  cheap check, fails the deep one, and uploading again cannot fix it (fix it in Immich).
- ``check`` uploads no probe: it would appear in the user's timeline, and Immich's delete only
  moves it to the trash (where, as above, it would later block the same bytes). Writable is
  judged from the key's permissions (``GET /api-keys/me``) instead.
- ``list`` ignores ``prefix`` (Immich has no folders) and asks once per visibility (timeline,
  archive, hidden): what an unfiltered search returns has changed between versions.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path  # noqa: TC003 - pydantic resolves the option's type at runtime
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, cast

from pydantic import Field, SecretStr, field_validator, model_validator

from picpipe.clients.immich import ErrorMap, ImmichClient
from picpipe.clients.immich_marker import mark_upload
from picpipe.clients.immich_models import ImmichAsset, is_asset_id
from picpipe.destinations.base import (
    AssetRef,
    ConnectionReport,
    DestinationCaps,
    DestinationOptions,
    Digests,
    RemoteObject,
    Verification,
    resolve_secret,
    verify_by_reading,
)
from picpipe.destinations.immich_fields import (
    HashingReader,
    capture_time,
    duration_ms,
    modified_time,
    sha1_of,
)
from picpipe.destinations.immich_metadata import ImmichEdits, push_edits
from picpipe.errors import (
    DestinationAuthFailed,
    DestinationError,
    DestinationMisconfigured,
    DestinationRejected,
    IntegrityMismatch,
)

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable, Iterator, Sequence

log = logging.getLogger(__name__)

VISIBILITIES = ("timeline", "archive", "hidden")  # "locked" needs a PIN session, not a key
TRASHED = "in Immich's trash; restore it there"
# What picpipe does with a key, and what it cannot do without each permission.
NEEDED = {
    "asset.upload": "upload",
    "asset.read": "verify",
    "asset.download": "verify deeply",
    "asset.update": "link Live Photos, mark uploads as picpipe's and send later edits",
    "tag.create": "send keywords edited after the upload",
    "tag.asset": "send keywords edited after the upload",
}
NEEDED_FOR_ALBUMS = {
    "album.read": "find albums",
    "album.create": "create albums",
    "albumAsset.create": "add to albums",
}


class ImmichOptions(DestinationOptions):
    """An Immich server and one user's API key."""

    kind: str = "immich"
    url: str = Field(description="Immich server URL, e.g. https://photos.example.org (/api added)")
    api_key: SecretStr | None = Field(
        default=None, description="API key (prefer api_key_env or api_key_file)"
    )
    api_key_env: str | None = Field(
        default=None, description="name of an environment variable that holds the API key"
    )
    api_key_file: Path | None = Field(default=None, description="file that holds the API key")
    album: str | None = Field(
        default=None, description="put every uploaded asset in this album (created if missing)"
    )
    albums_from_catalog: bool = Field(
        default=False, description="mirror picpipe's albums as Immich albums of the same name"
    )
    verify_tls: bool = Field(
        default=True, description="check the server's TLS certificate (off: self-signed only)"
    )
    layout: str | None = Field(default=None, description="not used: Immich names its assets")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("layout")
    @classmethod
    def _no_layout(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("Immich names its assets itself; layout does not apply")
        return value

    @model_validator(mode="after")
    def _has_key(self) -> ImmichOptions:
        if self.api_key is None and not self.api_key_env and self.api_key_file is None:
            raise ValueError("one of api_key, api_key_env or api_key_file is required")
        return self


class ImmichDestination:
    """Replicas as Immich assets; see the module docstring and `picpipe.destinations.base`."""

    kind: ClassVar[str] = "immich"
    caps: ClassVar[DestinationCaps] = DestinationCaps(
        remote_checksum="sha1",
        keyed_by_server=True,
        needs=frozenset({"sha1"}),
        bulk_check=True,
        links_pairs=True,
        albums=True,
        takes_sidecar=True,
        default_layout="{name}",
    )
    Options: ClassVar[type[DestinationOptions]] = ImmichOptions

    def __init__(
        self, name: str, options: DestinationOptions, *, client: ImmichClient | None = None
    ) -> None:
        assert isinstance(options, ImmichOptions)
        self.name = name
        self.options = options
        self._lock = threading.Lock()
        self._http = client  # built on first use: opening a config does no I/O
        self._version_checked = False
        self._album_ids: dict[str, str] = {}
        self._album_lock = threading.Lock()  # find-or-create must not race into two albums
        self._mark_refused = False  # the key may not set metadata: stop asking

    def key_for(self, asset: AssetRef) -> str:
        """A hint only: Immich names the asset, and ``put`` returns that name (the key)."""
        return asset.original_name

    def stat(self, key: str) -> RemoteObject | None:
        if not is_asset_id(key):
            return None
        found = self._client().get_asset(key)
        return None if found is None else _remote(found)

    def put(
        self,
        key: str,
        data: BinaryIO,
        *,
        digests: Digests,
        asset: AssetRef,
        resume: dict[str, Any] | None = None,
        checkpoint: Callable[[dict[str, Any]], None] | None = None,
    ) -> RemoteObject:
        client = self._client()
        self._require_v3(client)
        sha1 = digests.sha1 or sha1_of(data)
        reader = HashingReader(data)
        result = client.upload_asset(
            cast("BinaryIO", reader),
            filename=asset.original_name,
            file_created_at=capture_time(asset),
            file_modified_at=modified_time(asset),
            sha1=sha1,
            mime_type=asset.mime_type,
            duration_ms=duration_ms(asset),
            sidecar=asset.sidecar,
        )
        if result.status == "created":
            if reader.size != digests.size or reader.hexdigest() != sha1:
                raise IntegrityMismatch(
                    destination=self.name, key=result.id, detail="the bytes changed while sent"
                )
            stored = RemoteObject(
                key=result.id, size=digests.size, sha1=sha1, extra={"status": "created"}
            )
            self._mark(client, result.id, digests.sha256)
        else:
            found = client.get_asset(result.id)
            if found is None:
                raise DestinationRejected(
                    destination=self.name,
                    key=asset.original_name,
                    detail=f"Immich calls it a duplicate of {result.id}, which the key cannot see",
                )
            if found.is_trashed:
                raise DestinationRejected(
                    destination=self.name, key=f"{asset.original_name} ({found.id})", detail=TRASHED
                )
            stored = _remote(found, status=result.status)
        if self.options.album:
            self._add(self.options.album, [stored.key])
        return stored

    def _mark(self, client: ImmichClient, asset_id: str, sha256: str) -> None:
        """picpipe's mark on a new upload (`clients/immich_marker.py`). Best effort: the copy
        is stored either way, and a key without ``asset.update`` is told once."""
        if self._mark_refused:
            return
        try:
            mark_upload(client, asset_id, sha256)
        except DestinationAuthFailed as exc:
            self._mark_refused = True
            log.warning("%s: uploads are not marked as picpipe's (%s)", self.name, exc.message)
        except DestinationError as exc:  # stored all the same; only the mark is missing
            log.info("%s: %s not marked as picpipe's (%s)", self.name, asset_id, exc.message)

    def verify(self, key: str, digests: Digests, *, deep: bool = False) -> Verification:
        cheap = not deep and digests.sha1 is not None  # without our SHA-1, only bytes can tell
        method = "immich sha1" if cheap else "sha256 re-read"
        if not is_asset_id(key):
            return Verification(False, key, method, "missing")
        found = self._client().get_asset(key)
        if found is None:
            return Verification(False, key, method, "missing")
        remote = _remote(found)
        if found.is_trashed:
            return Verification(False, key, method, TRASHED, remote)
        if found.file_size is not None and found.file_size != digests.size:
            return Verification(
                False, key, method, f"size {found.file_size} != {digests.size}", remote
            )
        if digests.sha1 and remote.sha1 != digests.sha1:
            return Verification(False, key, method, "sha1 differs", remote)
        if cheap:
            return Verification(True, key, method, remote=remote)
        return self._verify_bytes(key, digests, method, remote)

    def read(self, key: str) -> Iterator[bytes]:
        if not is_asset_id(key):
            raise IntegrityMismatch(destination=self.name, key=key, detail="missing")
        with self._client().open_original(key) as chunks:
            if chunks is None:
                raise IntegrityMismatch(destination=self.name, key=key, detail="missing")
            yield from chunks

    def list(self, prefix: str = "") -> Iterator[RemoteObject]:
        client = self._client()
        seen: set[str] = set()
        for visibility in VISIBILITIES:
            for found in client.iter_assets(visibility):
                if found.id not in seen and not found.is_trashed:
                    seen.add(found.id)
                    yield _remote(found)

    def check(self) -> ConnectionReport:
        report = ConnectionReport(self.name, self.kind, False, False, False)
        try:
            client = self._client()
            client.ping()
            version = client.version()
        except DestinationError as exc:
            return replace(report, detail=exc.message)
        report = replace(report, reachable=True, detail=f"Immich {version}")
        if version.major < 3:
            return replace(report, detail=f"Immich {version} is older than 3.0; upgrade Immich")
        try:
            key = client.api_key_me()
        except DestinationError as exc:
            return replace(report, detail=exc.message)
        needed = dict(NEEDED)
        if self.options.album or self.options.albums_from_catalog:
            needed |= NEEDED_FOR_ALBUMS
        lacking = [f"{perm} (to {why})" for perm, why in needed.items() if not key.allows(perm)]
        writable = key.allows("asset.upload") and key.allows("asset.read")
        detail = f"Immich {version}, API key {key.name!r}"
        if lacking:
            detail += "; the key lacks " + ", ".join(lacking)
        return replace(report, authenticated=True, writable=writable, detail=detail)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def push_edits(self, key: str, edits: ImmichEdits, previous: Sequence[str]) -> tuple[str, ...]:
        """An edit of the library sidecar after the upload, as Immich's own fields (see
        `destinations/immich_metadata.py`); returns the tags picpipe has put on the asset."""
        if not is_asset_id(key):
            raise IntegrityMismatch(destination=self.name, key=key, detail="missing")
        return push_edits(self._client(), key, edits, previous)

    # -- optional abilities (caps.bulk_check, caps.links_pairs, caps.albums) --------------------

    def find_existing(self, items: Sequence[tuple[AssetRef, Digests]]) -> dict[str, RemoteObject]:
        """sha256 → the asset Immich already holds with these bytes (bulk upload check).

        Items without a SHA-1 are not asked about. Assets in Immich's trash are left out: they
        are no safe copy, and ``put`` then reports them.
        """
        wanted = {d.sha256: d for _, d in items if d.sha1}
        if not wanted:
            return {}
        results = self._client().bulk_upload_check(
            [(sha256, d.sha1) for sha256, d in wanted.items() if d.sha1]
        )
        found: dict[str, RemoteObject] = {}
        for result in results:
            digests = wanted.get(result.id)
            if digests is None or result.reason != "duplicate" or not result.asset_id:
                continue
            if result.is_trashed:
                log.info("%s: %s is in Immich's trash; not counted", self.name, result.asset_id)
                continue
            found[result.id] = RemoteObject(
                key=result.asset_id,
                size=digests.size,
                sha1=digests.sha1,
                extra={"status": "duplicate"},
            )
        return found

    def link_pairs(self, pairs: Sequence[tuple[str, str]]) -> builtins.list[tuple[str, str]]:
        """Link each (still id, video id) through ``livePhotoVideoId``; Immich then hides the
        video in the timeline. A pair Immich refuses (not a video, not found) is skipped with a
        warning; already linked pairs count as linked."""
        client = self._client()
        linked: builtins.list[tuple[str, str]] = []
        for still, video in pairs:
            try:
                current = client.get_asset(still)
                if current is not None and current.live_photo_video_id == video:
                    linked.append((still, video))
                    continue
                updated = client.update_asset(still, live_photo_video_id=video)
            except DestinationRejected as exc:
                log.warning("%s: Live Photo %s + %s not linked: %s", self.name, still, video, exc)
                continue
            if updated.live_photo_video_id == video:
                linked.append((still, video))
        return linked

    def add_to_albums(self, albums: dict[str, builtins.list[str]]) -> dict[str, builtins.list[str]]:
        """Album name → asset ids, when ``albums_from_catalog`` is on (otherwise nothing);
        creates missing albums (found by exact name among the user's own). Returns what is
        now in each album."""
        if not self.options.albums_from_catalog:
            return {}
        failed: builtins.list[str] = []
        done: dict[str, builtins.list[str]] = {}
        for name, keys in albums.items():
            ids = [k for k in keys if is_asset_id(k)]
            missed = self._add(name, ids, raise_on_failure=False)
            failed += missed
            done[name] = [k for k in ids if k not in missed]
        if failed:
            raise DestinationRejected(
                destination=self.name,
                key="albums",
                detail=f"{len(failed)} asset(s) not added: " + ", ".join(failed[:5]),
            )
        return done

    # -- helpers -------------------------------------------------------------------------------

    def _client(self) -> ImmichClient:
        with self._lock:
            if self._http is None:
                secret = resolve_secret(
                    self.name,
                    "api_key",
                    self.options.api_key,
                    self.options.api_key_env,
                    self.options.api_key_file,
                )
                if not secret:
                    raise DestinationMisconfigured(
                        destination=self.name, detail="the API key is empty"
                    )
                self._http = ImmichClient(
                    self.options.url,
                    SecretStr(secret),
                    errors=ErrorMap.for_destination(self.name),
                    verify_tls=self.options.verify_tls,
                )
            return self._http

    def _require_v3(self, client: ImmichClient) -> None:
        # v2 needs device ids and a string duration on upload; refuse rather than half work.
        if self._version_checked:
            return
        version = client.version()
        if version.major < 3:
            raise DestinationMisconfigured(
                destination=self.name,
                detail=f"Immich {version} is older than 3.0, the API picpipe speaks; upgrade it",
            )
        self._version_checked = True

    def _verify_bytes(
        self, key: str, digests: Digests, method: str, remote: RemoteObject
    ) -> Verification:
        check = verify_by_reading(key, self.read(key), digests, method)
        return replace(check, remote=replace(remote, sha256=digests.sha256) if check.ok else remote)

    def _add(
        self, album: str, ids: builtins.list[str], *, raise_on_failure: bool = True
    ) -> builtins.list[str]:
        if not ids:
            return []
        client = self._client()
        failed = [
            f"{i} ({why})" for i, why in client.add_assets_to_album(self._album_id(album), ids)
        ]
        if failed and raise_on_failure:
            raise DestinationRejected(
                destination=self.name, key=f"album {album!r}", detail=", ".join(failed)
            )
        return failed

    def _album_id(self, name: str) -> str:
        with self._album_lock:
            if name not in self._album_ids:
                client = self._client()
                found = client.list_albums(name)
                album = found[0] if found else client.create_album(name)
                self._album_ids[name] = album.id
            return self._album_ids[name]


def _remote(found: ImmichAsset, status: str | None = None) -> RemoteObject:
    """What Immich says about an asset; ``put`` adds only its status to the catalog's extra."""
    if status is not None:
        extra: dict[str, Any] = {"status": status}
    else:
        extra = {"name": found.original_file_name, "visibility": found.visibility}
        if found.is_trashed:
            extra["trashed"] = True
    size = found.file_size if found.file_size is not None else -1  # -1: not recorded yet
    return RemoteObject(key=found.id, size=size, sha1=found.sha1, extra=extra)
