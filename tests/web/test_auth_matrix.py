"""The auth matrix, generated from the application's own route table.

Every route the app has (API routes, pages, the docs, the static mount) is called with no
token, a wrong token, the read token, the full token, a login cookie and a revoked login
cookie. Only the routes in `PUBLIC` may answer without a token; a route added without a
guard fails `test_every_route_is_guarded` because it is in the table, not in a list here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.routing import Mount

from picpipe.web.app import STATIC, create_app
from picpipe.web.auth import COOKIE, require_write
from tests.web.conftest import TestClient, WebSite, with_serve

FULL = "matrix-full-token-0123456789abcdef"
READ = "matrix-read-token-0123456789abcdef"
PUBLIC = {
    ("GET", "/health"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/logout"),
    ("POST", "/logout"),
    ("GET", "/favicon.ico"),
    ("GET", "/static/{path:path}"),
}


@dataclass(frozen=True)
class RouteCase:
    method: str
    template: str
    writes: bool  # needs the full token (require_write)


def route_table(app: FastAPI) -> Iterator[RouteCase]:
    """Every (method, path template) the application routes, included routers flattened."""

    def walk(routes: list[Any]) -> Iterator[RouteCase]:
        for route in routes:
            if hasattr(route, "effective_route_contexts"):  # FastAPI's included router
                for context in route.effective_route_contexts():
                    yield from _cases(context.path, context.methods, context.dependant)
            elif isinstance(route, Mount):
                yield RouteCase("GET", route.path + "/{path:path}", writes=False)
            elif hasattr(route, "methods"):
                yield from _cases(route.path, route.methods, getattr(route, "dependant", None))

    yield from walk(list(app.routes))


def _cases(path: str, methods: set[str] | None, dependant: Any) -> Iterator[RouteCase]:
    calls = _dependency_calls(dependant)
    for method in sorted(methods or ()):
        if method != "HEAD":
            yield RouteCase(method, path, writes=require_write in calls)


def _dependency_calls(dependant: Any) -> set[Any]:
    found: set[Any] = set()
    stack = list(getattr(dependant, "dependencies", []) or [])
    while stack:
        dep = stack.pop()
        found.add(dep.call)
        stack.extend(dep.dependencies)
    return found


def concrete(template: str, site: WebSite) -> str:
    key = min(site.photos)
    static = next((p.name for p in sorted(STATIC.iterdir()) if p.is_file()), "missing.js")
    values = {"{name}": f"{key}.jpg", "{sha256}": key, "{size}": "small", "{path:path}": static}
    for placeholder, value in values.items():
        template = template.replace(placeholder, value)
    assert "{" not in template, f"no test value for a parameter of {template}"
    return template


def call(http: TestClient, method: str, path: str, headers: dict[str, str]) -> int:
    # Streamed, so the server-sent events route answers its status without being read out.
    with http.stream(method, path, headers=headers, follow_redirects=False) as response:
        return response.status_code


def credentials(http: TestClient) -> dict[str, dict[str, str]]:
    def login() -> str:
        answer = http.post("/login", data={"token": FULL}, follow_redirects=False)
        assert answer.status_code == 303
        value = answer.cookies[COOKIE]
        http.cookies.clear()
        return value

    cookie, revoked = login(), login()
    http.post("/logout", headers={"Cookie": f"{COOKIE}={revoked}"}, follow_redirects=False)
    return {
        "no token": {},
        "wrong token": {"Authorization": "Bearer not-the-token-at-all-0123456789"},
        "read token": {"Authorization": f"Bearer {READ}"},
        "full token": {"X-Picpipe-Token": FULL},
        "cookie": {"Cookie": f"{COOKIE}={cookie}"},
        "revoked cookie": {"Cookie": f"{COOKIE}={revoked}"},
    }


def check_matrix(app: FastAPI, site: WebSite) -> list[str]:
    """Every route × credential; the list of answers that break the rules."""
    wrong: list[str] = []
    with TestClient(app) as http:
        for case in route_table(app):
            path = concrete(case.template, site)
            # Fresh sessions for each route: calling /logout with the cookie ends it.
            for who, headers in credentials(http).items():
                status = call(http, case.method, path, headers)
                where = f"{case.method} {case.template} with {who}: {status}"
                if status >= 500:
                    wrong.append(where)
                elif (case.method, case.template) in PUBLIC:
                    continue
                elif who in ("no token", "wrong token", "revoked cookie"):
                    if status != 401:
                        wrong.append(where)
                elif who == "read token" and case.writes:
                    if status != 403:
                        wrong.append(where)
                elif status in (401, 403):
                    wrong.append(where)
    return wrong


def test_every_route_is_guarded(web_site: WebSite) -> None:
    app = create_app(with_serve(web_site.settings, token=FULL, read_token=READ))
    table = list(route_table(app))
    assert len(table) >= 25  # the table really is the app's (pages, API, docs, static)
    assert not check_matrix(app, web_site)


def test_a_route_without_a_guard_fails_the_matrix(web_site: WebSite) -> None:
    app = create_app(with_serve(web_site.settings, token=FULL, read_token=READ))

    @app.get("/test-forgot-its-guard")
    def unguarded() -> dict[str, bool]:
        return {"open": True}

    assert check_matrix(app, web_site) == [
        "GET /test-forgot-its-guard with no token: 200",
        "GET /test-forgot-its-guard with wrong token: 200",
        "GET /test-forgot-its-guard with revoked cookie: 200",
    ]


@pytest.mark.parametrize("template", ["/health", "/login"])
def test_public_routes_stay_few(template: str) -> None:
    assert ("GET", template) in PUBLIC
    assert len(PUBLIC) == 7  # adding one is a decision: it belongs in SECURITY.md too
