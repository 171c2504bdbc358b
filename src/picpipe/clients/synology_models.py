"""Values the Synology Photos client returns, parsed from the NAS's JSON (NOTES §5, §6), and
how it writes values into a request (NOTES §1)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

Space = Literal["personal", "shared"]


@dataclass(frozen=True, slots=True)
class ApiInfo:
    """One API of ``SYNO.API.Info``: where it answers and its highest version."""

    path: str
    max_version: int


@dataclass(frozen=True, slots=True)
class Album:
    """A personal album, own or shared with the account (then ``passphrase`` is set)."""

    id: int
    name: str
    item_count: int
    passphrase: str

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Album:
        return cls(
            id=int(raw["id"]),
            name=str(raw.get("name", "")),
            item_count=int(raw.get("item_count", 0)),
            passphrase=str(raw.get("passphrase") or ""),
        )


@dataclass(frozen=True, slots=True)
class Folder:
    """A folder of a space; ``name`` is its full path ("/2024/kitchen", the root "/")."""

    id: int
    name: str

    @property
    def path(self) -> str:
        return self.name.strip("/")

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Folder:
        return cls(id=int(raw["id"]), name=str(raw.get("name") or "/"))


@dataclass(frozen=True, slots=True)
class ItemScope:
    """What an item listing covers: one album (by id or passphrase), one folder, or the
    whole Shared Space."""

    album_id: int | None = None
    passphrase: str | None = None
    team: bool = False  # SYNO.FotoTeam.*: the shared space
    folder_id: int | None = None  # one folder's own items (not its subfolders')

    def params(self) -> dict[str, Any]:
        if self.folder_id is not None:
            return {"folder_id": self.folder_id}
        if self.passphrase:
            return {"passphrase": self.passphrase}
        if self.album_id is not None:
            return {"album_id": self.album_id}
        return {}


@dataclass(frozen=True, slots=True)
class Item:
    """One photo, video or Live Photo; ``time`` is when it was taken (unix seconds)."""

    id: int
    filename: str
    filesize: int
    time: int
    kind: str  # photo | video | live
    owner_user_id: int
    cache_key: str
    indexed_ms: int

    @property
    def in_shared_space(self) -> bool:
        return self.owner_user_id == 0

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Item:
        thumb = (raw.get("additional") or {}).get("thumbnail") or {}
        return cls(
            id=int(raw["id"]),
            filename=str(raw["filename"]),
            filesize=int(raw.get("filesize", 0)),
            time=int(raw.get("time", 0)),
            kind=str(raw.get("type", "photo")),
            owner_user_id=int(raw.get("owner_user_id", 1)),
            cache_key=str(thumb.get("cache_key") or f"{raw['id']}_{raw.get('time', 0)}"),
            indexed_ms=int(raw.get("indexed_time", 0)),
        )


@dataclass(frozen=True, slots=True)
class Download:
    """A finished download: how many bytes were written and whether they are a zip."""

    size: int
    content_type: str
    is_zip: bool


def form_value(value: Any) -> str:
    """NOTES §1: arrays, objects and booleans as JSON; strings bare unless they would decode
    as something else (a numeric passphrase), then JSON-quoted."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
        return json.dumps(value)
    if isinstance(value, bool | list | dict):
        return json.dumps(value)
    return str(value)


__all__ = [
    "Album",
    "ApiInfo",
    "Download",
    "Folder",
    "Item",
    "ItemScope",
    "Space",
    "form_value",
]
