"""The JSON shapes of assets over HTTP, and the caption headers of ``/files``.

One place decides what a client sees of an asset: the summary (gallery pages, ``/api/assets``),
the caption (``/files`` headers and ``/files/random.json``). Times are the local wall-clock
time of the picture with its UTC offset when known (``2021-04-10T11:44:00+01:00``); library
paths are never shown.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from picpipe.catalog.models import Asset

SIZES = ("tiny", "small", "medium", "full")
_QUARTER_TURNS = (5, 6, 7, 8)
# Kept readable in headers; everything else (non-ASCII, control characters) is %-encoded UTF-8.
_HEADER_SAFE = " !#$&'()*+,-./:;<=>?@[]^_`{|}~"


def taken_iso(asset: Asset) -> str:
    """The capture time as ISO 8601, with its UTC offset when the catalog knows it."""
    local = asset.taken_local
    if asset.taken_offset_min is not None:
        local = local.replace(tzinfo=timezone(timedelta(minutes=asset.taken_offset_min)))
    return local.isoformat()


def display_size(asset: Asset) -> tuple[int | None, int | None]:
    """Width and height as shown upright (EXIF orientations 5-8 swap them)."""
    if asset.orientation in _QUARTER_TURNS:
        return asset.height, asset.width
    return asset.width, asset.height


def camera_label(asset: Asset) -> str | None:
    """``make model``, without repeating a make the model already starts with."""
    make, model = (asset.make or "").strip(), (asset.model or "").strip()
    if make and model.lower().startswith(make.lower().split(" ")[0]):
        return model
    return " ".join(part for part in (make, model) if part) or None


def place(asset: Asset) -> dict[str, float | str | None] | None:
    """GPS position and the nearest named place (city, region, country; None when unknown)."""
    if asset.gps_lat is None or asset.gps_lon is None:
        return None
    return {
        "lat": asset.gps_lat,
        "lon": asset.gps_lon,
        "alt": asset.gps_alt,
        "city": asset.city,
        "region": asset.region,
        "country": asset.country,
    }


def place_label(asset: Asset) -> str | None:
    """``Amesbury, England, United Kingdom``: the place names the catalog has."""
    parts = [p for p in (asset.city, asset.region, asset.country) if p]
    return ", ".join(dict.fromkeys(parts)) or None


def urls(sha256: str) -> dict[str, str]:
    return {size: f"/api/assets/{sha256}/{size}" for size in SIZES}


def summary(asset: Asset) -> dict[str, Any]:
    """What a gallery needs of one asset."""
    width, height = display_size(asset)
    return {
        "sha256": asset.sha256,
        "kind": asset.kind,
        "mime_type": asset.mime_type,
        "name": asset.original_name,
        "size": asset.size,
        "taken": taken_iso(asset),
        "date_source": asset.date_source,
        "camera": camera_label(asset),
        "width": width,
        "height": height,
        "duration": asset.duration,
        "place": place(asset),
        "rating": asset.rating,
        "title": asset.title,
        "thumbs": asset.thumbs_state,
        "pair_kind": asset.pair_kind,
        "problems": asset.problems or [],
        "urls": urls(asset.sha256),
    }


def detail(asset: Asset) -> dict[str, Any]:
    """Everything the catalog knows of one asset, paths excepted."""
    return summary(asset) | {
        "file_type": asset.file_type,
        "taken_local": asset.taken_local.isoformat(),
        "taken_offset_min": asset.taken_offset_min,
        "offset_source": asset.offset_source,
        "taken_utc": _iso(asset.taken_utc),
        "make": asset.make,
        "model": asset.model,
        "lens": asset.lens,
        "orientation": asset.orientation,
        "stored_width": asset.width,
        "stored_height": asset.height,
        "video_codec": asset.video_codec,
        "live_photo_id": asset.live_photo_id,
        "pair_id": asset.pair_id,
        "thumbs_error": asset.thumbs_error,
        "keywords": asset.keywords or [],
        "rating": asset.rating,
        "label": asset.label,
        "title": asset.title,
        "description": asset.description,
        "regions": asset.regions or [],
        "imported_at": _iso(asset.imported_at, utc=True),
        "session_id": asset.session_id,
    }


def caption(asset: Asset, *, size: str) -> dict[str, Any]:
    """The facts a wall frame shows under a photo, and where to get it at ``size``."""
    width, height = display_size(asset)
    return {
        "key": asset.sha256,
        "url": f"/files/{asset.sha256}.jpg?size={size}",
        "name": asset.original_name,
        "taken": taken_iso(asset),
        "camera": camera_label(asset),
        "make": asset.make,
        "model": asset.model,
        "place": place(asset),
        "width": width,
        "height": height,
        "kind": asset.kind,
    }


def caption_headers(asset: Asset) -> dict[str, str]:
    """The caption as ``X-Picpipe-*`` response headers (ASCII; text is %-encoded UTF-8)."""
    headers = {
        "X-Picpipe-Key": asset.sha256,
        "X-Picpipe-Taken": taken_iso(asset),
        "X-Picpipe-Name": header_text(asset.original_name),
    }
    if (camera := camera_label(asset)) is not None:
        headers["X-Picpipe-Camera"] = header_text(camera)
    if asset.gps_lat is not None and asset.gps_lon is not None:
        headers["X-Picpipe-Lat"] = f"{asset.gps_lat:.6f}"
        headers["X-Picpipe-Lon"] = f"{asset.gps_lon:.6f}"
    if (label := place_label(asset)) is not None:
        headers["X-Picpipe-Place"] = header_text(label)
    for name, value in (("City", asset.city), ("Region", asset.region), ("Country", asset.country)):
        if value:
            headers[f"X-Picpipe-{name}"] = header_text(value)
    return headers


def header_text(value: str) -> str:
    """``value`` safe for an HTTP header: printable ASCII kept, the rest %-encoded as UTF-8."""
    return quote(value, safe=_HEADER_SAFE)


def _iso(value: datetime | None, *, utc: bool = False) -> str | None:
    if value is None:
        return None
    return value.isoformat() + ("Z" if utc and value.tzinfo is None else "")
