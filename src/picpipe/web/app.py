"""``create_app(settings)``: the FastAPI application, built fresh for each call.

No module-level app or state: the catalog, the media server and the token guard live on
``app.state`` (``ctx``, ``guard``) and are closed when the application shuts down.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from picpipe import __version__
from picpipe.catalog.db import open_catalog
from picpipe.web import api, auth, compat, problems
from picpipe.web.auth import SESSION_SECONDS, Guard, require_read
from picpipe.web.context import WebContext
from picpipe.web.hosts import HostCheck, HostPolicy
from picpipe.web.sessions import SessionStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from picpipe.config import Settings

STATIC = Path(__file__).with_name("static")

# Sent on every answer: browsers must not guess content types, and a kiosk URL that carries
# ``?token=`` must not leak to other sites through the Referer header.
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """Pure ASGI middleware (no per-request task or body buffering, unlike BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *_SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: Settings) -> FastAPI:
    """The picpipe web application for ``settings``.

    Opens the catalog (migrating it, like every command) and the media server now, so a
    broken configuration fails before the server listens; both are closed on shutdown.
    Raises CatalogError when the catalog cannot be opened.
    """
    from picpipe.web import live, metrics, pages
    from picpipe.web.fastpath import FastThumbs
    from picpipe.web.media import MediaServer

    catalog = open_catalog(settings.catalog_url)
    try:
        media = MediaServer(settings, catalog)
    except BaseException:
        catalog.close()
        raise
    ctx = WebContext(
        settings=settings,
        catalog=catalog,
        library_root=settings.library_root,
        home_root=settings.home_root,
        media=media,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            media.close()
            catalog.close()

    app = FastAPI(
        title="picpipe",
        version=__version__,
        description="Photos from the picpipe library: compatibility endpoints, JSON API, pages.",
        lifespan=lifespan,
        # "/files/" is not "/files": no redirect that echoes a crafted path back.
        redirect_slashes=False,
        # The documentation needs a token like everything else, so it is added below.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.ctx = ctx
    store = SessionStore(catalog, lifetime=timedelta(seconds=SESSION_SECONDS))
    app.state.guard = Guard.from_settings(settings, store)
    problems.install(app)
    app.add_middleware(SecurityHeaders)
    # Remembered thumbnails are answered before routing, after the same token check every
    # route makes (see web/fastpath.py)…
    app.add_middleware(FastThumbs, memo=media.thumbs, guard=app.state.guard)
    # …but only for a Host this server answers to (DNS rebinding) and, for state changes,
    # from its own origin (web/hosts.py)…
    app.add_middleware(HostCheck, policy=HostPolicy(settings.serve.allowed_hosts))
    # …and outermost: whatever fails unexpectedly is one log line and a 500 without details.
    app.add_middleware(problems.CatchAll)

    app.include_router(compat.router)
    app.include_router(api.router)
    app.include_router(auth.router)
    app.include_router(pages.router)
    app.include_router(live.router)
    app.include_router(metrics.router)
    _add_docs(app)
    app.mount("/static", StaticFiles(directory=STATIC, html=False, check_dir=False), "static")
    return app


def _add_docs(app: FastAPI) -> None:
    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require_read)])
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi(), headers={"Cache-Control": "no-store"})

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(require_read)])
    def docs() -> HTMLResponse:
        # Swagger UI from the swagger-ui-bundle package, served here: /docs works offline.
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="picpipe API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )

    # Guarded like /docs (the login cookie goes with the page's requests): the public routes
    # stay the few SECURITY.md lists.
    @app.get("/docs/assets/{name}", include_in_schema=False, dependencies=[Depends(require_read)])
    def docs_asset(name: str) -> FileResponse:
        if name not in _DOCS_ASSETS:
            raise HTTPException(status_code=404)
        return FileResponse(
            Path(swagger_ui_path) / name, headers={"Cache-Control": "max-age=86400"}
        )


_DOCS_ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"})


__all__ = ["create_app"]
