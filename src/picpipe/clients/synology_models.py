"""Values the Synology Photos client returns, and what the NAS's error codes mean.

The codes (NOTES §4) are sorted into: the session is gone (log in again, once), the NAS is busy
(retry with backoff), and everything else (permanent: a clear one-line error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# 105/106/107/119: the session lacks rights, timed out, was kicked or is unknown; 803 is how
# Photos says "no permission" after a session timeout (NOTES §12).
SESSION_GONE = frozenset({105, 106, 107, 119, 803})
# Network unstable / system busy (NOTES §4, §12).
TRANSIENT = frozenset({109, 110, 111, 117, 118})

AUTH_MESSAGES: dict[int, str] = {
    400: "wrong account or password",
    401: "the account is disabled (or a guest account)",
    402: "permission denied for this account (try `session: webui`)",
    405: "the login went to the wrong app portal (check `url`)",
    406: "2-step verification must be set up for this account first (DSM → Personal → Security)",
    407: "this address is blocked after failed logins (DSM → Security → Auto Block)",
    408: "the password has expired and cannot be changed here",
    409: "the password has expired; change it in DSM",
    410: "the password must be changed in DSM first",
    411: "the account is locked",
}
OTP_NEEDED = 403
OTP_WRONG = 404

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
class ItemScope:
    """What an item listing covers: one album (by id or passphrase) or the shared space."""

    album_id: int | None = None
    passphrase: str | None = None
    team: bool = False  # SYNO.FotoTeam.*: the shared space

    def params(self) -> dict[str, Any]:
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


__all__ = [
    "AUTH_MESSAGES",
    "OTP_NEEDED",
    "OTP_WRONG",
    "SESSION_GONE",
    "TRANSIENT",
    "Album",
    "ApiInfo",
    "Download",
    "Item",
    "ItemScope",
    "Space",
]
