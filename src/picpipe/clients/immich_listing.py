"""What the Immich source asks of the Immich client: listing pages since a high-water mark and
originals streamed to a file.

Contract:
- `search_page` is ``POST /search/metadata`` with ``order: asc``, ``size`` ≤ 1000 and
  ``updatedAfter`` (inclusive at Immich) when a mark is given; one page per request until
  ``assets.nextPage`` is null. One visibility per pass: what an unfiltered search returns has
  changed between versions (NOTES §5).
- `download_original` streams ``GET /assets/{id}/original`` (``edited=false``: the untouched
  original) into an open binary file; it returns the bytes written, or None when the asset is
  gone. A connection cut mid-body is the client's "unavailable" error; comparing with the
  listing is the caller's decision.
- Errors are the client's `ErrorMap`; `source_errors` builds the one a source passes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, BinaryIO

from picpipe.clients.immich import SEARCH_PAGE_SIZE, ErrorMap
from picpipe.clients.immich_models import ImmichAsset, parse_asset
from picpipe.errors import (
    SourceAuthFailed,
    SourceMisconfigured,
    SourceRejected,
    SourceUnavailable,
)

if TYPE_CHECKING:
    from picpipe.clients.immich import ImmichClient


def source_errors(name: str) -> ErrorMap:
    """The client's failures as errors of the source ``name``."""
    return ErrorMap(
        unavailable=lambda detail: SourceUnavailable(source=name, detail=detail),
        rejected=lambda what, detail: SourceRejected(source=name, what=what, detail=detail),
        auth_failed=lambda detail: SourceAuthFailed(source=name, detail=detail),
        misconfigured=lambda detail: SourceMisconfigured(source=name, detail=detail),
    )


def search_page(
    client: ImmichClient,
    *,
    page: int,
    visibility: str,
    updated_after: str | None = None,
    trashed_after: str | None = None,
    album_id: str | None = None,
    page_size: int = SEARCH_PAGE_SIZE,
) -> tuple[list[ImmichAsset], int | None]:
    """One page of one visibility (in one album), oldest first; (assets, next page).
    ``trashed_after`` asks for the assets moved to the trash since then instead."""
    payload: dict[str, Any] = {
        "page": page,
        "size": page_size,
        "order": "asc",
        "visibility": visibility,
        "withExif": True,
    }
    if updated_after is not None:
        payload["updatedAfter"] = updated_after
    if trashed_after is not None:
        payload.update(withDeleted=True, trashedAfter=trashed_after)
    if album_id is not None:
        payload["albumIds"] = [album_id]
    body = client.call("POST", "/search/metadata", what="search", json=payload)
    try:
        found = body["assets"]
        assets = [parse_asset(item) for item in found["items"]]
        following = found.get("nextPage")
        return assets, int(following) if following is not None else None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise client.errors.rejected("search", f"unexpected answer ({exc!r})") from exc


def download_original(client: ImmichClient, asset_id: str, target: BinaryIO) -> int | None:
    """Stream the original into ``target``; the bytes written, None when there is no such
    asset. Nothing is hashed here: the import's one read of the file checks the SHA-1
    beside its SHA-256 (`pipeline/stages.py` hash stage), so the bytes are hashed once."""
    written = 0
    with client.open_original(asset_id) as chunks:
        if chunks is None:
            return None
        for chunk in chunks:
            target.write(chunk)
            written += len(chunk)
    return written
