"""The legacy endpoints existing dashboards and scripts call; their shapes are frozen.

``/files`` serves a random photo with a per-client no-repeat shuffle (kept in the catalog, so
a wall frame that runs for months sees every photo once per round across restarts);
``/files/{name}`` one photo; ``/files/list``, ``/folders``, ``/cache/stats``, ``/health``,
``/watcher/status`` and ``/`` report. Only ``/health`` answers without a token.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response  # noqa: TC002 - FastAPI reads return annotations

from picpipe import __version__
from picpipe.catalog import browse
from picpipe.catalog.browse import AssetFilter
from picpipe.catalog.queries import find_asset
from picpipe.catalog.runs import WATCH_KIND, active_runs
from picpipe.catalog.shuffle import Shuffle
from picpipe.catalog.source_albums import asset_by_source_key, source_keys
from picpipe.errors import CatalogError
from picpipe.library.marker import library_problem
from picpipe.web import shapes
from picpipe.web.auth import OPEN_WARNING, guard_of, require_read, wants_html
from picpipe.web.context import WebContext, get_context

if TYPE_CHECKING:
    from collections.abc import Callable

    from picpipe.catalog.models import Asset

log = logging.getLogger(__name__)

Context = Annotated[WebContext, Depends(get_context)]
Size = Literal["tiny", "small", "medium", "full"]
DEFAULT_CLIENT = "default"
CLIENT_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
_SHA_NAME = re.compile(r"^([0-9a-fA-F]{64})(\.jpe?g)?$", re.IGNORECASE)
HEALTH_TIMEOUT = 3.0  # seconds; a hung NAS mount must not hang the health check
WATCHER = "not running"  # no `picpipe watch` runs: imports run on demand

router = APIRouter(tags=["compatibility"])
protected = APIRouter(tags=["compatibility"], dependencies=[Depends(require_read)])


# -- random and single photos --------------------------------------------------------------


def _files_filter(
    album: Annotated[str | None, Query(max_length=400, description="album name or id")] = None,
    source: Annotated[str | None, Query(max_length=400, description="source name")] = None,
    orientation: Annotated[
        Literal["landscape", "portrait"] | None,
        Query(description="as displayed (EXIF orientation applied); squares match neither"),
    ] = None,
    on_this_day: Annotated[
        bool, Query(description="only photos taken on today's month and day, any year")
    ] = False,
) -> AssetFilter:
    today = datetime.now()  # the server's local date, like the photos' local capture times
    return AssetFilter(
        album=album,
        source=source,
        orientation=orientation,
        month_day=(today.month, today.day) if on_this_day else None,
        photos_only=True,
    )


FilesFilter = Annotated[AssetFilter, Depends(_files_filter)]
Client = Annotated[
    str,
    Query(
        pattern=CLIENT_PATTERN,
        description="the caller's name; each name has its own no-repeat shuffle",
    ),
]
SizeQuery = Annotated[Size, Query(description="thumbnail size, or the full picture as JPEG")]


async def _pick(ctx: WebContext, client: str, where: AssetFilter) -> Asset:
    def pick() -> Asset | None:
        with ctx.catalog.session() as db:
            # Naive UTC like every catalog time (imported_at is compared with it).
            return Shuffle(client, where).pick(db, now=datetime.now(UTC).replace(tzinfo=None))

    asset = await run_in_threadpool(pick)
    if asset is None:
        raise HTTPException(404, "no photo matches these filters")
    return asset


@protected.get(
    "/files",
    summary="A random photo (JPEG)",
    response_class=JSONResponse,
    responses={200: {"content": {"image/jpeg": {}}, "description": "the photo"}},
)
async def random_photo(
    request: Request,
    ctx: Context,
    where: FilesFilter,
    size: SizeQuery = "medium",
    client: Client = DEFAULT_CLIENT,
) -> Response:
    """The next photo of ``client``'s shuffle: every matching photo once before any repeats.

    The caption comes along as ``X-Picpipe-Key``, ``-Taken``, ``-Name``, ``-Camera``, ``-Lat``
    and ``-Lon`` headers (text %-encoded UTF-8). HEIC, RAW and other formats come as upright JPEG.
    """
    asset = await _pick(ctx, client, where)
    response: Response = await ctx.media.respond(request, asset.sha256, size, as_jpeg=True)
    response.headers.update(shapes.caption_headers(asset))
    # The URL names no photo, so no cache may keep the answer; the photo's own URL may.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Location"] = f"/files/{asset.sha256}.jpg?size={size}"
    return response


@protected.get("/files/random.json", summary="Pick a random photo; its caption and URL as JSON")
async def random_photo_info(
    ctx: Context,
    where: FilesFilter,
    size: SizeQuery = "medium",
    client: Client = DEFAULT_CLIENT,
) -> JSONResponse:
    """Advances the same shuffle as ``/files`` and answers the pick's caption and its ``url``
    (for pages that show the caption next to the picture)."""
    asset = await _pick(ctx, client, where)
    return JSONResponse(shapes.caption(asset, size=size), headers={"Cache-Control": "no-store"})


@protected.get("/files/list", summary="The names of every photo /files can serve")
def list_files(
    ctx: Context,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 100_000,
) -> JSONResponse:
    """``{"total_files": N, "files": ["<sha256>.jpg", …]}`` in key order; each name works as
    ``/files/<name>``. With ``serve.compat: photos-sync`` the bare list photos-sync answered:
    ``["<cache_key>.jpg", …]`` (Synology album members by their cache key)."""
    with ctx.catalog.session() as db:
        total, keys = browse.photo_keys(db, offset=offset, limit=limit)
        if ctx.settings.serve.compat == "photos-sync":
            named = source_keys(db)
            names = [f"{named.get(key, key)}.jpg" for key in keys]
            return JSONResponse(names, headers={"Cache-Control": "no-store"})
    return JSONResponse(
        {"total_files": total, "files": [f"{key}.jpg" for key in keys]},
        headers={"Cache-Control": "no-store"},
    )


@protected.get(
    "/files/{name}",
    summary="One photo by key (JPEG)",
    response_class=JSONResponse,
    responses={200: {"content": {"image/jpeg": {}}, "description": "the photo"}},
)
async def one_photo(
    request: Request,
    ctx: Context,
    name: str,
    size: SizeQuery = "medium",
) -> Response:
    """``<sha256>.jpg`` (or the bare sha256), or a photo's original file name if only one photo
    has it (409 when several do). Served as upright JPEG, with the caption headers."""
    sha256 = await run_in_threadpool(_resolve_name, ctx, name)
    asset = await run_in_threadpool(_load, ctx, sha256)
    if asset is None:
        raise HTTPException(404, "no such photo")
    response: Response = await ctx.media.respond(request, sha256, size, as_jpeg=True)
    response.headers.update(shapes.caption_headers(asset))
    return response


def _resolve_name(ctx: WebContext, name: str) -> str:
    if match := _SHA_NAME.match(name):
        return match.group(1).lower()
    if not _plain_name(name):
        raise HTTPException(404, "no such photo")
    with ctx.catalog.session() as db:
        # photos-sync's names: the Synology cache key of an album member, + ".jpg".
        keyed = asset_by_source_key(db, name.removesuffix(".jpg"))
        if keyed is not None:
            return keyed
        found = browse.photos_named(db, name)
    if not found:
        raise HTTPException(404, "no such photo")
    if len(found) > 1:
        raise HTTPException(409, "several photos have this name; ask for one by its sha256 key")
    return found[0]


def _plain_name(name: str) -> bool:
    """A file name and nothing else: no separators, no dot names, no control characters."""
    return (
        0 < len(name) <= 255
        and name not in (".", "..")
        and not any(ch in "/\\" or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name)
    )


def _load(ctx: WebContext, sha256: str) -> Asset | None:
    with ctx.catalog.session() as db:
        asset = find_asset(db, sha256)
        if asset is None or asset.kind not in ("photo", "raw"):
            return None
        return asset


# -- reports -------------------------------------------------------------------------------


@protected.get("/", summary="Service information")
def service_info(request: Request) -> Response:
    """What this server is and where its parts are. A browser is sent to the dashboard."""
    if wants_html(request):
        return RedirectResponse("/dashboard", status_code=307)
    return JSONResponse(
        {
            "service": "picpipe",
            "version": __version__,
            "status": "ok",
            "docs": "/docs",
            "api": "/api",
            "pages": {"dashboard": "/dashboard", "gallery": "/gallery", "kiosk": "/kiosk"},
            "endpoints": [
                "/files",
                "/files/random.json",
                "/files/{key}.jpg",
                "/files/list",
                "/folders",
                "/cache/stats",
                "/health",
                "/watcher/status",
            ],
        },
        headers={"Cache-Control": "no-store"},
    )


@router.get("/health", summary="Liveness and catalog health (no token needed)")
async def health(ctx: Context, request: Request) -> JSONResponse:
    """``{"status": "ok"|"error", "database": "ok"|"error", "watcher": …, "library": …,
    "library_problem": None|"…"}``; 503 when the catalog does not answer, or when the library
    the catalog knows is gone (a NAS unmounted while serving: ``library_problem`` says so in
    the words of ``status --json``; thumbnails still serve then). ``library`` is
    ``unreachable`` when the library folder cannot be seen."""
    database = await _probe(lambda: _database_ok(ctx))
    library = await _probe(lambda: (ctx.library_root / "originals").is_dir())
    problem = await _library_problem(ctx) if database else None
    healthy = database and problem is None
    watching = await _probe(lambda: bool(_watchers(ctx))) if database else False
    body: dict[str, Any] = {
        "status": "ok" if healthy else "error",
        "database": "ok" if database else "error",
        "watcher": "running" if watching else WATCHER,
        "library": "ok" if library and problem is None else "unreachable",
        "library_problem": problem,
    }
    if guard_of(request).open:
        body["warning"] = OPEN_WARNING
    return JSONResponse(
        body, status_code=200 if healthy else 503, headers={"Cache-Control": "no-store"}
    )


async def _library_problem(ctx: WebContext) -> str | None:
    """`library_problem` in a worker thread; a hung mount counts as a problem, not a hang."""
    try:
        problem = await asyncio.wait_for(
            asyncio.to_thread(library_problem, ctx.library_root, ctx.catalog), HEALTH_TIMEOUT
        )
    except TimeoutError:
        return "the library does not answer (a hung mount?)"
    except (OSError, SQLAlchemyError, CatalogError):
        return None  # the database probe reports those
    # /health answers without a token: no local path in it (the server's log has the path).
    return None if problem is None else problem.replace(str(ctx.library_root), "<library>")


async def _probe(check: Callable[[], object]) -> bool:
    """``check()`` in a worker thread; False when it fails or takes too long."""
    try:
        return bool(await asyncio.wait_for(asyncio.to_thread(check), HEALTH_TIMEOUT))
    except (TimeoutError, OSError, SQLAlchemyError, CatalogError):
        return False


def _database_ok(ctx: WebContext) -> bool:
    with ctx.catalog.session() as db:
        return browse.database_ok(db)


@protected.get("/folders", summary="The library's day folders")
def folders(ctx: Context) -> JSONResponse:
    """``{"total_folders": N, "folders": [{"id": "YYYY-MM-DD", "path": "originals/YYYY/MM/DD",
    "count": n}]}``: the date folders of the library (paths relative to the library root)."""
    with ctx.catalog.session() as db:
        rows = browse.day_folders(db)
    items = [
        {"id": path.removeprefix("originals/").replace("/", "-"), "path": path, "count": count}
        for path, count in rows
    ]
    watched = [
        {k: w.get(k) for k in ("source", "kind", "path", "mode", "events", "queue", "last_error")}
        for w in _watchers(ctx)
    ]
    return JSONResponse(
        {"total_folders": len(items), "folders": items, "watched": watched},
        headers={"Cache-Control": "no-store"},
    )


@protected.get("/cache/stats", summary="Full-resolution cache utilisation")
def cache_stats(ctx: Context) -> JSONResponse:
    """Entries, bytes and limits of the full-resolution cache, and the thumbnail memory;
    with photos-sync's ``indexed`` (photos ``/files`` can serve), ``cached``, ``size_bytes``
    and ``max_bytes`` alongside."""
    stats = ctx.media.cache_stats()
    with ctx.catalog.session() as db:
        indexed, _keys = browse.photo_keys(db, offset=0, limit=1)
    stats |= {"indexed": indexed, "cached": stats["entries"], "size_bytes": stats["bytes"]}
    return JSONResponse(stats, headers={"Cache-Control": "no-store"})


@protected.get("/watcher/status", summary="Folder watcher state")
def watcher_status(ctx: Context) -> JSONResponse:
    """The live sources `picpipe watch` runs (in any process sharing the catalog): per
    source what is watched, how (``mode`` events or polling, and why), events seen, queue
    length, last error; and the configured sources."""
    watchers = _watchers(ctx)
    return JSONResponse(
        {
            "running": bool(watchers),
            "status": "running" if watchers else WATCHER,
            "detail": None if watchers else "start `picpipe watch`; else `picpipe import`",
            "watchers": watchers,
            "sources": sorted(ctx.settings.sources),
        },
        headers={"Cache-Control": "no-store"},
    )


def _watchers(ctx: WebContext) -> list[dict[str, Any]]:
    """The status each running watcher stores with its lease heartbeat (`jobs/watch.py`)."""
    with ctx.catalog.session() as db:
        runs = [r for r in active_runs(db, host=ctx.settings.runs.host) if r.kind == WATCH_KIND]
    out: list[dict[str, Any]] = []
    for run in runs:
        status = dict(run.progress or {})
        for internal in ("stage", "done", "total"):
            status.pop(internal, None)
        status.update(
            run_id=run.id, host=run.host, pid=run.pid, heartbeat_at=run.as_dict()["heartbeat_at"]
        )
        out.append(status)
    return out


router.include_router(protected)
