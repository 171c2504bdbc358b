"""Time zones for capture times that carry no UTC offset: from the place, or from the config.

`zone_at` finds the IANA zone of a GPS position offline (timezonefinder's bundled boundary
data; nothing is fetched at run time), and zoneinfo then gives the offset at the moment of
the photo, DST included (see `pipeline/dates.py`). `ConfiguredZones` holds the zones the
config names for sources (``sources.NAME.timezone``) and cameras (``cameras: {"Canon EOS 5D":
"Europe/Berlin"}``, matched by model or "make model", case-insensitively).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from picpipe.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from picpipe.config import Settings

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
_FINDER: list[Any] = []  # the one TimezoneFinder of this process, made on first use


@dataclass(frozen=True, slots=True)
class ConfiguredZones:
    """Zones the config names, per source name and per camera (keys case-folded)."""

    sources: Mapping[str, ZoneInfo] = field(default_factory=dict)
    cameras: Mapping[str, ZoneInfo] = field(default_factory=dict)

    def for_file(self, source: str | None, make: str | None, model: str | None) -> ZoneInfo | None:
        """The camera's zone, else the source's; None when the config names neither."""
        for key in (model, f"{make} {model}" if make and model else None):
            if key and (zone := self.cameras.get(key.strip().casefold())) is not None:
                return zone
        return self.sources.get(source) if source is not None else None


def configured_zones(settings: Settings) -> ConfiguredZones:
    """The zones of ``settings``; ConfigError names a zone that is not an IANA name."""
    sources = {
        name: _zone(str(options["timezone"]), f"sources.{name}.timezone")
        for name, options in settings.sources.items()
        if options.get("timezone")
    }
    cameras = {
        camera.strip().casefold(): _zone(name, f"cameras.{camera}")
        for camera, name in settings.cameras.items()
    }
    return ConfiguredZones(sources, cameras)


def zone_at(lat: float, lon: float) -> ZoneInfo | None:
    """The time zone at a WGS84 position (the sea's nautical zones included); None if unknown."""
    with _LOCK:
        if not _FINDER:
            # Imported here: loading the boundary index takes 0.3 s, needed only with GPS.
            from timezonefinder import TimezoneFinder

            _FINDER.append(TimezoneFinder())
        name = _FINDER[0].timezone_at(lat=lat, lng=lon)
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.debug("time zone %s of %.4f,%.4f is unknown to zoneinfo", name, lat, lon)
        return None


def _zone(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(detail=f"{where}: {name!r} is not a time zone name") from exc
