"""Errors → HTTP: the only place an exception becomes a status code and a JSON body.

Every error answer is ``{"error": "<what went wrong, for a person>", "code": "<stable word>"}``.
Messages never carry file system paths or secrets: picpipe errors name files by their paths,
so every path-like field is cut to its last component and the library and home roots are
replaced by ``<library>`` / ``<home>`` before a message leaves. Anything that is not a picpipe or
HTTP error is answered with a generic 500 and logged in one line (`CatchAll`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from picpipe.errors import (
    CatalogError,
    ConfigError,
    DependencyMissing,
    DestinationError,
    DestinationUnavailable,
    ItemError,
    LibraryError,
    PicpipeError,
    SourceError,
    SourceUnavailable,
)
from picpipe.redact import mask_url

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from starlette.responses import Response
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

# Most specific first is not needed: the lookup walks the exception's MRO.
_STATUS: dict[type[PicpipeError], tuple[int, str]] = {
    PicpipeError: (500, "internal"),
    ConfigError: (500, "configuration"),
    DependencyMissing: (503, "dependency_missing"),
    CatalogError: (503, "catalog_unavailable"),
    LibraryError: (503, "library_unavailable"),
    ItemError: (422, "item_unreadable"),
    SourceError: (502, "source_error"),
    SourceUnavailable: (503, "source_unavailable"),
    DestinationError: (502, "destination_error"),
    DestinationUnavailable: (503, "destination_unavailable"),
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    410: "gone",
    413: "too_large",
    416: "range_not_satisfiable",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal",
    502: "bad_gateway",
    503: "unavailable",
    504: "timeout",
}

RETRY_AFTER_SECONDS = 30


def problem(status: int, error: str, code: str | None = None, **headers: str) -> JSONResponse:
    """The one shape of an error answer."""
    body = {"error": error, "code": code or _HTTP_CODES.get(status, "error")}
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store", **headers})


def status_of(exc: PicpipeError) -> tuple[int, str]:
    """The HTTP status and code word for a picpipe error (nearest mapped base class)."""
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 500, "internal"


def public_message(exc: PicpipeError, roots: tuple[str, ...] = ()) -> str:
    """``exc``'s message fit for a client: file system paths cut to their last part, the
    library and home roots shown as ``<library>`` / ``<home>``, database URLs masked."""
    message = exc.message
    replacements: dict[str, str] = {}
    for value in exc.fields.values():
        if isinstance(value, PurePath) or (isinstance(value, str) and _is_path(value)):
            replacements[str(value)] = PurePath(value).name or "…"
        elif isinstance(value, str) and "://" in value:
            replacements[value] = mask_url(value)
    # The roots read better as labels than as their last folder's name.
    replacements.update(zip(roots, ("<library>", "<home>"), strict=False))
    for text in sorted(replacements, key=len, reverse=True):
        if text:
            message = message.replace(text, replacements[text])
    # Paths inside free text (a `detail`): keep only the last component.
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1) or "…", message)


# An absolute POSIX path of two or more parts not preceded by a URL scheme or a word.
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.<])/(?:[^\s/'\"<>]+/)+([^\s/'\"<>]*)")


def _is_path(text: str) -> bool:
    return text.startswith(("/", "~", "./", "../")) or (os.sep in text and " " not in text)


def _roots(request: Request) -> tuple[str, ...]:
    ctx = getattr(request.app.state, "ctx", None)
    if ctx is None:
        return ()
    return (str(ctx.library_root), str(ctx.home_root))


async def _picpipe_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PicpipeError)
    status, code = status_of(exc)
    if status >= 500:
        log.warning("%s %s failed: %s", request.method, request.url.path, exc.message)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else {}
    return problem(status, public_message(exc, _roots(request)), code, **headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code in (204, 304) or 300 <= exc.status_code < 400:
        # Redirects and "not modified" carry no error body.
        from starlette.responses import Response as PlainResponse

        return PlainResponse(status_code=exc.status_code, headers=headers)
    detail: Any = exc.detail
    if isinstance(detail, dict) and "error" in detail:
        body_error, code = str(detail["error"]), detail.get("code")
    else:
        body_error, code = str(detail), None
    return problem(exc.status_code, body_error, code, **headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if errors and all(tuple(e.get("loc", ()))[:1] == ("path",) for e in errors):
        # A path that names nothing (a size or key out of range) is simply not there.
        return problem(404, "not found")
    first = errors[0] if errors else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = first.get("msg", "invalid value")
    return problem(422, f"invalid request: {where}: {message}" if where else message)


INTERNAL_ERROR = "internal error; the server log has the details"


class CatchAll:
    """Pure ASGI middleware: any exception nothing else answered becomes a 500 JSON answer
    without a traceback (to the client) and exactly one log line (on the server).

    Installed outermost among picpipe's middlewares, so it covers the fast path and the host
    check too. Starlette's own ``Exception`` handler would answer and then re-raise, which
    makes the server log a second, multi-line traceback; this one does not re-raise. The log
    line names the exception type and where it was raised, not its message (a message may
    quote a header value or a secret); the traceback follows at DEBUG only.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            log.error(
                "%s %s: internal error (%s at %s)",
                scope.get("method"),
                str(scope.get("path", ""))[:200],
                type(exc).__name__,
                _where(exc),
            )
            log.debug("internal error traceback", exc_info=exc)
            if started:
                return  # the answer is under way; the server closes the connection
            body = json.dumps({"error": INTERNAL_ERROR, "code": "internal"}).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff"),
                (b"referrer-policy", b"same-origin"),
            ]
            await send({"type": "http.response.start", "status": 500, "headers": headers})
            await send({"type": "http.response.body", "body": body})


def _where(exc: BaseException) -> str:
    """``module.py:line`` of the innermost frame that raised ``exc``."""
    tb = exc.__traceback__
    if tb is None:
        return "?"
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{PurePath(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"


def install(app: FastAPI) -> None:
    """Register the handlers on ``app`` (`CatchAll` is installed as a middleware)."""
    app.add_exception_handler(PicpipeError, _picpipe_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
