"""Values the Immich client returns, and the JSON → value parsing behind them (API v3).

Pure data and functions, no I/O: `picpipe.clients.immich` does the talking.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_ASSET_ID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


def is_asset_id(text: str) -> bool:
    """True for the UUID form Immich gives asset ids (anything else cannot name an asset)."""
    return bool(_ASSET_ID.match(text))


def rfc3339(moment: datetime) -> str:
    """A date as Immich 3 accepts it: milliseconds and ``Z`` or ``±hh:mm``.

    A naive datetime raises ValueError: v3 refuses dates without an offset (400), and guessing
    one here would move photos in the timeline.
    """
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError(f"{moment!r} has no UTC offset; Immich needs one")
    if offset.seconds % 60 or offset.microseconds:  # the pattern has no seconds in offsets
        moment = moment.astimezone(UTC)
    text = moment.isoformat(timespec="milliseconds")
    return f"{text[:-6]}Z" if text.endswith("+00:00") else text


def sha1_hex(checksum: str) -> str | None:
    """Immich's base64 SHA-1 (``AssetResponseDto.checksum``) as hex; None if it is not one."""
    try:
        raw = base64.b64decode(checksum, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 20 else None


@dataclass(frozen=True, slots=True)
class ServerVersion:
    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """``GET /api-keys/me``: the key's name and what it may do."""

    name: str
    permissions: frozenset[str]

    def allows(self, permission: str) -> bool:
        return "all" in self.permissions or permission in self.permissions


@dataclass(frozen=True, slots=True)
class MediaTypes:
    """File extensions the server accepts, lower case with the dot (``".jpg"``)."""

    image: frozenset[str]
    video: frozenset[str]
    sidecar: frozenset[str]


@dataclass(frozen=True, slots=True)
class BulkCheckResult:
    id: str  # the caller's token, echoed
    action: str  # accept | reject
    reason: str | None = None  # duplicate | unsupported-format
    asset_id: str | None = None
    is_trashed: bool = False


@dataclass(frozen=True, slots=True)
class UploadResult:
    id: str
    status: str  # created | duplicate (a newer server may say more, e.g. "restored")


@dataclass(frozen=True, slots=True)
class ImmichAsset:
    """The fields of ``AssetResponseDto`` picpipe reads."""

    id: str
    type: str  # IMAGE | VIDEO | AUDIO | OTHER
    original_file_name: str
    checksum: str  # base64 SHA-1, as Immich stores it
    file_size: int | None  # exifInfo.fileSizeInByte, when the server sent it
    is_trashed: bool
    visibility: str
    live_photo_video_id: str | None
    file_created_at: str
    local_date_time: str
    # Read by the Immich source: the listing's high-water mark, the external-library mark.
    updated_at: str = ""
    file_modified_at: str = ""
    library_id: str | None = None

    @property
    def sha1(self) -> str | None:
        return sha1_hex(self.checksum)


@dataclass(frozen=True, slots=True)
class ImmichAlbum:
    id: str
    name: str
    asset_count: int
    updated_at: str = ""  # changes when assets are added or removed


@dataclass(frozen=True, slots=True)
class SearchPage:
    assets: list[ImmichAsset]
    next_page: int | None


# -- JSON → values -----------------------------------------------------------


def parse_asset(item: dict[str, Any]) -> ImmichAsset:
    exif = item.get("exifInfo") or {}
    size = exif.get("fileSizeInByte")
    return ImmichAsset(
        id=str(item["id"]),
        type=str(item["type"]),
        original_file_name=str(item["originalFileName"]),
        checksum=str(item["checksum"]),
        file_size=int(size) if size is not None else None,
        is_trashed=bool(item["isTrashed"]),
        visibility=str(item.get("visibility", "timeline")),
        live_photo_video_id=item.get("livePhotoVideoId"),
        file_created_at=str(item["fileCreatedAt"]),
        local_date_time=str(item["localDateTime"]),
        updated_at=str(item.get("updatedAt", "")),
        file_modified_at=str(item.get("fileModifiedAt", "")),
        library_id=item.get("libraryId"),
    )


def parse_album(item: dict[str, Any]) -> ImmichAlbum:
    return ImmichAlbum(
        str(item["id"]),
        str(item["albumName"]),
        int(item["assetCount"]),
        str(item.get("updatedAt", "")),
    )


def parse_bulk_results(body: Any) -> list[BulkCheckResult]:
    return [
        BulkCheckResult(
            id=str(item["id"]),
            action=str(item["action"]),
            reason=item.get("reason"),
            asset_id=item.get("assetId"),
            is_trashed=bool(item.get("isTrashed", False)),
        )
        for item in body["results"]
    ]


def parse_bulk_ids(body: Any) -> list[dict[str, Any]]:
    """``BulkIdResponseDto[]``: one ``{id, success, error?}`` per asset."""
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        raise TypeError("expected a list of results")
    return body
