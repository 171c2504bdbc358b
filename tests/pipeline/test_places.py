"""Place names from GPS positions, offline: catalog, API filter, captions and /files headers."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

from picpipe.catalog.models import Asset
from picpipe.pipeline.places import place_name
from picpipe.pipeline.zones import zone_at
from picpipe.samples import make_jpeg
from picpipe.web import shapes
from picpipe.web.app import create_app
from tests.conftest import LibraryFixture
from tests.web.conftest import TestClient

STONEHENGE = (51.1789, -1.8262)
KYOTO = (35.0116, 135.7681)
MID_ATLANTIC = (30.0, -40.0)


def test_nearest_place_with_region_and_country() -> None:
    stonehenge = place_name(*STONEHENGE)
    assert stonehenge is not None
    assert (stonehenge.region, stonehenge.country) == ("England", "United Kingdom")
    assert stonehenge.city
    kyoto = place_name(*KYOTO)
    assert kyoto is not None
    assert kyoto.country == "Japan"
    assert kyoto.region == "Kyoto"
    assert place_name(*MID_ATLANTIC) is None, "no town within 50 km: no name"


def test_the_grid_is_kept_for_the_next_process(tmp_path: Path) -> None:
    """The first process parses GeoNames' file and keeps the grid; the next one loads it in a
    fraction of the time; a damaged cache file is parsed over, never trusted."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from picpipe.pipeline import places
        places.use_cache_dir(Path({str(tmp_path)!r}))
        began = time.process_time()
        found = places.place_name({STONEHENGE[0]}, {STONEHENGE[1]})
        print(found.country, found.region, round(time.process_time() - began, 3))
        """
    )

    def run() -> tuple[str, float]:
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout.split()
        return " ".join(out[:-1]), float(out[-1])

    parsed, parse_seconds = run()
    (kept,) = tmp_path.glob("geonames-*.marshal")
    loaded, load_seconds = run()
    assert parsed == loaded == "United Kingdom England"
    assert load_seconds < parse_seconds / 3, (load_seconds, parse_seconds)
    kept.write_bytes(b"not a grid")
    again, _ = run()
    assert again == parsed
    assert kept.read_bytes() != b"not a grid"  # written again, whole


def test_lookups_load_nothing_from_the_network() -> None:
    """With every socket refused, a fresh process still finds zones and place names."""
    script = textwrap.dedent(
        """
        import socket, urllib.request

        def refuse(*args, **kwargs):
            raise OSError("network access attempted")

        socket.socket = refuse
        socket.create_connection = refuse
        urllib.request.urlopen = refuse
        from picpipe.pipeline.places import place_name
        from picpipe.pipeline.zones import zone_at

        print(zone_at(51.1789, -1.8262), place_name(51.1789, -1.8262).country)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "Europe/London United Kingdom"
    assert str(zone_at(*KYOTO)) == "Asia/Tokyo"


def test_place_names_reach_catalog_api_and_captions(
    library: LibraryFixture, tmp_path: Path
) -> None:
    card = tmp_path / "card"
    taken = datetime(2022, 6, 1, 12)
    kyoto = make_jpeg(card / "kyoto.jpg", taken=taken, gps=KYOTO, seed=1).path
    henge = make_jpeg(card / "henge.jpg", taken=taken, gps=STONEHENGE, seed=2).path
    sea = make_jpeg(card / "sea.jpg", taken=taken, gps=MID_ATLANTIC, seed=3).path
    home = make_jpeg(card / "home.jpg", taken=taken, seed=4).path

    summary = library.run(library.folder(card, "card"), workers=2)

    assert (summary.new, summary.warnings) == (4, [])

    def asset(path: Path) -> Asset:
        with library.catalog.session() as db:
            row = db.get_one(Asset, hashlib.sha256(path.read_bytes()).hexdigest())
            db.expunge(row)
            return row

    one = asset(kyoto)
    assert (one.region, one.country) == ("Kyoto", "Japan")
    assert one.city
    assert (asset(sea).city, asset(sea).country) == (None, None)
    assert asset(home).country is None
    two = asset(henge)
    headers = shapes.caption_headers(two)
    assert unquote(headers["X-Picpipe-Country"]) == "United Kingdom"
    assert unquote(headers["X-Picpipe-Region"]) == "England"
    assert unquote(headers["X-Picpipe-Place"]).endswith("England, United Kingdom")
    assert "X-Picpipe-Place" not in shapes.caption_headers(asset(sea))

    with TestClient(create_app(library.settings)) as client:
        body = client.get("/api/assets", params={"place": "japan"}).json()
        assert [a["sha256"] for a in body["assets"]] == [one.sha256]
        assert body["assets"][0]["place"]["region"] == "Kyoto"
        england = client.get("/api/assets", params={"place": "England"}).json()["assets"]
        assert [a["sha256"] for a in england] == [two.sha256]
        city = client.get("/api/assets", params={"place": one.city.upper()}).json()["assets"]
        assert [a["sha256"] for a in city] == [one.sha256]
