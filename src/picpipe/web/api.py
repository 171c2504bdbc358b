"""The JSON API under ``/api``: thin handlers that parse, ask the catalog, shape the answer.

``/api/assets`` pages with an opaque ``cursor`` (keyset over taken time and sha256, newest
first) so page 1,000 costs what page 1 does. Asset bytes (``/api/assets/{sha256}/{size}``) come
from the media server with strong ETags and immutable caching; the JSON answers here change
as the catalog does and say ``no-store``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
import time
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response  # noqa: TC002 - FastAPI reads return annotations

from picpipe.catalog import browse
from picpipe.catalog.browse import AssetFilter
from picpipe.catalog.duplicates import payload_groups
from picpipe.catalog.queries import asset_counts, find_asset, recent_sessions, session_failures
from picpipe.catalog.queries import source_summaries as _source_summaries
from picpipe.hashing import is_sha256
from picpipe.library.layout import THUMB_SIZES, thumb_folder
from picpipe.web import shapes
from picpipe.web.auth import require_read
from picpipe.web.context import WebContext, get_context

if TYPE_CHECKING:
    from pathlib import Path


Context = Annotated[WebContext, Depends(get_context)]
MAX_PAGE = 500
STATS_TTL = 300.0  # seconds between walks of the thumbnail and cache folders
NO_STORE = {"Cache-Control": "no-store"}

router = APIRouter(prefix="/api", tags=["api"], dependencies=[Depends(require_read)])


# -- assets --------------------------------------------------------------------------------


@router.get("/assets", summary="Assets, newest first, filtered and paged")
def list_assets(
    ctx: Context,
    taken_from: Annotated[
        date | None, Query(alias="from", description="taken on or after (local date)")
    ] = None,
    taken_to: Annotated[
        date | None, Query(alias="to", description="taken on or before (local date)")
    ] = None,
    camera: Annotated[
        str | None, Query(max_length=200, description="make, model or 'make model'")
    ] = None,
    kind: Literal["photo", "raw", "video", "unknown"] | None = None,
    source: Annotated[str | None, Query(max_length=400, description="source name")] = None,
    album: Annotated[str | None, Query(max_length=400, description="album name or id")] = None,
    keyword: Annotated[str | None, Query(max_length=200, description="one whole keyword")] = None,
    person: Annotated[
        str | None, Query(max_length=200, description="a person's name (face region)")
    ] = None,
    rating: Annotated[int | None, Query(ge=-1, le=5, description="rated at least this")] = None,
    label: Annotated[str | None, Query(max_length=64, description="colour label")] = None,
    place: Annotated[
        str | None, Query(max_length=200, description="city, region or country name")
    ] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="text in title, description or keywords")
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> JSONResponse:
    """``{"assets": [...], "next_cursor": "…" | null}``; pass ``next_cursor`` back as
    ``cursor`` for the next page (with the same filters)."""
    where = AssetFilter(
        taken_from=taken_from,
        taken_to=taken_to,
        camera=camera,
        kinds=(kind,) if kind else (),
        source=source,
        album=album,
        keyword=keyword,
        person=person,
        min_rating=rating,
        label=label,
        text=q,
        place=place,
    )
    after = decode_cursor(cursor) if cursor else None
    with ctx.catalog.session() as db:
        rows = browse.page_assets(db, where, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].taken_local, rows[-1].sha256) if more else None
    body = {"assets": [shapes.summary(a) for a in rows], "next_cursor": next_cursor}
    return JSONResponse(body, headers=NO_STORE)


@router.get("/duplicates", summary="Same picture, different metadata (payload hash groups)")
def duplicates(
    ctx: Context,
    after: Annotated[
        str | None, Query(max_length=64, description="last payload_sha256 of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> JSONResponse:
    """``{"groups": [{"payload_sha256", "assets": [...]}], "next_after": "…" | null}``: assets
    whose coded image is equal while their bytes differ; nothing is merged."""
    with ctx.catalog.session() as db:
        groups = payload_groups(db, limit=limit + 1, after=after or "")
    more = len(groups) > limit
    groups = groups[:limit]
    body = {
        "groups": [
            {"payload_sha256": g.payload_sha256, "assets": [shapes.summary(a) for a in g.assets]}
            for g in groups
        ],
        "next_after": groups[-1].payload_sha256 if more else None,
    }
    return JSONResponse(body, headers=NO_STORE)


def encode_cursor(taken: datetime, sha256: str) -> str:
    raw = json.dumps([taken.isoformat(), sha256], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (taken_local, sha256) a cursor stands for; 400 when it was not made by us."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        taken, sha256 = json.loads(raw)
        when = datetime.fromisoformat(taken)
        if not isinstance(sha256, str) or not is_sha256(sha256) or when.tzinfo is not None:
            raise ValueError(sha256)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise HTTPException(400, "invalid cursor; use next_cursor from a previous page") from exc
    return when, sha256


@router.get("/assets/{sha256}", summary="One asset: metadata, provenance, replicas")
def asset_detail(ctx: Context, sha256: str) -> JSONResponse:
    """Metadata, every source file that held these bytes, replicas with their verification,
    albums and the other halves of a Live Photo or RAW+JPEG pair."""
    key = _key(sha256)
    with ctx.catalog.session() as db:
        asset = find_asset(db, key)
        if asset is None:
            raise HTTPException(404, "no such asset")
        body = shapes.detail(asset) | {
            "provenance": browse.provenance(db, key),
            "replicas": browse.replicas(db, key),
            "albums": browse.asset_albums(db, key),
            "pair": browse.pair_members(db, asset.pair_id, besides=key) if asset.pair_id else [],
        }
    return JSONResponse(_jsonable(body), headers=NO_STORE)


@router.get(
    "/assets/{sha256}/{size}",
    summary="An asset at a size",
    response_class=JSONResponse,
    responses={
        200: {"content": {"image/jpeg": {}, "application/octet-stream": {}}},
        206: {"description": "a byte range (videos)"},
        304: {"description": "not modified (ETag)"},
    },
)
async def asset_bytes(
    request: Request,
    ctx: Context,
    sha256: str,
    size: Literal["tiny", "small", "medium", "full"],
    jpeg: Annotated[
        bool, Query(description="full size as an upright JPEG (HEIC, RAW, TIFF…)")
    ] = False,
) -> Response:
    """Thumbnails (``tiny`` 150, ``small`` 500, ``medium`` 1920x1080, upright JPEG) or the
    ``full`` original (HTTP Range for videos). Strong ETag, immutable caching; 503 when the
    original cannot be reached (library down, no replica)."""
    response: Response = await ctx.media.respond(request, _key(sha256), size, as_jpeg=jpeg)
    return response


def _key(sha256: str) -> str:
    key = sha256.lower()
    if not is_sha256(key):
        raise HTTPException(404, "no such asset")
    return key


# -- collections ---------------------------------------------------------------------------


@router.get("/albums", summary="Albums with their size and cover")
def albums(ctx: Context) -> JSONResponse:
    with ctx.catalog.session() as db:
        rows = browse.albums(db)
    return JSONResponse({"albums": rows}, headers=NO_STORE)


@router.get("/sessions", summary="Recent sessions with their failed files")
def sessions(ctx: Context, limit: Annotated[int, Query(ge=1, le=200)] = 20) -> JSONResponse:
    """Newest first; each with counts and up to 100 failed files with their reasons."""
    with ctx.catalog.session() as db:
        rows = [
            {
                "id": run.id,
                "kind": run.kind,
                "device": run.device,
                "status": run.status,
                "started_at": _utc(run.started_at),
                "ended_at": _utc(run.ended_at),
                "seen": run.seen,
                "new": run.new,
                "duplicate": run.duplicate,
                "unchanged": run.unchanged,
                "failed": run.failed,
                "skipped": run.skipped,
                "bytes": run.bytes,
                "failures": [
                    {"path": path, "reason": reason}
                    for path, reason in session_failures(db, run.id, 100)
                ],
            }
            for run in recent_sessions(db, limit)
        ]
    return JSONResponse({"sessions": rows}, headers=NO_STORE)


@router.get("/stats", summary="Storage: counts and bytes, like `picpipe stats`")
def stats(ctx: Context) -> JSONResponse:
    """Photos, RAW files and videos; originals, thumbnails and cache as count and bytes
    (folders are measured at most every 5 minutes); per source."""
    with ctx.catalog.session() as db:
        counts = asset_counts(db)
        per_source = _source_summaries(db)
    usage = _folder_usage(ctx)
    body: dict[str, Any] = {
        "photos": counts.get("photo", {}).get("count", 0),
        "raw": counts.get("raw", {}).get("count", 0),
        "videos": counts.get("video", {}).get("count", 0),
        "originals": {
            "count": sum(v["count"] for v in counts.values()),
            "bytes": sum(v["bytes"] for v in counts.values()),
        },
        "thumbnails": usage["thumbnails"],
        "cache": usage["cache"],
        "sources": [
            {k: s[k] for k in ("name", "kind", "files", "bytes", "imported", "duplicate", "failed")}
            for s in per_source
        ],
    }
    return JSONResponse(body, headers=NO_STORE)


_usage_lock = threading.Lock()


def _folder_usage(ctx: WebContext) -> dict[str, Any]:
    with _usage_lock:
        cached = ctx.extras.get("api.folder_usage")
        if cached is not None and time.monotonic() - cached[0] < STATS_TTL:
            return dict(cached[1])
        home = ctx.home_root
        thumbs = {size: _tree_usage(home / thumb_folder(size)) for size in THUMB_SIZES}
        usage = {
            "thumbnails": {
                "count": sum(t["count"] for t in thumbs.values()),
                "bytes": sum(t["bytes"] for t in thumbs.values()),
                "by_size": thumbs,
            },
            "cache": _tree_usage(home / "cache"),
        }
        ctx.extras["api.folder_usage"] = (time.monotonic(), usage)
        return usage


def _tree_usage(root: Path) -> dict[str, int]:
    count = size = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                size += os.stat(os.path.join(folder, name)).st_size
                count += 1
            except OSError:
                continue
    return {"count": count, "bytes": size}


def _utc(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value is not None else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return _utc(value)
    return value
