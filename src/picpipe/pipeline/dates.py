"""Choose the capture time, where it came from, and where its UTC offset came from.

Order: an XMP sidecar that came with the file (the user's correction wins) → EXIF
DateTimeOriginal (+ OffsetTimeOriginal) → XMP exif:DateTimeOriginal → other embedded local
capture dates (QuickTime Keys, 3GP udta, AVCHD, RIFF, CIFF) → IPTC DateCreated + TimeCreated
→ XMP photoshop:DateCreated → QuickTime CreateDate (UTC) → GPS time (UTC; GPS date + time
stamp, XMP exif:GPSDateTime, QuickTime location date) → file-name patterns → file mtime.
All-zero and impossible dates count as missing. The local date (never the UTC date) decides
the folder.

A local time without an offset gets one from the time zone of the photo's GPS position at
that moment (``gps-zone``, DST included), else from a configured zone for its source or
camera (``configured``), else it stays floating (no offset). A UTC-only time is shown in the
same zones, else in ``default_tz`` (``default``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from collections.abc import Mapping

DateSource = Literal[
    "exif", "xmp", "iptc", "quicktime", "quicktime-utc", "sidecar", "gps", "filename", "mtime"
]
# Where the UTC offset came from: a tag beside the date, the time zone of the GPS position,
# the configured zone of the source or camera, or the import's default zone (UTC-only dates).
OffsetSource = Literal["tag", "gps-zone", "configured", "default"]

EARLIEST = datetime(1826, 1, 1)  # the first surviving photograph
FUTURE_SLACK = timedelta(days=1)  # clocks run ahead by a time zone or so, not by days

_STAMP = re.compile(
    r"^\s*(\d{4})[:\-/](\d{2})[:\-/](\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?(?:[.,]\d+)?"
    r"\s*(Z|[+\-]\d{2}:?\d{2})?"
)
_OFFSET = re.compile(r"^\s*([+\-])(\d{2}):?(\d{2})\s*$")

# Embedded local capture dates, best first (exiftool family-1 group names).
_LOCAL_DATE_TAGS: tuple[tuple[str, DateSource], ...] = (
    ("ExifIFD:DateTimeOriginal", "exif"),
    ("XMP-exif:DateTimeOriginal", "xmp"),
    ("Keys:CreationDate", "quicktime"),
    ("UserData:DateTimeOriginal", "quicktime"),
    ("ItemList:CreationDate", "quicktime"),
    ("H264:DateTimeOriginal", "quicktime"),
    ("RIFF:DateTimeOriginal", "quicktime"),
    ("CanonRaw:DateTimeOriginal", "exif"),
    ("IFD0:DateTimeOriginal", "exif"),
    ("Composite:DateTimeCreated", "iptc"),  # IPTC DateCreated + TimeCreated, with its offset
    ("XMP-photoshop:DateCreated", "xmp"),
)
# UTC instants: the QuickTime movie header, then GPS time from any group.
_UTC_DATE_TAGS: tuple[tuple[str, DateSource], ...] = (
    ("QuickTime:CreateDate", "quicktime-utc"),
    ("Composite:GPSDateTime", "gps"),
    ("XMP-exif:GPSDateTime", "gps"),
    ("Keys:LocationDate", "gps"),
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
    offset_source: OffsetSource | None = None  # None exactly when offset_min is None

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
    place_zone: tzinfo | None = None,
    configured_zone: tzinfo | None = None,
) -> tuple[CaptureTime, list[str]]:
    """The best capture time from exiftool ``tags``; returns it and any problems noticed.

    ``sidecar`` is the record of an XMP sidecar that came with the file, ``place_zone`` the
    time zone at the photo's GPS position, ``configured_zone`` the zone configured for its
    source or camera; ``default_tz`` shows UTC-only dates when neither zone is known.
    """
    problems: list[str] = []
    embedded = _embedded_local(tags, problems)
    if sidecar:
        for tag in _SIDECAR_DATE_TAGS:
            parsed = parse_stamp(sidecar.get(tag))
            if parsed is None:
                continue
            local, offset = parsed
            if offset is None and embedded is not None and embedded.local == local:
                offset = embedded.offset_min  # the same moment, with the file's offset
            return _zoned(local, offset, "sidecar", place_zone, configured_zone), problems
    if embedded is not None:
        return _zoned(
            embedded.local, embedded.offset_min, embedded.source, place_zone, configured_zone
        ), problems
    for tag, source in _UTC_DATE_TAGS:
        utc = _utc_stamp(tags.get(tag))
        if utc is not None:
            return _from_utc(utc, source, place_zone, configured_zone, default_tz), problems
    utc = _gps_stamps(tags)
    if utc is not None:
        return _from_utc(utc, "gps", place_zone, configured_zone, default_tz), problems
    from_name = date_from_filename(name)
    if from_name is not None:
        return _zoned(from_name, None, "filename", place_zone, configured_zone), problems
    moment = datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC).replace(microsecond=0, tzinfo=None)
    return _from_utc(moment, "mtime", place_zone, configured_zone, default_tz), problems


def _embedded_local(tags: Mapping[str, Any], problems: list[str]) -> CaptureTime | None:
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
        return CaptureTime(local, offset, source, "tag" if offset is not None else None)
    return None


def _gps_stamps(tags: Mapping[str, Any]) -> datetime | None:
    # GPSDateStamp + GPSTimeStamp when exiftool did not combine them (e.g. not in one group).
    day, time = tags.get("GPS:GPSDateStamp"), tags.get("GPS:GPSTimeStamp")
    if isinstance(day, str) and isinstance(time, str):
        return _utc_stamp(f"{day} {time}Z")
    return None


def _zoned(
    local: datetime,
    offset: int | None,
    source: DateSource,
    place_zone: tzinfo | None,
    configured_zone: tzinfo | None,
) -> CaptureTime:
    """A wall-clock time; without an offset, the offset of the place's or configured zone."""
    if offset is not None:
        return CaptureTime(local, offset, source, "tag")
    for zone, origin in ((place_zone, "gps-zone"), (configured_zone, "configured")):
        if zone is not None:
            aware = local.replace(tzinfo=zone)
            return CaptureTime(local, _offset_minutes(aware), source, origin)  # type: ignore[arg-type]
    return CaptureTime(local, None, source)


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


def _from_utc(
    utc: datetime,
    source: DateSource,
    place_zone: tzinfo | None,
    configured_zone: tzinfo | None,
    default_tz: tzinfo | None,
) -> CaptureTime:
    zone: tzinfo = place_zone or configured_zone or default_tz or resolve_timezone(None)
    origin: OffsetSource = (
        "gps-zone" if place_zone else "configured" if configured_zone else "default"
    )
    aware = utc.replace(tzinfo=UTC).astimezone(zone)
    return CaptureTime(aware.replace(tzinfo=None), _offset_minutes(aware), source, origin)


def _offset_minutes(aware: datetime) -> int:
    delta = aware.utcoffset() or timedelta(0)
    return int(delta.total_seconds() // 60)
