"""A fake Immich 3.0.3 built from the saved OpenAPI document; it refuses what the spec refuses.

Each request is matched to an operation of ``shared/reference/immich/immich-openapi-specs.json``
(404 otherwise), authenticated by ``x-api-key`` (401), checked against the key's permissions
(403, ``x-immich-permission``), its parameters and body checked against the spec (400 with the
v3 validation body), then answered by a small in-memory model of the operations picpipe uses
(501 for the rest). The fake checks its own JSON answers against the documented response
schemas as well: a mismatch is recorded in ``spec_errors`` (the fixtures fail the test) and
answered 500, so the fake cannot drift from the spec unnoticed.

Behaviour (NOTES §11): per-owner SHA-1 dedup, 201 created / 200 duplicate; the
``x-immich-checksum`` early answer before the body is read; bulk-upload-check with
``isTrashed``; a missing or foreign asset is 400 "Not found or no <permission> access", as
Immich's access checks answer; search/metadata pages with ``nextPage`` strings, and without a
``visibility`` filter only the timeline (the narrowest v3 behaviour, so clients must ask per
visibility; ``updatedAfter``/``trashedAfter`` inclusive, ``libraryId``); owned albums whose
``updatedAt`` moves when assets are added; asset metadata (picpipe's upload mark); Live Photo
links (400 unless the target is a VIDEO of the same
owner, which then becomes hidden). Trashed duplicates are answered "duplicate" with the trashed
id, as 3.0.3 does.

External libraries (admin-only, scans over ``mounts``): `tests.fakes.immich_libraries`.

Back door for tests: `add_user` (``admin=True`` for library operations), `add_key`,
`corrupt`, `trash`, `asset`, `put_asset` (as a scan or another client would store it;
``library_id`` for an external library's asset), `delete_asset`, `put_album`,
`remove_from_album`; counters ``calls``, ``downloads`` (originals sent in full, by asset id),
``created`` and per user ``user_calls``, ``user_created``; ``faults`` (`tests.fakes.http.Faults`:
fail, drop or stall the next requests of an operation); ``truncate_downloads`` (the next N
originals stop halfway, connection closed), ``cut_off`` (asset ids whose originals do);
toggles ``reset_on_early_duplicate`` and ``version``; `clear_faults`. Records and
JSON shapes live in `tests.fakes.immich_model`.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.fakes.http import Faults, Request, Response
from tests.fakes.immich_libraries import FakeLibrary, LibraryOps
from tests.fakes.immich_model import (
    IMPLEMENTED_FILTERS,
    MEDIA_TYPES,
    VERSION,
    FakeAccount,
    FakeAlbum,
    FakeAsset,
    FakeKey,
    FakeUser,
    album_dto,
    asset_dto,
    asset_type,
    error,
    form_text,
    from_checksum,
    invalid,
    iso,
    matches,
    no_access,
    now,
)
from tests.fakes.immich_tags import FakeTag, TagOps, tag_dto
from tests.fakes.openapi import FormField, OpenApiSpec, Operation, parse_multipart

SPEC_PATH = (
    Path(__file__).resolve().parents[3] / "shared/reference/immich/immich-openapi-specs.json"
)


@dataclass
class _Call:
    request: Request
    op: Operation
    user: FakeUser
    key: FakeKey


class FakeImmich(LibraryOps, TagOps):
    """The server's state and behaviour; a `LoopbackServer` app (see the module docstring)."""

    def __init__(self, spec: OpenApiSpec | None = None) -> None:
        self.spec = spec or OpenApiSpec.load(SPEC_PATH)
        self.lock = threading.RLock()
        self.users: dict[str, FakeUser] = {}
        self.keys: dict[str, FakeKey] = {}
        self.assets: dict[str, FakeAsset] = {}
        self.albums: dict[str, FakeAlbum] = {}
        self.calls: Counter[str] = Counter()  # operationId → requests that matched it
        self.created = 0  # uploads that stored a new asset
        self.user_calls: dict[str, Counter[str]] = {}  # user id → authenticated requests
        self.user_created: Counter[str] = Counter()  # user id → uploads that stored an asset
        self.spec_errors: list[str] = []
        self.reset_on_early_duplicate = False
        self.version = dict(VERSION)  # what /server/version says (tests of old servers)
        self.faults = Faults()  # fail_next, drop_next, stall_next (by operationId)
        self.admins: set[str] = set()  # user ids that are admins (external libraries)
        self.libraries: dict[str, FakeLibrary] = {}
        self.mounts: dict[str, Path] = {}  # container path → host folder, for library scans
        self.scans: Counter[str] = Counter()  # library id → scan requests
        self.tags: dict[str, FakeTag] = {}
        self.downloads: Counter[str] = Counter()  # asset id → originals sent in full
        self.truncate_downloads = 0  # the next N originals stop halfway (connection closed)
        self.cut_off: set[str] = set()  # asset ids whose originals always stop halfway

    # -- back door -----------------------------------------------------------------------------

    def add_user(
        self, permissions: tuple[str, ...] = ("all",), *, admin: bool = False
    ) -> FakeAccount:
        """A new user with one API key; its assets and albums are invisible to other users.
        Only an ``admin`` may use the external-library operations."""
        with self.lock:
            number = len(self.users) + 1
            user = FakeUser(str(uuid.uuid4()), f"User {number}", f"user{number}@example.com", now())
            self.users[user.id] = user
            if admin:
                self.admins.add(user.id)
            return FakeAccount(user.id, self.add_key(user.id, permissions))

    def add_key(self, user_id: str, permissions: tuple[str, ...]) -> str:
        with self.lock:
            secret = secrets.token_urlsafe(32)
            self.keys[secret] = FakeKey(str(uuid.uuid4()), secret, user_id, permissions, now())
            return secret

    def asset(self, asset_id: str) -> FakeAsset:
        with self.lock:
            return self.assets[asset_id]

    def corrupt(self, asset_id: str, data: bytes, *, keep_checksum: bool = False) -> None:
        """Replace the stored bytes. ``keep_checksum``: a disk fault (the database still holds
        the upload's checksum and size); otherwise as if the file were replaced and re-read."""
        with self.lock:
            asset = self.assets[asset_id]
            asset.data = data
            if not keep_checksum:
                asset.checksum = hashlib.sha1(data).digest()
                asset.file_size = len(data)
                asset.updated = now()

    def put_asset(
        self,
        owner_id: str,
        name: str,
        data: bytes,
        *,
        modified: datetime | None = None,
        library_id: str | None = None,
        kind: str | None = None,
        visibility: str = "timeline",
    ) -> FakeAsset:
        """Store an asset as Immich's own uploads or library scans would (no validation of
        the name: a test may need what an upload would refuse). An external library's asset
        gets the checksum Immich gives those: SHA-1 of ``"path:" + path``."""
        stamp = now()
        moment = modified or stamp
        asset_id = str(uuid.uuid4())
        checksum = hashlib.sha1(data).digest()
        if library_id is not None:
            checksum = hashlib.sha1(f"path:/external/{name}".encode()).digest()
        asset = FakeAsset(
            id=asset_id, owner_id=owner_id, data=data, checksum=checksum,
            file_size=len(data), type=kind or asset_type(name) or "OTHER",
            original_file_name=name.rpartition("/")[2], mime_type=None,
            file_created_at=moment, file_modified_at=moment, duration_ms=None,
            created=stamp, updated=stamp, visibility=visibility, library_id=library_id,
        )  # fmt: skip
        with self.lock:
            self.assets[asset_id] = asset
        return asset

    def put_album(self, owner_id: str, name: str, asset_ids: list[str]) -> FakeAlbum:
        """An album as the web app would make it (the back door adds without the checks)."""
        stamp = now()
        album = FakeAlbum(str(uuid.uuid4()), owner_id, name, "", stamp, list(asset_ids), stamp)
        with self.lock:
            self.albums[album.id] = album
        return album

    def remove_from_album(self, album_id: str, asset_id: str) -> None:
        with self.lock:
            album = self.albums[album_id]
            album.asset_ids.remove(asset_id)
            album.updated = now()

    def delete_asset(self, asset_id: str) -> None:
        with self.lock:
            del self.assets[asset_id]

    def trash(self, asset_id: str) -> None:
        with self.lock:
            asset = self.assets[asset_id]
            asset.is_trashed, asset.trashed_at = True, now()
            asset.updated = asset.trashed_at

    def clear_faults(self) -> None:
        """Forget pending faults and behaviour toggles (the fixtures call it after each test)."""
        with self.lock:
            self.faults.clear()
            self.truncate_downloads = 0
            self.cut_off.clear()
            self.reset_on_early_duplicate = False
            self.version = dict(VERSION)

    # -- dispatch ------------------------------------------------------------------------------

    def __call__(self, request: Request) -> Response:
        path = request.path
        if not path.startswith(self.spec.prefix + "/"):
            return error(404, f"Cannot {request.method} {path}")
        op = self.spec.match(request.method, path[len(self.spec.prefix) :])
        if op is None:
            return error(404, f"Cannot {request.method} {path}")
        with self.lock:
            self.calls[op.operation_id] += 1
        return self.faults.apply(op.operation_id, request, lambda: self._answer(request, op))

    def _answer(self, request: Request, op: Operation) -> Response:
        user: FakeUser | None = None
        key: FakeKey | None = None
        if op.secured:
            secret = request.headers.get("x-api-key")
            with self.lock:
                key = self.keys.get(secret or "")
                user = self.users.get(key.user_id) if key else None
            if key is None or user is None:
                message = "Invalid API key" if secret else "Authentication required"
                return error(401, message)
            with self.lock:
                self.user_calls.setdefault(user.id, Counter())[op.operation_id] += 1
            perm = op.permission
            if perm and "all" not in key.permissions and perm not in key.permissions:
                return error(403, f"Missing required permission: {perm}")
            if op.spec.get("x-immich-admin-only") and user.id not in self.admins:
                return error(403, "Forbidden")
        problems = self.spec.check_parameters(op, request.query, request.headers)
        if problems:
            return invalid(problems)
        handler = getattr(self, "_op_" + _snake(op.operation_id), None)
        if handler is None:
            return error(501, f"the fake does not implement {op.operation_id}")
        if not op.secured:
            return handler(request, op)
        assert user is not None
        assert key is not None
        call = _Call(request, op, user, key)
        if op.operation_id != "uploadAsset" and op.body_types():
            content_type = request.headers.get("content-type", "")
            if not content_type.startswith("application/json"):
                return error(400, f"expected application/json, got {content_type or 'nothing'}")
            body, problems = self.spec.check_json(op, request.body())
            if problems:
                return invalid(problems)
            return handler(call, body)
        return handler(call)

    def _json(self, op: Operation, status: int, body: Any, reset: bool = False) -> Response:
        problems = self.spec.check_response(op, status, body)
        if problems:
            self.spec_errors.append(f"{op.operation_id} {status}: {problems}")
            return error(500, "the fake's answer does not match the spec")
        return Response(status, json.dumps(body).encode(), reset=reset)

    # -- server --------------------------------------------------------------------------------

    def _op_ping_server(self, request: Request, op: Operation) -> Response:
        return self._json(op, 200, {"res": "pong"})

    def _op_get_server_version(self, request: Request, op: Operation) -> Response:
        return self._json(op, 200, self.version)

    def _op_get_supported_media_types(self, request: Request, op: Operation) -> Response:
        return self._json(op, 200, MEDIA_TYPES)

    def _op_get_my_api_key(self, call: _Call) -> Response:
        key = call.key
        body = {
            "id": key.id,
            "name": "picpipe",
            "permissions": list(key.permissions),
            "createdAt": iso(key.created),
            "updatedAt": iso(key.created),
        }
        return self._json(call.op, 200, body)

    # -- assets --------------------------------------------------------------------------------

    def _op_upload_asset(self, call: _Call) -> Response:
        header = call.request.headers.get("x-immich-checksum")
        if header is not None:
            claimed = from_checksum(header)
            if claimed is None:
                return error(400, "x-immich-checksum must be SHA-1 as hex or base64")
            # Immich's interceptor answers before multer reads the body.
            existing = self._owned_by_checksum(call.user.id, claimed)
            if existing is not None:
                body = {"id": existing.id, "status": "duplicate"}
                return self._json(call.op, 200, body, reset=self.reset_on_early_duplicate)
        content_type = call.request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            return error(400, "expected multipart/form-data")
        fields = parse_multipart(content_type, call.request.body())
        if fields is None:
            return error(400, "Multipart: malformed body")
        form, problems = self.spec.check_form(call.op, fields)
        if problems:
            return invalid(problems)
        return self._store(call, form)

    def _store(self, call: _Call, form: dict[str, FormField]) -> Response:
        part = form["assetData"]
        if not part.data:
            return error(400, "Validation failed (file assetData is empty)")
        name = form_text(form, "filename") or part.filename or ""
        kind = asset_type(name)
        if kind is None:
            return error(400, f"Unsupported file type {name}")
        checksum = hashlib.sha1(part.data).digest()
        created_at = datetime.fromisoformat(form_text(form, "fileCreatedAt") or "")
        modified_at = datetime.fromisoformat(form_text(form, "fileModifiedAt") or "")
        with self.lock:
            existing = self._owned_by_checksum(call.user.id, checksum)
            if existing is not None:  # the unique (owner, checksum) constraint
                return self._json(call.op, 200, {"id": existing.id, "status": "duplicate"})
            video = form_text(form, "livePhotoVideoId")
            if video is not None and (problem := self._link_problem(call.user.id, video)):
                return error(400, problem)
            stamp = now()
            duration = form_text(form, "duration")
            asset = FakeAsset(
                id=str(uuid.uuid4()),
                owner_id=call.user.id,
                data=part.data,
                checksum=checksum,
                file_size=len(part.data),
                type=kind,
                original_file_name=name,
                mime_type=part.content_type,
                file_created_at=created_at,
                file_modified_at=modified_at,
                duration_ms=int(duration) if duration is not None else None,
                created=stamp,
                updated=stamp,
                visibility=form_text(form, "visibility") or "timeline",
                is_favorite=form_text(form, "isFavorite") == "true",
                sidecar=form["sidecarData"].data if "sidecarData" in form else None,
            )
            self.assets[asset.id] = asset
            if video is not None:
                self._link(asset, video)
            self.created += 1
            self.user_created[call.user.id] += 1
        return self._json(call.op, 201, {"id": asset.id, "status": "created"})

    def _op_check_bulk_upload(self, call: _Call, body: dict[str, Any]) -> Response:
        results = []
        for item in body["assets"]:
            checksum = from_checksum(item["checksum"])
            if checksum is None:
                return error(400, f"checksum of {item['id']!r} is not SHA-1 as hex or base64")
            existing = self._owned_by_checksum(call.user.id, checksum)
            if existing is None:
                results.append({"id": item["id"], "action": "accept"})
            else:
                results.append(
                    {
                        "id": item["id"],
                        "action": "reject",
                        "reason": "duplicate",
                        "assetId": existing.id,
                        "isTrashed": existing.is_trashed,
                    }
                )
        return self._json(call.op, 200, {"results": results})

    def _op_get_asset_info(self, call: _Call) -> Response:
        asset = self._owned(call, call.op.path_params["id"])
        if asset is None:
            return no_access(call.op)
        return self._json(call.op, 200, self._with_tags(asset_dto(asset, exif=True), asset))

    def _with_tags(self, dto: dict[str, Any], asset: FakeAsset) -> dict[str, Any]:
        with self.lock:
            tags = [t for t in self.tags.values() if asset.id in t.asset_ids]
        return {**dto, "tags": [tag_dto(t) for t in sorted(tags, key=lambda t: t.value)]}

    def _op_download_asset(self, call: _Call) -> Response:
        asset = self._owned(call, call.op.path_params["id"])
        if asset is None:
            return no_access(call.op)
        with self.lock:
            counted = self.truncate_downloads > 0
            self.truncate_downloads -= 1 if counted else 0
            cut = counted or asset.id in self.cut_off
            if not cut:
                self.downloads[asset.id] += 1
        if cut:  # the full length announced, half the bytes sent, the connection closed
            half = [asset.data[: len(asset.data) // 2]]
            return Response(
                200, half, "application/octet-stream", length=len(asset.data), reset=True
            )
        return Response(200, asset.data, content_type="application/octet-stream")

    def _op_update_asset(self, call: _Call, body: dict[str, Any]) -> Response:
        unknown = set(body) - {"livePhotoVideoId", "isFavorite", "visibility", "description"}
        unknown -= {"rating"}
        if unknown:
            return error(501, f"the fake does not update {sorted(unknown)}")
        with self.lock:
            asset = self._owned(call, call.op.path_params["id"])
            if asset is None:
                return no_access(call.op)
            if "livePhotoVideoId" in body:
                video = body["livePhotoVideoId"]
                if video is None:
                    self._unlink(asset)
                else:
                    problem = self._link_problem(call.user.id, video)
                    if problem:
                        return error(400, problem)
                    self._link(asset, video)
            asset.description = body.get("description", asset.description)
            asset.rating = body.get("rating", asset.rating)
            asset.is_favorite = body.get("isFavorite", asset.is_favorite)
            asset.visibility = body.get("visibility", asset.visibility)
            asset.updated = now()
            return self._json(call.op, 200, self._with_tags(asset_dto(asset, exif=True), asset))

    def _op_update_asset_metadata(self, call: _Call, body: dict[str, Any]) -> Response:
        with self.lock:
            asset = self._owned(call, call.op.path_params["id"])
            if asset is None:
                return no_access(call.op)
            stamp = now()
            for item in body["items"]:
                asset.metadata[item["key"]] = (item["value"], stamp)
            return self._json(call.op, 200, _metadata_dto(asset))

    def _op_get_asset_metadata(self, call: _Call) -> Response:
        with self.lock:
            asset = self._owned(call, call.op.path_params["id"])
            if asset is None:
                return no_access(call.op)
            return self._json(call.op, 200, _metadata_dto(asset))

    def _op_search_assets(self, call: _Call, body: dict[str, Any]) -> Response:
        unknown = {k for k, v in body.items() if v is not None} - IMPLEMENTED_FILTERS
        if unknown:
            return error(501, f"the fake does not search by {sorted(unknown)}")
        with self.lock:
            found = [a for a in self.assets.values() if matches(a, call.user.id, body, self.albums)]
        # Immich orders by fileCreatedAt (then id): not by updatedAt, so a client's high-water
        # mark must be the largest updatedAt it saw, not the last one.
        found.sort(
            key=lambda a: (a.file_created_at, a.id), reverse=body.get("order", "desc") == "desc"
        )
        page, size = body.get("page", 1), body.get("size", 250)
        items = found[(page - 1) * size : page * size]
        more = len(found) > page * size
        assets = {
            "count": len(items),
            "facets": [],
            "items": [asset_dto(a, exif=bool(body.get("withExif"))) for a in items],
            "nextPage": str(page + 1) if more else None,
            "total": len(found),
        }
        albums = {"count": 0, "facets": [], "items": [], "total": 0}
        return self._json(call.op, 200, {"albums": albums, "assets": assets})

    # -- albums --------------------------------------------------------------------------------

    def _op_get_all_albums(self, call: _Call) -> Response:
        query = call.request.query
        if "assetId" in query or query.get("isShared") == ["true"]:
            return error(501, "the fake does not filter albums by asset or sharing")
        with self.lock:
            found = [
                a
                for a in self.albums.values()
                if a.owner_id == call.user.id
                and ("name" not in query or a.name == query["name"][-1])
                and ("id" not in query or a.id == query["id"][-1])
                and query.get("isOwned") != ["false"]  # nothing is shared with fake users
            ]
            body = [
                album_dto(a, self.users[a.owner_id]) for a in sorted(found, key=lambda a: a.created)
            ]
        return self._json(call.op, 200, body)

    def _op_create_album(self, call: _Call, body: dict[str, Any]) -> Response:
        if body.get("albumUsers"):
            return error(501, "the fake does not share albums")
        with self.lock:
            ids = body.get("assetIds", [])
            if any(self._owned(call, i) is None for i in ids):
                return error(400, "Not found or no asset.share access")
            album = FakeAlbum(
                str(uuid.uuid4()), call.user.id, body["albumName"], body.get("description", ""),
                now(), list(dict.fromkeys(ids)),
            )  # fmt: skip
            self.albums[album.id] = album
            return self._json(call.op, 201, album_dto(album, self.users[album.owner_id]))

    def _op_add_assets_to_album(self, call: _Call, body: dict[str, Any]) -> Response:
        with self.lock:
            album = self.albums.get(call.op.path_params["id"])
            if album is None or album.owner_id != call.user.id:
                return no_access(call.op)
            results: list[dict[str, Any]] = []
            for asset_id in body["ids"]:
                if self._owned(call, asset_id) is None:
                    results.append({"id": asset_id, "success": False, "error": "no_permission"})
                elif asset_id in album.asset_ids:
                    results.append({"id": asset_id, "success": False, "error": "duplicate"})
                else:
                    album.asset_ids.append(asset_id)
                    album.updated = now()
                    results.append({"id": asset_id, "success": True})
            return self._json(call.op, 200, results)

    # -- model helpers -------------------------------------------------------------------------

    def _owned(self, call: _Call, asset_id: str) -> FakeAsset | None:
        asset = self.assets.get(asset_id.lower())
        return asset if asset is not None and asset.owner_id == call.user.id else None

    def _owned_by_checksum(self, owner_id: str, checksum: bytes) -> FakeAsset | None:
        with self.lock:
            for asset in self.assets.values():
                if asset.owner_id == owner_id and asset.checksum == checksum:
                    return asset
        return None

    def _link_problem(self, owner_id: str, video_id: str) -> str | None:
        video = self.assets.get(video_id.lower())
        if video is None or video.owner_id != owner_id:
            return "Live photo video not found"
        if video.type != "VIDEO":
            return "Live photo video must be a video"
        return None

    def _link(self, still: FakeAsset, video_id: str) -> None:
        if still.live_photo_video_id and still.live_photo_video_id != video_id:
            self._unlink(still)
        still.live_photo_video_id = video_id
        self.assets[video_id].visibility = "hidden"

    def _unlink(self, still: FakeAsset) -> None:
        old = self.assets.get(still.live_photo_video_id or "")
        if old is not None:
            old.visibility = "timeline"
        still.live_photo_video_id = None


# -- module helpers --------------------------------------------------------------------------


def _metadata_dto(asset: FakeAsset) -> list[dict[str, Any]]:
    return [
        {"key": key, "value": value, "updatedAt": iso(stamp)}
        for key, (value, stamp) in sorted(asset.metadata.items())
    ]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", lambda m: "_" + m.group(1).lower(), name)
