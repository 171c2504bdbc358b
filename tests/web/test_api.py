"""The JSON API: filtered keyset pages, one asset's details, bytes at a size, collections."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from picpipe.catalog.db import Catalog, open_catalog
from picpipe.catalog.models import Asset
from picpipe.config import load_settings
from picpipe.web.app import create_app
from tests.web.conftest import ALBUM, TestClient, WebSite, add_assets


def walk(client: TestClient, limit: int, **params: object) -> list[dict[str, object]]:
    """Every asset of a listing, page by page."""
    out: list[dict[str, object]] = []
    cursor = None
    for _ in range(10_000):
        query = {"limit": limit, **params} | ({"cursor": cursor} if cursor else {})
        response = client.get("/api/assets", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["assets"]) <= limit
        out += body["assets"]
        cursor = body["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("the pages never ended")


def test_assets_come_newest_first_with_their_summary(client: TestClient, web_site: WebSite) -> None:
    response = client.get("/api/assets")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["next_cursor"] is None  # the site fits one default page
    assets = body["assets"]
    assert {a["sha256"] for a in assets} == web_site.assets
    keys = [(a["taken"][:19], a["sha256"]) for a in assets]
    assert keys == sorted(keys, reverse=True)
    first = assets[0]
    assert {"sha256", "kind", "taken", "camera", "width", "height", "place", "urls"} <= first.keys()
    assert first["urls"]["small"] == f"/api/assets/{first['sha256']}/small"
    assert "library_path" not in first


def test_pages_return_every_asset_once(client: TestClient, web_site: WebSite) -> None:
    seen = [a["sha256"] for a in walk(client, 7)]
    assert len(seen) == len(set(seen)) == len(web_site.assets)


@pytest.mark.parametrize(
    ("params", "check"),
    [
        ({"kind": "photo"}, lambda a: a["kind"] == "photo"),
        ({"camera": "iPhone 13"}, lambda a: a["camera"] == "Apple iPhone 13"),
        ({"camera": "samsung sm-g991b"}, lambda a: a["camera"] == "samsung SM-G991B"),
        (
            {"from": "2023-03-01", "to": "2023-05-31"},
            lambda a: "2023-03" <= a["taken"][:7] <= "2023-05",
        ),
    ],
)
def test_filters(client: TestClient, params: dict[str, str], check: object) -> None:
    everything = walk(client, 500)
    matching = walk(client, 3, **params)
    assert matching
    assert all(check(a) for a in matching)  # type: ignore[operator]
    assert len(matching) == sum(1 for a in everything if check(a))  # type: ignore[operator]


def test_source_album_and_video_filters(client: TestClient, web_site: WebSite) -> None:
    camera = {a["sha256"] for a in walk(client, 500, source="camera")}
    assert web_site.by_source["camera"] <= camera
    assert {a["sha256"] for a in walk(client, 500, album=ALBUM)} == web_site.album
    if web_site.video:
        assert [a["sha256"] for a in walk(client, 500, kind="video")] == [web_site.video]


def test_bad_cursor_and_limits(client: TestClient) -> None:
    bad = client.get("/api/assets", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400
    assert bad.json() == {
        "error": "invalid cursor; use next_cursor from a previous page",
        "code": "bad_request",
    }
    assert client.get("/api/assets", params={"limit": 501}).status_code == 422
    assert client.get("/api/assets", params={"limit": 0}).status_code == 422
    assert client.get("/api/assets", params={"from": "yesterday"}).status_code == 422


def test_one_asset_with_provenance_and_replicas(client: TestClient, web_site: WebSite) -> None:
    key = min(web_site.album)
    body = client.get(f"/api/assets/{key}").json()
    assert body["sha256"] == key
    assert body["provenance"]
    assert {"source", "ref", "state", "first_seen"} <= body["provenance"][0].keys()
    assert body["provenance"][0]["source"] in ("phone", "camera")
    assert body["replicas"] == []
    assert ALBUM in [a["name"] for a in body["albums"]]
    assert "library_path" not in body
    assert str(web_site.library_root) not in client.get(f"/api/assets/{key}").text
    assert client.get(f"/api/assets/{key.upper()}").json()["sha256"] == key
    assert client.get(f"/api/assets/{'0' * 64}").status_code == 404


def test_asset_bytes_carry_strong_etags_and_immutable_caching(
    client: TestClient, web_site: WebSite
) -> None:
    key = min(web_site.photos)
    for size in ("tiny", "small", "medium", "full"):
        response = client.get(f"/api/assets/{key}/{size}")
        assert response.status_code == 200, (size, response.text)
        etag = response.headers["etag"]
        assert etag.startswith('"')
        assert not etag.startswith("W/")
        assert "immutable" in response.headers["cache-control"]
        again = client.get(f"/api/assets/{key}/{size}", headers={"If-None-Match": etag})
        assert again.status_code == 304
    assert client.get(f"/api/assets/{key}/huge").status_code == 404


def test_full_heic_as_jpeg_on_request(client: TestClient, web_site: WebSite) -> None:
    if web_site.heic is None:
        pytest.skip("no HEIC in the site (../shared media absent)")
    original = client.get(f"/api/assets/{web_site.heic}/full")
    assert original.status_code == 200
    assert original.content[4:8] == b"ftyp"
    converted = client.get(f"/api/assets/{web_site.heic}/full", params={"jpeg": "true"})
    assert converted.headers["content-type"] == "image/jpeg"
    assert converted.headers["etag"] != original.headers["etag"]


def test_albums_sessions_and_stats(client: TestClient, web_site: WebSite) -> None:
    albums = client.get("/api/albums").json()["albums"]
    favourites = next(a for a in albums if a["name"] == ALBUM)
    assert favourites["count"] == len(web_site.album)
    assert favourites["cover"] in web_site.album

    sessions = client.get("/api/sessions").json()["sessions"]
    assert sessions[0]["kind"] == "import"
    failures = [f for s in sessions for f in s["failures"]]
    assert any(f["path"].endswith("empty.jpg") and f["reason"] for f in failures)

    stats = client.get("/api/stats").json()
    assert stats["photos"] + stats["raw"] + stats["videos"] == len(web_site.assets)
    assert stats["originals"]["count"] == len(web_site.assets)
    assert stats["thumbnails"]["count"] >= 3 * len(web_site.photos)
    assert {s["name"] for s in stats["sources"]} == {"phone", "camera"}


# -- keyset paging at size -------------------------------------------------------------------


@pytest.fixture
def synthetic(tmp_path: Path, catalog_url: str) -> Iterator[tuple[TestClient, Catalog]]:
    settings = load_settings(
        home=tmp_path / "home", library=tmp_path / "lib", database_url=catalog_url
    )
    catalog = open_catalog(settings.catalog_url)
    try:
        with TestClient(create_app(settings)) as test_client:
            yield test_client, catalog
    finally:
        catalog.close()


def test_keyset_pages_over_hundreds_of_assets_on_each_engine(
    synthetic: tuple[TestClient, Catalog],
) -> None:
    client, catalog = synthetic
    add_assets(catalog, 333, start=datetime(2024, 6, 1, 12), same_time_every=7)
    pages = walk(client, 50)
    keys = [a["sha256"] for a in pages]
    assert len(keys) == len(set(keys)) == 333
    order = [(a["taken"], a["sha256"]) for a in pages]
    assert order == sorted(order, reverse=True)
    videos = walk(client, 9, kind="video")
    assert len(videos) == 34


def test_assets_added_while_paging_do_not_disturb_the_walk(
    synthetic: tuple[TestClient, Catalog],
) -> None:
    client, catalog = synthetic
    add_assets(catalog, 120, start=datetime(2024, 6, 1, 12), same_time_every=3)
    first = client.get("/api/assets", params={"limit": 40}).json()
    with catalog.session() as db:  # a newer photo arrives between two pages
        db.execute(
            insert(Asset),
            [
                {
                    "sha256": "f" * 64,
                    "size": 1,
                    "kind": "photo",
                    "taken_local": datetime(2025, 1, 1),
                    "date_source": "exif",
                    "original_name": "new.jpg",
                    "library_path": "originals/2025/01/01/x.jpg",
                    "imported_at": datetime(2025, 1, 1),
                }
            ],
        )
        db.commit()
    rest = walk(client, 40, cursor=first["next_cursor"])
    keys = [a["sha256"] for a in first["assets"] + rest]
    assert len(keys) == len(set(keys)) == 120


def test_a_deep_page_of_100000_assets_is_fast(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home", library=tmp_path / "lib")
    catalog = open_catalog(settings.catalog_url)
    try:
        add_assets(catalog, 100_000, start=datetime(2024, 6, 1, 12), same_time_every=5)
        with TestClient(create_app(settings)) as client:
            cursor = None
            for _ in range(3):  # a few pages in, then jump deep with a made cursor
                body = client.get(
                    "/api/assets", params={"limit": 500} | ({"cursor": cursor} if cursor else {})
                ).json()
                cursor = body["next_cursor"]
            from picpipe.web.api import encode_cursor

            deep = encode_cursor(datetime(2024, 6, 1, 12) - timedelta(minutes=19_000), "0" * 64)
            started = time.perf_counter()
            for _ in range(5):
                page = client.get("/api/assets", params={"limit": 500, "cursor": deep})
            elapsed = (time.perf_counter() - started) / 5
            assert len(page.json()["assets"]) == 500
            assert elapsed < 0.5, f"a deep page took {elapsed:.3f}s"
            pick_url, params = "/files/random.json", {"client": "big"}
            started = time.perf_counter()  # the first pick writes the round: 90,000 rows
            assert client.get(pick_url, params=params).status_code == 200
            first = time.perf_counter() - started
            assert first < 10, f"starting a round took {first:.3f}s"
            started = time.perf_counter()
            for _ in range(20):
                assert client.get(pick_url, params=params).status_code == 200
            pick = (time.perf_counter() - started) / 20
            assert pick < 0.1, f"a random pick took {pick:.3f}s"
    finally:
        catalog.close()
