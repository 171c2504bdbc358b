"""Choose the capture time and where it came from.

Order: EXIF DateTimeOriginal (+ OffsetTimeOriginal) and other embedded local capture dates
(QuickTime Keys, 3GP udta, AVCHD, RIFF, CIFF) → QuickTime CreateDate (UTC) → an XMP sidecar
that came with the file → GPS time (UTC) → file-name patterns → file mtime. All-zero and
impossible dates count as missing. The local date (never the UTC date) decides the folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from collections.abc import Mapping

DateSource = Literal["exif", "quicktime", "quicktime-utc", "sidecar", "gps", "filename", "mtime"]

EARLIEST = datetime(1826, 1, 1)  # the first surviving photograph
FUTURE_SLACK = timedelta(days=1)  # clocks run ahead by a time zone or so, not by days

_STAMP = re.compile(
    r"^\s*(\d{4})[:\-/](\d{2})[:\-/](\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?(?:[.,]\d+)?"
    r"\s*(Z|[+\-]\d{2}:?\d{2})?"
)
_OFFSET = re.compile(r"^\s*([+\-])(\d{2}):?(\d{2})\s*$")

# Embedded local capture dates, best first (exiftool family-1 group names).
_LOCAL_DATE_TAGS = (
    ("ExifIFD:DateTimeOriginal", "exif"),
    ("XMP-exif:DateTimeOriginal", "exif"),
    ("Keys:CreationDate", "quicktime"),
    ("UserData:DateTimeOriginal", "quicktime"),
    ("ItemList:CreationDate", "quicktime"),
    ("H264:DateTimeOriginal", "quicktime"),
    ("RIFF:DateTimeOriginal", "quicktime"),
    ("CanonRaw:DateTimeOriginal", "exif"),
    ("IFD0:DateTimeOriginal", "exif"),
    ("XMP-photoshop:DateCreated", "exif"),
)
_SIDECAR_DATE_TAGS = (
    "XMP-exif:DateTimeOriginal",
    "XMP-photoshop:DateCreated",
    "XMP-xmp:CreateDate",
)
_FILENAME_PATTERNS = (
    # IMG_20230405_123456, PXL_20230405_123456789, VID_..., 20230405_123456, 20230405-123456
    re.compile(r"(?<!\d)((?:19|20)\d{2})(\d{2})(\d{2})[_\-T ]?(\d{2})(\d{2})(\d{2})"),
    # Screenshot_2023-04-05-12-34-56, 2023-04-05 12.34.56
    re.compile(
        r"(?<!\d)((?:19|20)\d{2})-(\d{2})-(\d{2})[_\- ](\d{2})[\-.:](\d{2})[\-.:](\d{2})(?!\d)"
    ),
)
_FILENAME_DAY = re.compile(r"(?<!\d)((?:19|20)\d{2})(\d{2})(\d{2})-WA\d+")  # WhatsApp


@dataclass(frozen=True, slots=True)
class CaptureTime:
    """Wall-clock capture time, its UTC offset in minutes when known, and its origin."""

    local: datetime  # naive: the time on the photographer's clock
    offset_min: int | None
    source: DateSource

    @property
    def utc(self) -> datetime | None:
        if self.offset_min is None:
            return None
        return self.local - timedelta(minutes=self.offset_min)


def parse_stamp(value: Any) -> tuple[datetime, int | None] | None:
    """Parse an exiftool date (``2021:04:10 11:43:59+01:00``); None when missing or impossible."""
    if not isinstance(value, str):
        return None
    match = _STAMP.match(value)
    if not match:
        return None
    year, month, day, hour, minute = (int(match.group(i)) for i in range(1, 6))
    second = int(match.group(6) or 0)
    try:
        local = datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError:
        return None
    if not plausible(local):
        return None
    return local, parse_offset(match.group(7))


def parse_offset(value: Any) -> int | None:
    """``+05:30`` → 330; ``Z`` → 0; anything else → None."""
    if not isinstance(value, str):
        return None
    if value.strip() == "Z":
        return 0
    match = _OFFSET.match(value)
    if not match:
        return None
    minutes = int(match.group(2)) * 60 + int(match.group(3))
    if minutes > 14 * 60:
        return None
    return -minutes if match.group(1) == "-" else minutes


def plausible(local: datetime, now: datetime | None = None) -> bool:
    """Not before photography existed and not in the future (beyond a day of clock slack)."""
    now = now or datetime.now()
    return EARLIEST <= local <= now + FUTURE_SLACK


def choose_capture_time(
    tags: Mapping[str, Any],
    *,
    name: str,
    mtime_ns: int,
    sidecar: Mapping[str, Any] | None = None,
    default_tz: tzinfo | None = None,
) -> tuple[CaptureTime, list[str]]:
    """The best capture time from exiftool ``tags``; returns it and any problems noticed."""
    problems: list[str] = []
    for tag, source in _LOCAL_DATE_TAGS:
        if tag not in tags:
            continue
        parsed = parse_stamp(tags[tag])
        if parsed is None:
            problems.append(f"{tag} {tags[tag]!r} is not a usable date; ignored")
            continue
        local, offset = parsed
        if offset is None and tag == "ExifIFD:DateTimeOriginal":
            offset = parse_offset(tags.get("ExifIFD:OffsetTimeOriginal"))
        return CaptureTime(local, offset, source), problems  # type: ignore[arg-type]
    utc = _utc_stamp(tags.get("QuickTime:CreateDate"))
    if utc is not None:
        return _from_utc(utc, "quicktime-utc", default_tz), problems
    if sidecar:
        for tag in _SIDECAR_DATE_TAGS:
            parsed = parse_stamp(sidecar.get(tag))
            if parsed is not None:
                return CaptureTime(parsed[0], parsed[1], "sidecar"), problems
    gps = _utc_stamp(tags.get("Composite:GPSDateTime"))
    if gps is not None:
        return _from_utc(gps, "gps", default_tz), problems
    from_name = date_from_filename(name)
    if from_name is not None:
        return CaptureTime(from_name, None, "filename"), problems
    return _from_mtime(mtime_ns, default_tz), problems


def date_from_filename(name: str) -> datetime | None:
    """A capture time encoded in a camera or phone file name, if there is a plausible one."""
    for pattern in _FILENAME_PATTERNS:
        for match in pattern.finditer(name):
            year, month, day, hour, minute, second = (int(g) for g in match.groups())
            try:
                value = datetime(year, month, day, hour, minute, second)
            except ValueError:
                continue
            if plausible(value):
                return value
    day_match = _FILENAME_DAY.search(name)
    if day_match:
        try:
            year, month, day = (int(day_match.group(i)) for i in (1, 2, 3))
            value = datetime(year, month, day)
        except ValueError:
            return None
        if plausible(value):
            return value
    return None


def resolve_timezone(name: str | None) -> tzinfo:
    """The zone for UTC-only dates: an IANA name, or this machine's local zone."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    local = datetime.now().astimezone().tzinfo
    return local if local is not None else UTC


def _utc_stamp(value: Any) -> datetime | None:
    parsed = parse_stamp(value)
    if parsed is None:
        return None
    moment, offset = parsed
    if offset:
        moment -= timedelta(minutes=offset)
    return moment


def _from_utc(utc: datetime, source: DateSource, zone: tzinfo | None) -> CaptureTime:
    aware = utc.replace(tzinfo=UTC).astimezone(zone or resolve_timezone(None))
    return CaptureTime(aware.replace(tzinfo=None), _offset_minutes(aware), source)


def _from_mtime(mtime_ns: int, zone: tzinfo | None) -> CaptureTime:
    aware = datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC)
    aware = aware.astimezone(zone or resolve_timezone(None)).replace(microsecond=0)
    return CaptureTime(aware.replace(tzinfo=None), _offset_minutes(aware), "mtime")


def _offset_minutes(aware: datetime) -> int:
    delta = aware.utcoffset() or timedelta(0)
    return int(delta.total_seconds() // 60)
