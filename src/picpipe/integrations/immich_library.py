"""Immich reading picpipe's library as a read-only external library (``consumers.immich``).

picpipe creates the external library once (found again by its name, ``picpipe`` unless
configured), keeps its import path (``import_path``: the library as Immich's container sees
it) and exclusion patterns up to date, and asks Immich to scan after an import that added
assets. External libraries are admin-only in Immich: the key must be an admin's.

Contract: every call goes through `clients.immich.ImmichClient` (timeouts, key only in the
header); failures are `ConsumerError`s (unreachable, refused key, not an admin). Immich
scans in the background: a scan request returns at once (204), so the statistics of
`check_immich` catch up a little later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from picpipe.catalog.queries import asset_counts
from picpipe.clients.immich import ErrorMap, ImmichClient
from picpipe.errors import (
    ConsumerAuthFailed,
    ConsumerMisconfigured,
    ConsumerUnavailable,
    PicpipeError,
)
from picpipe.library.layout import THUMBS

if TYPE_CHECKING:
    import httpx

    from picpipe.catalog.db import Catalog
    from picpipe.config import ImmichConsumerOptions, Settings

log = logging.getLogger(__name__)

CONSUMER = "immich"
# Folders other tools keep inside a library (Synology's thumbnails, freedesktop's thumbnail
# cache, NAS recycle bins) and picpipe's unfinished writes: never assets. Immich's
# patterns are globs on the full path, where a literal '@' needs a backslash.
ALWAYS_EXCLUDED = (
    "**/\\@eaDir/**",
    "**/.thumbnails/**",
    "**/#recycle/**",
    "**/#snapshot/**",
    "**/.picpipe-tmp-*",
)


@dataclass(frozen=True, slots=True)
class ExternalLibrary:
    id: str
    name: str
    owner_id: str
    import_paths: tuple[str, ...]
    exclusion_patterns: tuple[str, ...]
    asset_count: int


@dataclass(frozen=True, slots=True)
class ImmichCheck:
    """What `picpipe consumers check` reports for Immich."""

    library_id: str
    name: str
    import_paths: tuple[str, ...]
    immich_photos: int
    immich_videos: int
    immich_total: int
    picpipe_assets: int

    @property
    def in_step(self) -> bool:
        return self.immich_total == self.picpipe_assets

    @property
    def note(self) -> str:
        if self.in_step:
            return "Immich sees every asset"
        if self.immich_total < self.picpipe_assets:
            return (
                f"Immich sees {self.picpipe_assets - self.immich_total} fewer: a scan may still "
                "be running, or Immich cannot read the import path (mount the library there)"
            )
        return "Immich sees more files than picpipe has assets: check the exclusion patterns"

    def as_dict(self) -> dict[str, Any]:
        return {
            "library_id": self.library_id,
            "name": self.name,
            "import_paths": list(self.import_paths),
            "immich": {
                "photos": self.immich_photos,
                "videos": self.immich_videos,
                "total": self.immich_total,
            },
            "picpipe": self.picpipe_assets,
            "in_step": self.in_step,
            "note": self.note,
        }


def open_client(
    options: ImmichConsumerOptions, transport: httpx.BaseTransport | None = None
) -> ImmichClient:
    """An Immich client whose failures are consumer errors."""
    errors = ErrorMap(
        unavailable=lambda detail: ConsumerUnavailable(consumer=CONSUMER, detail=detail),
        rejected=lambda what, detail: ConsumerMisconfigured(
            consumer=CONSUMER, detail=f"Immich refused {what}: {detail}"
        ),
        auth_failed=lambda detail: ConsumerAuthFailed(consumer=CONSUMER, detail=detail),
        misconfigured=lambda detail: ConsumerMisconfigured(consumer=CONSUMER, detail=detail),
    )
    return ImmichClient(
        options.url,
        options.api_key,
        errors=errors,
        verify_tls=options.verify_tls,
        transport=transport,
    )


def exclusion_patterns(settings: Settings, import_path: str) -> list[str]:
    """What Immich must not read: other tools' folders, and picpipe's views (the same
    originals again under other names) when they live inside the library."""
    patterns = list(ALWAYS_EXCLUDED)
    library = settings.library_root.resolve()
    base = import_path.rstrip("/")
    for inside in (settings.views_root, settings.home_root / THUMBS):
        folder = inside.expanduser().resolve()
        if folder != library and folder.is_relative_to(library):
            rel = folder.relative_to(library).as_posix().replace("@", "\\@")
            patterns.append(f"{base}/{rel}/**")
    return patterns


def ensure_library(client: ImmichClient, settings: Settings) -> ExternalLibrary:
    """Find the external library by name or create it; bring its paths and patterns in line.

    Raises ConsumerAuthFailed when the key is not an admin's.
    """
    options = settings.consumers.immich
    assert options is not None
    paths = [options.import_path]
    patterns = exclusion_patterns(settings, options.import_path)
    found = [lib for lib in _libraries(client) if lib.name == options.name]
    if not found:
        me = client.call("GET", "/users/me", what="user")
        if not isinstance(me, dict) or not me.get("isAdmin"):
            raise ConsumerAuthFailed(
                consumer=CONSUMER, detail="external libraries need an Immich admin's API key"
            )
        body = {
            "ownerId": me["id"],
            "name": options.name,
            "importPaths": paths,
            "exclusionPatterns": patterns,
        }
        library = _library(client.call("POST", "/libraries", what="create library", json=body))
        log.info("immich: created external library %s (%s)", library.name, library.id)
        return library
    library = found[0]
    if list(library.import_paths) != paths or list(library.exclusion_patterns) != patterns:
        body = {"importPaths": paths, "exclusionPatterns": patterns}
        answer = client.call("PUT", f"/libraries/{library.id}", what="update library", json=body)
        library = _library(answer)
        log.info("immich: import path and exclusions of %s updated", library.name)
    return library


def scan_after_ingest(settings: Settings, added: int, *, transport: Any = None) -> dict[str, Any]:
    """Ask Immich to scan when an import added assets; nothing at all otherwise."""
    options = settings.consumers.immich
    if options is None or added <= 0:
        return {"scanned": False}
    client = open_client(options, transport)
    try:
        library = ensure_library(client, settings)
        client.call("POST", f"/libraries/{library.id}/scan", what="scan library")
    finally:
        client.close()
    log.info("immich: scan of %s requested after %d new assets", library.name, added)
    return {"scanned": True, "library_id": library.id}


def check_immich(settings: Settings, catalog: Catalog, *, transport: Any = None) -> ImmichCheck:
    """Immich's statistics of the external library beside picpipe's asset count."""
    options = settings.consumers.immich
    if options is None:
        raise ConsumerMisconfigured(consumer=CONSUMER, detail="consumers.immich is not set")
    client = open_client(options, transport)
    try:
        library = ensure_library(client, settings)
        stats = client.call("GET", f"/libraries/{library.id}/statistics", what="statistics")
    finally:
        client.close()
    with catalog.session() as db:
        ours = sum(kind["count"] for kind in asset_counts(db).values())
    try:
        photos, videos, total = int(stats["photos"]), int(stats["videos"]), int(stats["total"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _unexpected("statistics", exc) from exc
    return ImmichCheck(library.id, library.name, library.import_paths, photos, videos, total, ours)


def _libraries(client: ImmichClient) -> list[ExternalLibrary]:
    body = client.call("GET", "/libraries", what="libraries")
    if not isinstance(body, list):
        raise _unexpected("libraries", TypeError(type(body).__name__))
    return [_library(item) for item in body]


def _library(item: Any) -> ExternalLibrary:
    try:
        return ExternalLibrary(
            id=str(item["id"]),
            name=str(item["name"]),
            owner_id=str(item["ownerId"]),
            import_paths=tuple(str(p) for p in item["importPaths"]),
            exclusion_patterns=tuple(str(p) for p in item["exclusionPatterns"]),
            asset_count=int(item.get("assetCount") or 0),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise _unexpected("library", exc) from exc


def _unexpected(what: str, exc: Exception) -> PicpipeError:
    return ConsumerMisconfigured(
        consumer=CONSUMER, detail=f"unexpected answer from Immich ({what}: {exc!r})"
    )
