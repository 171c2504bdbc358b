"""Turn exiftool's tags into the facts the catalog keeps (`MediaInfo`).

Missing or impossible values are dropped, not stored: latitude beyond ±90°, NaN, the 0,0
placeholder some phones write without a fix, orientation 0. Make and model are cut at NUL.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

from picpipe.pipeline.dates import CaptureTime, choose_capture_time
from picpipe.pipeline.descriptive import embedded_fields
from picpipe.pipeline.places import place_name
from picpipe.pipeline.truncation import TRUNCATED
from picpipe.pipeline.zones import ConfiguredZones, zone_at

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime, tzinfo

RAW_TYPES = frozenset(
    [
        "DNG",
        "CR2",
        "CR3",
        "CRW",
        "NEF",
        "NRW",
        "ARW",
        "SRF",
        "SR2",
        "RAF",
        "ORF",
        "RW2",
        "PEF",
        "SRW",
        "X3F",
        "3FR",
        "IIQ",
        "ERF",
        "MOS",
        "MRW",
        "KDC",
        "RWL",
    ]
)
_SIZE_GROUPS = ("File", "Track1", "Track2", "Track3", "H264", "RIFF", "CanonRaw", "QuickTime")
_ROTATION_TO_ORIENTATION = {90: 6, 180: 3, 270: 8}
# exiftool's words for picture data cut short (not for a truncated metadata directory).
_TRUNCATED_DATA = re.compile(r"truncated (?:'mdat' data|\w+ image)", re.IGNORECASE)


@dataclass(slots=True)
class MediaInfo:
    """What picpipe knows about one file's content, ready for the catalog."""

    file_type: str | None
    extension: str
    mime_type: str | None
    kind: str  # photo | raw | video | unknown (no decoder or magic recognised the bytes)
    taken: CaptureTime
    make: str | None = None
    model: str | None = None
    lens: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    gps_alt: float | None = None
    city: str | None = None  # the nearest named place to the GPS position (pipeline/places.py)
    region: str | None = None
    country: str | None = None
    width: int | None = None
    height: int | None = None
    orientation: int | None = None
    duration: float | None = None
    live_photo_id: str | None = None
    payload_sha256: str | None = None  # the coded image without metadata (pipeline/payload.py)
    problems: list[str] = field(default_factory=list)
    # What people add (digiKam and friends): embedded in the file (pipeline/descriptive.py),
    # overridden field by field by a sidecar that came with the file, then by picpipe's own
    # sidecar once it exists (see pipeline/sidecar.py).
    keywords: list[str] | None = None
    rating: int | None = None
    label: str | None = None
    title: str | None = None
    description: str | None = None
    regions: list[dict[str, Any]] | None = None
    source_sidecar: str | bytes | None = None  # the readable XMP that came with the file
    sidecar_mtime_ns: int | None = None  # of picpipe's sidecar, once written or read

    @property
    def taken_local(self) -> datetime:
        return self.taken.local


def media_info(
    tags: Mapping[str, Any],
    *,
    name: str,
    mtime_ns: int,
    sidecar: Mapping[str, Any] | None = None,
    default_tz: tzinfo | None = None,
    zones: ConfiguredZones | None = None,
    source: str | None = None,
) -> MediaInfo:
    """Build `MediaInfo` from one exiftool record (``{"Group:Tag": value}``).

    ``sidecar`` is the record of a sidecar that came with the file: its date and place win.
    A date without an offset takes it from the zone at the GPS position, else from ``zones``
    (for ``source`` or the camera); UTC-only dates are shown in those zones or ``default_tz``.
    """
    file_type = _text(tags.get("File:FileType"))
    mime = _text(tags.get("File:MIMEType"))
    position, gps_problems = _gps(tags, sidecar)
    make, model = _first_text(tags, "Make"), _first_text(tags, "Model")
    place_zone = zone_at(position[0], position[1]) if position is not None else None
    taken, problems = choose_capture_time(
        tags,
        name=name,
        mtime_ns=mtime_ns,
        sidecar=sidecar,
        default_tz=default_tz,
        place_zone=place_zone,
        configured_zone=zones.for_file(source, make, model) if zones is not None else None,
    )
    problems += gps_problems
    detected = _text(tags.get("File:FileTypeExtension"))
    if _is_media(file_type, mime) and detected:
        extension = detected.lower()  # the real type wins: a JPEG named .png is stored as .jpg
    else:
        # Not a photo or video (a text file named .jpg, zeros): kept as kind "unknown", under
        # the extension of what it really is, else .bin; never under the name's media suffix.
        extension = (detected or "bin").lower()
        what = file_type or "unknown"
        problems.append(f"content is not a recognised photo or video (detected: {what})")
    info = MediaInfo(
        file_type=file_type,
        extension=extension,
        mime_type=mime,
        kind=_kind(file_type, mime),
        taken=taken,
        problems=problems,
    )
    info.make, info.model = make, model
    info.lens = _first_text(tags, "LensModel") or _lens(tags)
    if position is not None:
        info.gps_lat, info.gps_lon, info.gps_alt = position
        if (named := place_name(position[0], position[1])) is not None:
            info.city, info.region, info.country = named.city, named.region, named.country
    info.width, info.height = _size(tags)
    info.orientation = _orientation(tags, info.kind)
    info.duration = _positive(_first(tags, "Duration"))
    info.live_photo_id = _first_text(tags, "ContentIdentifier") or _first_text(
        tags, "MediaGroupUUID"
    )
    for column, value in embedded_fields(tags).catalog_values().items():
        setattr(info, column, value)
    for key in ("ExifTool:Error", "ExifTool:Warning"):
        if key in tags and not str(tags[key]).startswith("[minor]"):
            message = str(tags[key])
            if _TRUNCATED_DATA.match(message):  # "Truncated PNG image", "Truncated 'mdat' data"
                info.problems.append(TRUNCATED)
            else:
                info.problems.append(f"exiftool: {message}")
    return info


