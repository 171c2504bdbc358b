"""Records, limits and envelope helpers of the fake Synology NAS (`tests.fakes.synology`)."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse

MAX_LIMIT = 5000
# SYNO.API.Info as a DSM 7.2 NAS with Photos 1.6 answers (NOTES §2); no FotoTeam.Browse.Album.
PHOTO_APIS: dict[str, int] = {
    "SYNO.Foto.Browse.Album": 5,
    "SYNO.Foto.Browse.Item": 6,
    "SYNO.Foto.Download": 2,
    "SYNO.Foto.Thumbnail": 2,
    "SYNO.Foto.Search.Search": 6,
    "SYNO.Foto.Browse.Folder": 2,
    "SYNO.Foto.Sharing.Misc": 2,
    "SYNO.Foto.UserInfo": 1,
    "SYNO.FotoTeam.Browse.Item": 6,
    "SYNO.FotoTeam.Download": 2,
    "SYNO.FotoTeam.Thumbnail": 2,
    "SYNO.FotoTeam.Browse.Folder": 2,
}
AUTH_MAX = 7
TEAM_ROOT, PERSONAL_ROOT = 1, 2  # folder ids of the spaces' roots (NOTES §7)
FOLDER_LIMIT = 2000
UNFAULTED = ("SYNO.API.Info", "SYNO.API.Auth")  # faults for "any API" leave these alone


@dataclass
class FakeItem:
    id: int
    filename: str
    data: bytes
    time: int  # taken, unix seconds
    owner_user_id: int = 1  # 0 = lives in the shared space
    video: bytes | None = None  # a Live Photo's motion half
    unreadable: bool = False
    indexed: int = 0  # bumps on every change: part of the cache key
    folder_id: int = 0  # 0: the root folder of its space

    @property
    def cache_key(self) -> str:
        return f"{self.id}_{self.time + self.indexed}"

    @property
    def kind(self) -> str:
        if self.video is not None:
            return "live"
        return "video" if self.filename.lower().endswith((".mov", ".mp4")) else "photo"

    def payload(self) -> bytes:
        if self.video is None:
            return self.data
        out = io.BytesIO()
        stem = self.filename.rpartition(".")[0]
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr(self.filename, self.data)
            archive.writestr(f"{stem}.MOV", self.video)
        return out.getvalue()

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "filename": self.filename,
            "filesize": len(self.payload()),
            "time": self.time,
            "indexed_time": (self.time + self.indexed) * 1000,
            "owner_user_id": self.owner_user_id,
            "folder_id": self.folder_id
            or (TEAM_ROOT if self.owner_user_id == 0 else PERSONAL_ROOT),
            "type": self.kind,
            "additional": {
                "thumbnail": {
                    "cache_key": self.cache_key,
                    "unit_id": self.id,
                    "sm": "ready",
                    "m": "ready",
                    "xl": "ready",
                    "preview": "broken",
                }
            },
        }
        if self.video is not None:
            out["live_type"] = "photo"
        return out


@dataclass
class FakeAlbum:
    id: int
    name: str
    items: list[int] = field(default_factory=list)
    passphrase: str = ""  # non-empty: shared with the account by another user
    owner_user_id: int = 1

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "item_count": len(self.items),
            "owner_user_id": self.owner_user_id,
            "passphrase": self.passphrase,
            "shared": bool(self.passphrase),
            "type": "normal",
            "create_time": 1_700_000_000,
            "start_time": 1_700_000_000,
            "end_time": 1_700_000_000,
            "sort_by": "default",
            "sort_direction": "default",
            "version": 1,
            "condition": {},
            "freeze_album": False,
            "temporary_shared": False,
            "cant_migrate_condition": {},
        }


@dataclass
class FakeFolder:
    id: int
    name: str  # the full path, "/2024/kitchen" (the root is "/")
    parent: int
    team: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "parent": self.parent,
            "owner_user_id": 0 if self.team else 1,
            "passphrase": "",
            "shared": False,
            "sort_by": "default",
            "sort_direction": "default",
        }


@dataclass
class Fault:
    kind: str  # http500 | slow | truncate | json_error | code
    count: int
    api: str | None
    code: int = 109
    seconds: float = 0.0
    after: int = 0  # let this many matching requests pass first


class Refused(Exception):
    def __init__(self, code: int, errors: Any = None) -> None:
        super().__init__(code)
        self.code = code
        self.errors = errors


def decode(raw: str) -> Any:
    """NOTES §1: the server JSON-decodes every value and keeps the raw text when it is not JSON."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def paging(params: dict[str, Any], most: int = MAX_LIMIT) -> tuple[int, int]:
    if "offset" not in params or "limit" not in params:
        raise Refused(114)
    offset, limit = params["offset"], params["limit"]
    if not isinstance(offset, int) or not isinstance(limit, int):
        raise Refused(120)
    if offset < 0 or limit <= 0 or limit > most:
        raise Refused(120)
    return offset, limit


def ok(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"success": True, "data": data})


def error(code: int, errors: Any = None) -> JSONResponse:
    error: dict[str, Any] = {"code": code}
    if errors is not None:
        error["errors"] = errors
    return JSONResponse({"success": False, "error": error})
