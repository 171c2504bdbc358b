"""The fake Immich's external libraries (NOTES §8, §13) and ``GET /users/me``.

A mixin of `tests.fakes.immich.FakeImmich`. Every ``/libraries`` operation is admin-only
(``x-immich-admin-only``; the dispatcher answers 403 for other users). Libraries live in
memory; a scan is done at once (Immich queues it) over the host folders that
``mounts`` maps container paths to: every file with an image or video extension under an
import path, except those an exclusion pattern matches (globs on the full path, ``**``
across folders, ``\\@`` a literal ``@``). Statistics count what the last scan found.

Back door: ``mounts`` ({container path: host Path}), ``libraries``, ``scans`` (library id →
scan requests).
"""

from __future__ import annotations

import os
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.fakes.http import Response
from tests.fakes.immich_model import MEDIA_TYPES, error, iso, now

if TYPE_CHECKING:
    from tests.fakes.immich import _Call
    from tests.fakes.immich_model import FakeUser
    from tests.fakes.openapi import Operation


@dataclass
class FakeLibrary:
    id: str
    owner_id: str
    name: str
    import_paths: list[str]
    exclusion_patterns: list[str]
    created: datetime
    updated: datetime
    refreshed: datetime | None = None
    photos: int = 0
    videos: int = 0
    usage: int = 0
    files: list[str] = field(default_factory=list)  # container paths the last scan found


def library_dto(library: FakeLibrary) -> dict[str, Any]:
    return {
        "id": library.id,
        "name": library.name,
        "ownerId": library.owner_id,
        "importPaths": list(library.import_paths),
        "exclusionPatterns": list(library.exclusion_patterns),
        "assetCount": library.photos + library.videos,
        "createdAt": iso(library.created),
        "updatedAt": iso(library.updated),
        "refreshedAt": iso(library.refreshed) if library.refreshed else None,
    }


def user_dto(user: FakeUser, *, is_admin: bool) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "isAdmin": is_admin,
        "avatarColor": "primary",
        "createdAt": iso(user.created),
        "updatedAt": iso(user.created),
        "profileChangedAt": iso(user.created),
        "deletedAt": None,
        "license": None,
        "oauthId": "",
        "profileImagePath": "",
        "quotaSizeInBytes": None,
        "quotaUsageInBytes": 0,
        "shouldChangePassword": False,
        "status": "active",
        "storageLabel": None,
    }


def glob_regex(pattern: str) -> re.Pattern[str]:
    """An Immich exclusion glob as a regex: ``**/`` any folders, ``*`` within one name."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("^" + "".join(out) + "$")


class LibraryOps:
    """External-library operations; needs ``lock``, ``users``, ``_json`` from FakeImmich."""

    lock: Any
    users: dict[str, FakeUser]
    admins: set[str]
    libraries: dict[str, FakeLibrary]
    mounts: dict[str, Path]
    scans: Counter[str]

    def _json(self, op: Operation, status: int, body: Any, reset: bool = False) -> Response:
        raise NotImplementedError

    def _op_get_my_user(self, call: _Call) -> Response:
        return self._json(call.op, 200, user_dto(call.user, is_admin=call.user.id in self.admins))

    def _op_get_all_libraries(self, call: _Call) -> Response:
        with self.lock:
            body = [library_dto(lib) for lib in sorted(self.libraries.values(), key=_created)]
        return self._json(call.op, 200, body)

    def _op_create_library(self, call: _Call, body: dict[str, Any]) -> Response:
        with self.lock:
            if body["ownerId"] not in self.users:
                return error(400, "User not found")
            stamp = now()
            library = FakeLibrary(
                id=str(uuid.uuid4()),
                owner_id=body["ownerId"],
                name=body.get("name") or "Library",
                import_paths=list(body.get("importPaths", [])),
                exclusion_patterns=list(body.get("exclusionPatterns", [])),
                created=stamp,
                updated=stamp,
            )
            self.libraries[library.id] = library
            return self._json(call.op, 201, library_dto(library))

    def _op_get_library(self, call: _Call) -> Response:
        library = self._find_library(call)
        if library is None:
            return error(400, "Library not found")
        return self._json(call.op, 200, library_dto(library))

    def _op_update_library(self, call: _Call, body: dict[str, Any]) -> Response:
        with self.lock:
            library = self._find_library(call)
            if library is None:
                return error(400, "Library not found")
            library.name = body.get("name", library.name)
            library.import_paths = list(body.get("importPaths", library.import_paths))
            library.exclusion_patterns = list(
                body.get("exclusionPatterns", library.exclusion_patterns)
            )
            library.updated = now()
            return self._json(call.op, 200, library_dto(library))

    def _op_delete_library(self, call: _Call) -> Response:
        with self.lock:
            if self.libraries.pop(call.op.path_params["id"].lower(), None) is None:
                return error(400, "Library not found")
        return Response(204, b"")

    def _op_scan_library(self, call: _Call) -> Response:
        with self.lock:
            library = self._find_library(call)
            if library is None:
                return error(400, "Library not found")
            self.scans[library.id] += 1
            self._scan(library)
        return Response(204, b"")

    def _op_get_library_statistics(self, call: _Call) -> Response:
        library = self._find_library(call)
        if library is None:
            return error(400, "Library not found")
        body = {
            "photos": library.photos,
            "videos": library.videos,
            "total": library.photos + library.videos,
            "usage": library.usage,
        }
        return self._json(call.op, 200, body)

    # -- helpers -------------------------------------------------------------------------------

    def _find_library(self, call: _Call) -> FakeLibrary | None:
        with self.lock:
            return self.libraries.get(call.op.path_params["id"].lower())

    def _scan(self, library: FakeLibrary) -> None:
        excluded = [glob_regex(p) for p in library.exclusion_patterns]
        images, videos = set(MEDIA_TYPES["image"]), set(MEDIA_TYPES["video"])
        library.photos = library.videos = library.usage = 0
        library.files = []
        for import_path in library.import_paths:
            host = self.mounts.get(import_path.rstrip("/"))
            if host is None:
                continue  # Immich sees nothing there (not mounted into its container)
            for folder, _dirs, names in os.walk(host, followlinks=False):
                for name in names:
                    path = Path(folder) / name
                    inside = f"{import_path.rstrip('/')}/{path.relative_to(host).as_posix()}"
                    if any(rx.match(inside) for rx in excluded):
                        continue
                    ext = path.suffix.lower()
                    if ext in images:
                        library.photos += 1
                    elif ext in videos:
                        library.videos += 1
                    else:
                        continue
                    library.files.append(inside)
                    library.usage += path.stat().st_size
        library.refreshed = now()


def _created(library: FakeLibrary) -> datetime:
    return library.created
