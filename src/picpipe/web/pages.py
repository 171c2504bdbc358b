"""The HTML pages: dashboard, gallery and kiosk (Jinja2 templates plus a little plain JS).

The templates only lay the page out; the data comes from the JSON API (``/api/assets``,
``/api/status``, ``/api/events``, ``/files``) so that the pages and other clients see the same
thing. Static files (``static/``) are served by the application's ``/static`` mount; they hold
code and style only, never library data.

Every page answer carries a Content-Security-Policy that allows scripts, styles and images
from this server only: the pages work without internet access, and a stray string in the
catalog cannot become markup (Jinja autoescaping, and the scripts build nodes with
``textContent``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from picpipe import __version__
from picpipe.hashing import sha256_file
from picpipe.web.auth import require_read
from picpipe.web.context import WebContext, get_context
from picpipe.web.live import status_feed

if TYPE_CHECKING:
    from fastapi.responses import Response

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

GALLERY_PAGE_SIZE = 120  # assets per /api/assets request: a few screens of thumbnails

_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)

router = APIRouter(tags=["pages"], include_in_schema=False)
ReadAccess = [Depends(require_read)]


@functools.cache
def _environment() -> Environment:
    # Built on first use, not at import (importing picpipe does no work).
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = _static_url
    return env


@functools.cache
def _static_version(name: str) -> str:
    return sha256_file(STATIC / name)[0][:12]


def _static_url(name: str) -> str:
    """``/static/<name>?v=<content hash>``: a changed file gets a new URL after an upgrade."""
    return f"/static/{name}?v={_static_version(name)}"


def render(name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """Render ``templates/<name>`` with ``values`` as an HTML answer with the page headers."""
    html = _environment().get_template(name).render(version=__version__, **values)
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store"},
    )


Context = Annotated[WebContext, Depends(get_context)]


@router.get("/favicon.ico")
def favicon() -> Response:
    """The icon browsers ask for on every page, the log-in form included (no token needed:
    it is part of the program, not of the library)."""
    return FileResponse(
        STATIC / "favicon.svg",
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@router.get("/ui", dependencies=ReadAccess)
def ui() -> Response:
    """The pages' entry point (``/`` is the JSON service information)."""
    return RedirectResponse("/dashboard", status_code=307)


@router.get("/dashboard", response_class=HTMLResponse, dependencies=ReadAccess)
def dashboard(ctx: Context) -> HTMLResponse:
    """Status and live progress, totals, recent sessions, failures and replication safety.

    The first status (from the application's shared live feed, so reloads stay cheap at
    100k assets) is embedded in the page; the page then follows ``/api/events`` and falls
    back to polling ``/api/status``.
    """
    _version, status = status_feed(ctx).current()
    return render("dashboard.html", page="dashboard", status=status)


@router.get("/gallery", response_class=HTMLResponse, dependencies=ReadAccess)
def gallery(
    request: Request,
    page_size: Annotated[int, Query(ge=10, le=500)] = GALLERY_PAGE_SIZE,
) -> HTMLResponse:
    """Thumbnails grouped by day with infinite scroll; a viewer with metadata and provenance.

    ``page_size`` assets are fetched per request. Other query parameters are passed on to
    ``/api/assets`` as filters (``from``, ``to``, ``camera``, ``kind``, ``source``, ``album``).
    """
    filters = {
        k: v
        for k, v in request.query_params.items()
        if k in ("from", "to", "camera", "kind", "source", "album")
    }
    return render("gallery.html", page="gallery", filters=filters, page_size=page_size)


@router.get("/kiosk", response_class=HTMLResponse, dependencies=ReadAccess)
def kiosk(
    album: Annotated[str | None, Query(max_length=400)] = None,
    interval: Annotated[float, Query(ge=2, le=86400)] = 30,
    size: Annotated[str, Query(pattern="^(tiny|small|medium|full)$")] = "medium",
    client: Annotated[str, Query(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")] = "kiosk",
    source: Annotated[str | None, Query(max_length=400)] = None,
    orientation: Annotated[str | None, Query(pattern="^(landscape|portrait)$")] = None,
    on_this_day: bool = False,
    caption: bool = True,
) -> HTMLResponse:
    """A full-screen slideshow for a wall tablet: a random photo every ``interval`` seconds.

    Each photo comes from ``/files/random.json`` (then its ``url``) with the same ``album``,
    ``source``, ``orientation`` and ``on_this_day`` filters as ``/files`` and the ``client``
    name, which has its own no-repeat shuffle; the caption shows date, place and camera
    (``caption=false`` hides it). The next photo is loaded while the current one shows.
    """
    settings = {
        "album": album,
        "interval": interval,
        "size": size,
        "client": client,
        "source": source,
        "orientation": orientation,
        "on_this_day": on_this_day,
        "caption": caption,
    }
    return render("kiosk.html", page="kiosk", kiosk=settings)
