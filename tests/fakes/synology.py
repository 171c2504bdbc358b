"""A fake Synology NAS with Photos (DSM 7), built from NOTES §13; it refuses off-spec requests.

Routes ``/webapi/{query,auth,entry}.cgi`` and ``entry.cgi/<anything>`` (also under ``/photo``),
GET and POST, query and form merged, each value JSON-decoded with a fallback to the raw text
(NOTES §1). Envelope errors as the NAS gives them (HTTP 200, ``success: false``): 101 missing
api/method/version, 102 unknown api, 103 unknown method, 104 version above max, 114 missing
parameter, 120 invalid parameter (also ``limit`` above 5000: the real code is unknown),
119 unknown or expired sid.

Behaviour: API info; login with 400 (bad password), 401 (disabled), 403 + ``errors.types``
(OTP needed), 404 (wrong OTP), device tokens (``device_id``) that skip the OTP later;
``synotoken`` and the ``id`` cookie; sessions by ``_sid`` or cookie, optionally expiring after
``idle_seconds`` (119) or by `expire_sessions`; personal albums (own and shared with the
account, by passphrase), items by ``album_id`` or ``passphrase`` with offset/limit and no total;
the shared space (``SYNO.FotoTeam.*``, items with ``owner_user_id`` 0; 801 when it is off);
thumbnails (JPEG per size; 404 + JSON on a bad cache key); downloads: one id → the bytes,
several → a zip, a Live Photo → a zip of its still and its video.

Faults (`fail_next`): ``http500``, ``slow`` (seconds before answering), ``truncate`` (the body
cut after half, Content-Length promising all of it), ``json_error`` (HTTP 200 JSON error on a
binary endpoint) and ``code`` (an envelope error such as 109), for the next N requests of one
API (or any). Counters: ``calls`` by ``api.method``, ``bytes_sent`` of downloads, ``logins``.
Folders (``Browse.Folder`` get/list, items by ``folder_id``) and older Photos versions
(``max_versions``) too. Records and envelope helpers: `tests.fakes.synology_model`.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import threading
import time
import zipfile
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.synology_model import (
    AUTH_MAX,
    FOLDER_LIMIT,
    PERSONAL_ROOT,
    PHOTO_APIS,
    TEAM_ROOT,
    UNFAULTED,
    FakeAlbum,
    FakeFolder,
    FakeItem,
    Fault,
    Refused,
    decode,
    error,
    ok,
    paging,
)


class FakeSynology:
    """The NAS's state and its ASGI app (``app``); the back door for tests is plain methods."""

    def __init__(self, account: str = "frame", password: str = "s3cret") -> None:
        self.account = account
        self.password = password
        self.otp: str | None = None  # set: 2-step verification on, this is the current code
        self.disabled = False
        self.photos_installed = True
        self.max_versions = dict(PHOTO_APIS)  # lower them to play an older Photos (1.0: all 1)
        self.shared_space = True
        self.idle_seconds: float | None = None
        self.device_ids: set[str] = set()
        self.sessions: dict[str, float] = {}
        self.albums: dict[int, FakeAlbum] = {}
        self.items: dict[int, FakeItem] = {}
        self.folders: dict[int, FakeFolder] = {
            TEAM_ROOT: FakeFolder(TEAM_ROOT, "/", 0, team=True),
            PERSONAL_ROOT: FakeFolder(PERSONAL_ROOT, "/", 0),
        }
        self.calls: Counter[str] = Counter()
        self.logins = 0
        self.bytes_sent = 0
        self._faults: list[Fault] = []
        self._next_id = 1000
        self._lock = threading.Lock()
        routes = [
            Route(f"{prefix}/webapi/{cgi}", self._endpoint, methods=["GET", "POST"])
            for prefix in ("", "/photo")
            for cgi in ("query.cgi", "auth.cgi", "entry.cgi", "entry.cgi/{rest:path}")
        ]
        self.app = Starlette(routes=routes)

    def transport(self) -> httpx.BaseTransport:
        """An in-process httpx transport to the app (starlette's test client seam)."""
        return SyncASGITransport(self.app)

    # -- back door ---------------------------------------------------------------------------

    def add_album(self, name: str, *, passphrase: str = "", owner_user_id: int = 1) -> FakeAlbum:
        with self._lock:
            album = FakeAlbum(
                self._new_id(), name, passphrase=passphrase, owner_user_id=owner_user_id
            )
            self.albums[album.id] = album
            return album

    def add_folder(self, path: str, *, team: bool = False) -> FakeFolder:
        """The folder at ``path`` ("2024/kitchen") in a space, made with its parents."""
        with self._lock:
            folder = self.folders[TEAM_ROOT if team else PERSONAL_ROOT]
            for part in [p for p in path.split("/") if p]:
                name = f"{folder.name.rstrip('/')}/{part}"
                found = [
                    f
                    for f in self.folders.values()
                    if f.parent == folder.id and f.name == name and f.team == team
                ]
                if not found:
                    found = [FakeFolder(self._new_id(), name, folder.id, team)]
                    self.folders[found[0].id] = found[0]
                folder = found[0]
            return folder

    def album(self, name: str) -> FakeAlbum:
        found = [a for a in self.albums.values() if a.name == name]
        return found[0] if found else self.add_album(name)

    def add_item(
        self,
        album: FakeAlbum | None,
        filename: str,
        data: bytes,
        taken: int = 1_700_000_000,
        *,
        shared_space: bool = False,
        video: bytes | None = None,
        folder: FakeFolder | None = None,
    ) -> FakeItem:
        with self._lock:
            team = shared_space or (folder is not None and folder.team)
            item = FakeItem(self._new_id(), filename, data, taken, 0 if team else 1, video)
            item.folder_id = folder.id if folder is not None else 0
            self.items[item.id] = item
            if album is not None:
                album.items.append(item.id)
            return item

    def replace(self, item: FakeItem, data: bytes, taken: int) -> None:
        """The file changed on the NAS: new bytes, re-indexed (its cache key changes)."""
        with self._lock:
            item.data, item.time = data, taken
            item.indexed += 1

    def delete_item(self, item: FakeItem) -> None:
        with self._lock:
            self.items.pop(item.id, None)
            for album in self.albums.values():
                if item.id in album.items:
                    album.items.remove(item.id)

    def delete_album(self, album: FakeAlbum) -> None:
        with self._lock:
            self.albums.pop(album.id, None)

    def expire_sessions(self) -> None:
        with self._lock:
            self.sessions.clear()

    def fail_next(
        self,
        kind: str,
        count: int = 1,
        *,
        api: str | None = None,
        code: int = 109,
        seconds: float = 0.0,
        after: int = 0,
    ) -> None:
        """Fault ``count`` requests of ``api`` (None: any API but SYNO.API.Info and Auth),
        after letting ``after`` of them pass."""
        with self._lock:
            self._faults.append(Fault(kind, count, api, code, seconds, after))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # -- the HTTP surface --------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        params: dict[str, Any] = {k: decode(v) for k, v in request.query_params.items()}
        if request.method == "POST":
            form = await request.form()
            params |= {k: decode(str(v)) for k, v in form.items()}
        api, method, version = params.get("api"), params.get("method"), params.get("version")
        if not api or not method or version is None:
            return error(101)
        self.calls[f"{api}.{method}"] += 1
        fault = self._take_fault(str(api))
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.seconds)
            fault = None
        if fault is not None and fault.kind == "http500":
            return Response(b"<html>500 Internal Server Error</html>", 500, media_type="text/html")
        if fault is not None and fault.kind in ("code", "json_error"):
            return error(fault.code)
        try:
            return self._call(request, str(api), str(method), version, params, fault)
        except Refused as refused:
            return error(refused.code, refused.errors)

    def _call(
        self,
        request: Request,
        api: str,
        method: str,
        version: Any,
        params: dict[str, Any],
        fault: Fault | None,
    ) -> Response:
        if not isinstance(version, int):
            raise Refused(104)
        if api == "SYNO.API.Info":
            if method != "query":
                raise Refused(103)
            return ok(self._info(str(params.get("query", "all"))))
        if api == "SYNO.API.Auth":
            if version > AUTH_MAX:
                raise Refused(104)
            return self._auth(method, params)
        if api not in self.max_versions or not self.photos_installed:
            raise Refused(102)
        if version > self.max_versions[api]:
            raise Refused(104)
        self._check_session(request, params)
        team = api.startswith("SYNO.FotoTeam.")
        if team and not self.shared_space:
            raise Refused(801)
        if api == "SYNO.Foto.Browse.Album":
            return self._albums(method, params)
        if api.endswith(".Browse.Item"):
            return self._items(method, params, team)
        if api.endswith(".Browse.Folder"):
            return self._folders(method, params, team)
        if api.endswith(".Thumbnail"):
            return self._thumbnail(method, params, team)
        if api.endswith(".Download"):
            return self._download(method, params, team, fault)
        raise Refused(103)

    def _info(self, query: str) -> dict[str, Any]:
        apis: dict[str, Any] = {
            "SYNO.API.Info": {"path": "query.cgi", "minVersion": 1, "maxVersion": 1},
            "SYNO.API.Auth": {"path": "entry.cgi", "minVersion": 1, "maxVersion": AUTH_MAX},
        }
        if self.photos_installed:
            for name, top in self.max_versions.items():
                apis[name] = {
                    "path": "entry.cgi",
                    "minVersion": 1,
                    "maxVersion": top,
                    "requestFormat": "JSON",
                }
        if query == "all":
            return apis
        wanted = [q.strip() for q in query.split(",") if q.strip()]
        return {k: v for k, v in apis.items() if any(k == w or k.startswith(w) for w in wanted)}

    def _auth(self, method: str, params: dict[str, Any]) -> Response:
        if method == "logout":
            self.sessions.pop(str(params.get("_sid", "")), None)
            return JSONResponse({"success": True})
        if method != "login":
            raise Refused(103)
        if "account" not in params or "passwd" not in params:
            raise Refused(114)
        self.logins += 1
        if str(params["account"]) != self.account or str(params["passwd"]) != self.password:
            raise Refused(400)
        if self.disabled:
            raise Refused(401)
        data: dict[str, Any] = {"is_portal_port": False, "account": self.account}
        if self.otp is not None and str(params.get("device_id", "")) not in self.device_ids:
            code = params.get("otp_code")
            if code is None:
                types = [{"type": "authenticator"}, {"type": "fido"}, {"type": "otp"}]
                raise Refused(403, {"token": secrets.token_hex(8), "types": types})
            if str(code) != self.otp:
                raise Refused(404)
            if params.get("enable_device_token") == "yes":
                device = secrets.token_urlsafe(24)
                self.device_ids.add(device)
                data["device_id"] = device
        sid = secrets.token_urlsafe(16)
        self.sessions[sid] = time.monotonic()
        data["sid"] = sid
        if params.get("enable_syno_token") == "yes":
            data["synotoken"] = secrets.token_urlsafe(8)
        response = JSONResponse({"success": True, "data": data})
        response.set_cookie("id", sid, max_age=604800, path="/", httponly=True)
        return response

    def _check_session(self, request: Request, params: dict[str, Any]) -> None:
        sid = str(params.get("_sid") or request.cookies.get("id") or "")
        with self._lock:
            started = self.sessions.get(sid)
            if started is None:
                raise Refused(119)
            if self.idle_seconds is not None and time.monotonic() - started > self.idle_seconds:
                del self.sessions[sid]
                raise Refused(106)
            self.sessions[sid] = time.monotonic()

    def _albums(self, method: str, params: dict[str, Any]) -> Response:
        if method == "list":
            offset, limit = paging(params)
            shared = params.get("category") == "normal_share_with_me"
            albums = [
                a
                for a in sorted(self.albums.values(), key=lambda a: a.id)
                if shared or not a.passphrase
            ]
            return ok({"list": [a.as_json() for a in albums[offset : offset + limit]]})
        if method == "get":
            ids = params.get("id")
            if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                raise Refused(120 if "id" in params else 114)
            found = [self.albums[i].as_json() for i in ids if i in self.albums]
            if not found:
                raise Refused(620)
            return ok({"list": found})
        raise Refused(103)

    def _folders(self, method: str, params: dict[str, Any], team: bool) -> Response:
        folder_id = params.get("id")
        if not isinstance(folder_id, int):
            raise Refused(120 if folder_id is not None else 114)
        if method == "get":
            if folder_id == 0:  # the space's root (NOTES §7)
                folder_id = TEAM_ROOT if team else PERSONAL_ROOT
            found = self.folders.get(folder_id)
            if found is None or found.team != team:
                raise Refused(120)  # the real code is unknown
            return ok({"folder": found.as_json()})
        if method != "list":
            raise Refused(103)
        offset, limit = paging(params, FOLDER_LIMIT)
        parent = self.folders.get(folder_id)
        if parent is None or parent.team != team:
            raise Refused(120)  # the real code is unknown
        children = sorted(
            (f for f in self.folders.values() if f.parent == folder_id), key=lambda f: f.id
        )
        return ok({"list": [f.as_json() for f in children[offset : offset + limit]]})

    def _in_folder(self, item: FakeItem, folder_id: int) -> bool:
        root = TEAM_ROOT if item.owner_user_id == 0 else PERSONAL_ROOT
        return (item.folder_id or root) == folder_id

    def _scope(self, params: dict[str, Any], team: bool) -> list[FakeItem]:
        if "folder_id" in params:
            folder_id = params["folder_id"]
            folder = self.folders.get(folder_id) if isinstance(folder_id, int) else None
            if folder is None or folder.team != team:
                raise Refused(120)
            return [i for i in self.items.values() if self._in_folder(i, folder.id)]
        if team:
            if "album_id" in params or "passphrase" in params:
                raise Refused(120)
            return [i for i in self.items.values() if i.owner_user_id == 0]
        if "passphrase" in params:
            found = [
                a
                for a in self.albums.values()
                if a.passphrase and a.passphrase == params["passphrase"]
            ]
            if not found:
                raise Refused(120)
            return [self.items[i] for i in found[0].items if i in self.items]
        album_id = params.get("album_id")
        if album_id is None:
            return [i for i in self.items.values() if i.owner_user_id != 0]
        if not isinstance(album_id, int):
            raise Refused(120)
        album = self.albums.get(album_id)
        if album is None:
            raise Refused(620)
        if album.passphrase:
            raise Refused(609)  # shared with me: ask by passphrase
        return [self.items[i] for i in album.items if i in self.items]

    def _items(self, method: str, params: dict[str, Any], team: bool) -> Response:
        if method == "count":
            return ok({"count": len(self._scope(params, team))})
        if method != "list":
            raise Refused(103)
        offset, limit = paging(params)
        items = sorted(self._scope(params, team), key=lambda i: i.id)
        return ok({"list": [i.as_json() for i in items[offset : offset + limit]]})

    def _thumbnail(self, method: str, params: dict[str, Any], team: bool) -> Response:
        if method != "get":
            raise Refused(103)
        item = self.items.get(params.get("id"))  # type: ignore[arg-type]
        if params.get("size") not in ("sm", "m", "xl") or params.get("type") != "unit":
            raise Refused(120)
        if (
            item is None
            or str(params.get("cache_key")) != item.cache_key
            or (item.owner_user_id == 0) != team
        ):
            return JSONResponse({"success": False, "error": {"code": 120}}, status_code=404)
        return Response(b"\xff\xd8\xff\xe0fake-thumbnail\xff\xd9", media_type="image/jpeg")

    def _download(
        self, method: str, params: dict[str, Any], team: bool, fault: Fault | None
    ) -> Response:
        if method != "download":
            raise Refused(103)
        ids = params.get("unit_id", params.get("item_id"))
        if not isinstance(ids, list) or not ids or not all(isinstance(i, int) for i in ids):
            raise Refused(120 if ids is not None else 114)
        items = [self.items.get(i) for i in ids]
        if any(i is None for i in items):
            raise Refused(620)
        found = [i for i in items if i is not None]
        for item in found:
            if item.unreadable:
                raise Refused(804)
            if (item.owner_user_id == 0) != team:
                raise Refused(117 if not team else 801)
        if len(found) == 1:
            item = found[0]
            body = item.payload()
            if item.kind == "live":
                media = "application/zip"
            elif item.filename.lower().endswith((".heic", ".heif")):
                media = "application/octet-stream"
            elif item.kind == "video":
                media = "video/quicktime"
            else:
                media = "image/jpeg"
            name = item.filename
        else:
            out = io.BytesIO()
            with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
                for item in found:
                    archive.writestr(item.filename, item.payload())
            body, media, name = out.getvalue(), "application/zip", "download.zip"
        headers = {
            "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Length": str(len(body)),
        }
        cut = len(body) // 2 if fault is not None and fault.kind == "truncate" else len(body)
        return StreamingResponse(self._stream(body[:cut]), media_type=media, headers=headers)

    async def _stream(self, body: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(body), 256 * 1024):
            chunk = body[start : start + 256 * 1024]
            self.bytes_sent += len(chunk)
            yield chunk

    # -- helpers -----------------------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _take_fault(self, api: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.api == api or (fault.api is None and api not in UNFAULTED):
                    if fault.after > 0:
                        fault.after -= 1
                        return None
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None


class SyncASGITransport(httpx.BaseTransport):
    """httpx's ASGI transport for a sync client: each request runs the app in its own event
    loop and the answer is read whole (the loopback server is the one that streams)."""

    def __init__(self, app: Any) -> None:
        self._inner = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def run() -> httpx.Response:
            response = await self._inner.handle_async_request(request)
            body = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
            return httpx.Response(
                response.status_code, headers=response.headers, stream=httpx.ByteStream(body)
            )

        return asyncio.run(run())


def serve_in_thread(fake: FakeSynology) -> Any:
    """The fake on a free loopback port (uvicorn in a thread), for subprocess tests and
    benchmarks; use as a context manager yielding the base URL."""
    return _Served(fake)


class _Served:
    def __init__(self, fake: FakeSynology) -> None:
        import socket

        import uvicorn

        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        # "critical": the truncated-body fault makes uvicorn log a traceback per request.
        config = uvicorn.Config(fake.app, log_level="critical", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def __enter__(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