def _is_media(file_type: str | None, mime: str | None) -> bool:
    if file_type and file_type.upper() in RAW_TYPES:
        return True
    return bool(mime and mime.startswith(("image/", "video/")))


def _kind(file_type: str | None, mime: str | None) -> str:
    if file_type and file_type.upper() in RAW_TYPES:
        return "raw"
    if mime and mime.startswith("video/"):
        return "video"
    return "photo" if _is_media(file_type, mime) else "unknown"


def _gps(
    tags: Mapping[str, Any], sidecar: Mapping[str, Any] | None
) -> tuple[tuple[float, float, float | None] | None, list[str]]:
    """(lat, lon, alt) rounded, or None; and the problems of an impossible position."""
    # A sidecar that came with the file is the user's correction: its position wins.
    lat = _number(sidecar.get("XMP-exif:GPSLatitude")) if sidecar else None
    lon = _number(sidecar.get("XMP-exif:GPSLongitude")) if sidecar else None
    if sidecar and lat is not None and lon is not None:
        alt = _number(sidecar.get("XMP-exif:GPSAltitude"))
    else:
        lat = _number(tags.get("Composite:GPSLatitude"))
        lon = _number(tags.get("Composite:GPSLongitude"))
        alt = _number(tags.get("Composite:GPSAltitude") or tags.get("GPS:GPSAltitude"))
    if lat is None or lon is None:
        return None, []
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None, [f"GPS position {lat:.6f},{lon:.6f} is out of range; ignored"]
    if lat == 0 and lon == 0:
        return None, ["GPS position 0,0 is a placeholder without a fix; ignored"]
    return (round(lat, 7), round(lon, 7), round(alt, 2) if alt is not None else None), []


def _size(tags: Mapping[str, Any]) -> tuple[int | None, int | None]:
    for group in _SIZE_GROUPS:
        width, height = tags.get(f"{group}:ImageWidth"), tags.get(f"{group}:ImageHeight")
        if _positive_int(width) and _positive_int(height):
            return width, height
    width, height = tags.get("ExifIFD:ExifImageWidth"), tags.get("ExifIFD:ExifImageHeight")
    if _positive_int(width) and _positive_int(height):
        return width, height
    sizes = [
        (int(tags[k]), int(tags[k.replace("Width", "Height")]))
        for k in tags
        if k.endswith(":ImageWidth")
        and _positive_int(tags[k])
        and _positive_int(tags.get(k.replace("Width", "Height")))
    ]
    if sizes:
        return max(sizes, key=lambda wh: wh[0] * wh[1])
    return None, None


def _orientation(tags: Mapping[str, Any], kind: str) -> int | None:
    if kind == "video":
        rotation = _number(_first(tags, "Rotation"))
        if rotation is None:
            return None
        return _ROTATION_TO_ORIENTATION.get(int(rotation) % 360, 1)
    value = tags.get("IFD0:Orientation")
    if isinstance(value, int) and 1 <= value <= 8:
        return value
    return None


def _lens(tags: Mapping[str, Any]) -> str | None:
    value = _first(tags, "Lens")
    return value if isinstance(value, str) and not value.isdigit() else None


def _first(tags: Mapping[str, Any], tag: str) -> Any:
    suffix = f":{tag}"
    for key, value in tags.items():
        if key.endswith(suffix) and key != f"Composite{suffix}":
            return value
    return tags.get(f"Composite{suffix}")


def _first_text(tags: Mapping[str, Any], tag: str) -> str | None:
    return _text(_first(tags, tag))


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).split("\x00", 1)[0].strip()
    return text[:200] or None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _positive(value: Any) -> float | None:
    number = _number(value)
    return number if number is not None and number > 0 else None


def _positive_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _name_ext(name: str) -> str | None:
    return name.rpartition(".")[2].lower() if "." in name else None
