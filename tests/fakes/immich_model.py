"""The fake Immich's records and the JSON it answers with (``AssetResponseDto``, albums, errors).

Split from `tests.fakes.immich` (behaviour and dispatch); everything here is plain data and
pure functions.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

from tests.fakes.http import Response
from tests.fakes.openapi import FormField, Operation

VERSION = {"major": 3, "minor": 0, "patch": 3, "prerelease": None}
MEDIA_TYPES = {
    "image": [".jpg", ".jpeg", ".png", ".heic", ".heif", ".webp", ".gif", ".tif", ".tiff",
              ".dng", ".nef", ".cr2", ".cr3", ".arw", ".raf", ".orf", ".rw2", ".avif"],
    "video": [".mov", ".mp4", ".m4v", ".3gp", ".avi", ".mkv", ".mts", ".webm"],
    "sidecar": [".xmp"],
}  # fmt: skip
IMPLEMENTED_FILTERS = {
    "page", "size", "order", "visibility", "checksum", "id", "originalFileName", "type",
    "isFavorite", "albumIds", "takenAfter", "takenBefore", "withDeleted", "withExif",
    "updatedAfter", "updatedBefore", "libraryId", "trashedAfter",
}  # fmt: skip


@dataclass
class FakeUser:
    id: str
    name: str
    email: str
    created: datetime


@dataclass
class FakeKey:
    id: str
    secret: str
    user_id: str
    permissions: tuple[str, ...]
    created: datetime


@dataclass
class FakeAsset:
    id: str
    owner_id: str
    data: bytes
    checksum: bytes  # SHA-1 as recorded at upload (a disk fault does not change it)
    file_size: int
    type: str
    original_file_name: str
    mime_type: str | None
    file_created_at: datetime  # aware
    file_modified_at: datetime
    duration_ms: int | None
    created: datetime
    updated: datetime
    live_photo_video_id: str | None = None
    visibility: str = "timeline"
    is_trashed: bool = False
    is_favorite: bool = False
    sidecar: bytes | None = None
    description: str = ""  # what people edit (PUT /assets/{id})
    rating: int | None = None
    trashed_at: datetime | None = None
    metadata: dict[str, tuple[dict[str, Any], datetime]] = field(default_factory=dict)
    library_id: str | None = None  # an external library's asset (checksum: SHA-1 of the path)


@dataclass
class FakeAlbum:
    id: str
    owner_id: str
    name: str
    description: str
    created: datetime
    asset_ids: list[str] = field(default_factory=list)
    updated: datetime | None = None  # assets added or removed (Immich's album updatedAt)


@dataclass(frozen=True)
class FakeAccount:
    user_id: str
    api_key: str


def matches(
    asset: FakeAsset, owner_id: str, body: dict[str, Any], albums: dict[str, FakeAlbum]
) -> bool:
    """Whether a search/metadata body (the filters the fake implements) selects ``asset``."""
    if asset.owner_id != owner_id or asset.visibility == "locked":
        return False
    if asset.is_trashed and not body.get("withDeleted"):
        return False
    if asset.visibility != body.get("visibility", "timeline"):
        return False
    checksum = body.get("checksum")
    if checksum is not None and from_checksum(checksum) != asset.checksum:
        return False
    taken = asset.file_created_at
    return (
        body.get("id", asset.id) == asset.id
        and body.get("originalFileName", asset.original_file_name) == asset.original_file_name
        and body.get("type", asset.type) == asset.type
        and body.get("isFavorite", asset.is_favorite) == asset.is_favorite
        and all(asset.id in albums[a].asset_ids for a in body.get("albumIds", []) if a)
        and ("takenAfter" not in body or taken >= parse_date(body["takenAfter"]))
        and ("takenBefore" not in body or taken <= parse_date(body["takenBefore"]))
        # Immich compares updatedAt inclusively on both ends.
        and ("updatedAfter" not in body or asset.updated >= parse_date(body["updatedAfter"]))
        and ("updatedBefore" not in body or asset.updated <= parse_date(body["updatedBefore"]))
        and body.get("libraryId", asset.library_id) == asset.library_id
        and ("trashedAfter" not in body or _trashed_since(asset, body["trashedAfter"]))
    )


def _trashed_since(asset: FakeAsset, stamp: str) -> bool:
    return asset.trashed_at is not None and asset.trashed_at >= parse_date(stamp)


def asset_dto(asset: FakeAsset, *, exif: bool) -> dict[str, Any]:
    ext = Path(asset.original_file_name).suffix.lower()
    dto: dict[str, Any] = {
        "id": asset.id,
        "type": asset.type,
        "originalFileName": asset.original_file_name,
        "originalPath": f"/data/upload/{asset.owner_id}/{asset.id[:2]}/{asset.id}{ext}",
        "originalMimeType": asset.mime_type or "application/octet-stream",
        "checksum": base64.b64encode(asset.checksum).decode(),
        "fileCreatedAt": iso(asset.file_created_at),
        "fileModifiedAt": iso(asset.file_modified_at),
        "localDateTime": iso(local_time(asset.file_created_at).replace(tzinfo=UTC)),
        "createdAt": iso(asset.created),
        "updatedAt": iso(asset.updated),
        "duration": asset.duration_ms,
        "width": None,
        "height": None,
        "isFavorite": asset.is_favorite,
        "isArchived": asset.visibility == "archive",
        "isTrashed": asset.is_trashed,
        "isOffline": False,
        "isEdited": False,
        "hasMetadata": True,
        "thumbhash": None,
        "ownerId": asset.owner_id,
        "visibility": asset.visibility,
        "livePhotoVideoId": asset.live_photo_video_id,
        "libraryId": asset.library_id,
    }
    if exif:
        dto["exifInfo"] = {
            "fileSizeInByte": asset.file_size,
            "description": asset.description,
            # The exif schema allows 1-5 or null; a rejected photo (-1) reads as null there.
            "rating": asset.rating if asset.rating and asset.rating > 0 else None,
        }
    return dto


def album_dto(album: FakeAlbum, owner: FakeUser) -> dict[str, Any]:
    return {
        "id": album.id,
        "albumName": album.name,
        "description": album.description,
        "assetCount": len(album.asset_ids),
        "albumThumbnailAssetId": album.asset_ids[0] if album.asset_ids else None,
        "albumUsers": [
            {
                "role": "owner",
                "user": {
                    "id": owner.id,
                    "name": owner.name,
                    "email": owner.email,
                    "avatarColor": "primary",
                    "profileImagePath": "",
                    "profileChangedAt": iso(owner.created),
                },
            }
        ],
        "shared": False,
        "hasSharedLink": False,
        "isActivityEnabled": True,
        "createdAt": iso(album.created),
        "updatedAt": iso(album.updated or album.created),
        "order": "desc",
    }


def error(status: int, message: str) -> Response:
    body = {
        "message": message,
        "error": HTTPStatus(status).phrase,
        "statusCode": status,
        "correlationId": secrets.token_hex(4),
    }
    return Response(status, json.dumps(body).encode())


def invalid(problems: list[dict[str, Any]]) -> Response:
    body = {"statusCode": 400, "message": "Validation failed", "errors": problems}
    return Response(400, json.dumps(body, default=str).encode())


def no_access(op: Operation) -> Response:
    return error(400, f"Not found or no {op.permission} access")


def from_checksum(text: str) -> bytes | None:
    """SHA-1 from hex (40) or base64 (28), as Immich's ``fromChecksum`` reads it."""
    try:
        if len(text) == 40:
            return bytes.fromhex(text)
        if len(text) == 28:
            raw = base64.b64decode(text, validate=True)
            return raw if len(raw) == 20 else None
    except (ValueError, binascii.Error):
        return None
    return None


def asset_type(name: str) -> str | None:
    ext = Path(name).suffix.lower()
    if ext in MEDIA_TYPES["image"]:
        return "IMAGE"
    if ext in MEDIA_TYPES["video"]:
        return "VIDEO"
    return None


def form_text(form: dict[str, FormField], name: str) -> str | None:
    part = form.get(name)
    return None if part is None else part.data.decode("utf-8")


def parse_date(text: str) -> datetime:
    return datetime.fromisoformat(text)


def local_time(moment: datetime) -> datetime:
    """The wall-clock time at the moment's own offset (Immich's ``localDateTime``)."""
    return moment.replace(tzinfo=None)


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
