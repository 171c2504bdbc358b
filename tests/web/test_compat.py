"""The legacy endpoints: frozen shapes, the per-client no-repeat shuffle and its filters."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from urllib.parse import unquote

import pytest
from sqlalchemy import delete, select

from picpipe.catalog.browse import AssetFilter
from picpipe.catalog.db import Catalog, open_catalog
from picpipe.catalog.models import Album, AlbumAsset, Asset
from picpipe.catalog.shuffle import Shuffle
from tests.web.conftest import ALBUM, TestClient, WebSite, add_assets

JPEG = b"\xff\xd8\xff"


def pick_keys(http: TestClient, n: int, **params: object) -> list[str]:
    keys = []
    for _ in range(n):
        response = http.get("/files", params=params)
        assert response.status_code == 200, response.text
        assert response.content.startswith(JPEG)
        keys.append(response.headers["x-picpipe-key"])
    return keys


# -- shapes ----------------------------------------------------------------------------------


def test_root_describes_the_service_and_sends_browsers_to_the_dashboard(
    client: TestClient,
) -> None:
    info = client.get("/").json()
    assert info["service"] == "picpipe"
    assert {"version", "status", "docs", "endpoints"} <= info.keys()
    page = client.get("/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 307
    assert page.headers["location"] == "/dashboard"


def test_health_shape(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert {"status", "database", "watcher"} <= body.keys()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["watcher"] == "not running"
    assert body["library"] == "ok"


def test_folders_lists_the_library_day_folders(client: TestClient, web_site: WebSite) -> None:
    body = client.get("/folders").json()
    assert set(body) == {"total_folders", "folders", "watched"}
    assert body["total_folders"] == len(body["folders"]) > 10
    for folder in body["folders"]:
        assert {"id", "path"} <= folder.keys()
        assert re.fullmatch(r"originals/\d{4}/\d{2}/\d{2}", folder["path"])
        assert (web_site.library_root / folder["path"]).is_dir()
        assert folder["id"] == folder["path"][len("originals/") :].replace("/", "-")
    assert sum(f["count"] for f in body["folders"]) == len(web_site.assets)


def test_files_list_names_every_servable_photo(client: TestClient, web_site: WebSite) -> None:
    body = client.get("/files/list").json()
    assert set(body) == {"total_files", "files"}
    assert body["total_files"] == len(web_site.photos)
    assert set(body["files"]) == {f"{sha}.jpg" for sha in web_site.photos}
    page = client.get("/files/list", params={"offset": 2, "limit": 3}).json()
    assert page["files"] == sorted(body["files"])[2:5]
    assert page["total_files"] == body["total_files"]


def test_cache_stats_and_watcher_status(client: TestClient) -> None:
    stats = client.get("/cache/stats")
    assert stats.status_code == 200
    assert isinstance(stats.json(), dict)
    watcher = client.get("/watcher/status").json()
    assert watcher["running"] is False
    assert watcher["status"] == "not running"


def test_random_photo_is_a_jpeg_with_its_caption(client: TestClient, web_site: WebSite) -> None:
    response = client.get("/files", params={"client": "caption"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content.startswith(JPEG)
    key = response.headers["x-picpipe-key"]
    assert key in web_site.photos
    assert datetime.fromisoformat(response.headers["x-picpipe-taken"])
    assert response.headers["cache-control"] == "no-store"  # /files names no photo
    assert response.headers["content-location"] == f"/files/{key}.jpg?size=medium"
    for value in response.headers.values():
        value.encode("ascii")


def test_caption_headers_are_ascii_and_decode_to_the_real_text(
    client: TestClient, web_site: WebSite
) -> None:
    # The sample set's cameras are Apple/samsung/Canon; GPS on every second photo.
    seen_camera = seen_place = False
    for key in sorted(web_site.by_source["phone"]):
        response = client.get(f"/files/{key}.jpg", params={"size": "tiny"})
        camera = response.headers.get("x-picpipe-camera")
        if camera:
            seen_camera = True
            assert unquote(camera) in ("Apple iPhone 13", "samsung SM-G991B", "Canon EOS R6")
        if "x-picpipe-lat" in response.headers:
            seen_place = True
            assert -90 <= float(response.headers["x-picpipe-lat"]) <= 90
            assert -180 <= float(response.headers["x-picpipe-lon"]) <= 180
    assert seen_camera
    assert seen_place
    accented = client.get(f"/files/{web_site.by_name['été à Zürich.jpg']}.jpg?size=tiny")
    assert accented.headers["x-picpipe-name"] == "%C3%A9t%C3%A9 %C3%A0 Z%C3%BCrich.jpg"
    assert unquote(accented.headers["x-picpipe-name"]) == "été à Zürich.jpg"


def test_random_json_sibling_describes_its_pick(client: TestClient, web_site: WebSite) -> None:
    info = client.get("/files/random.json", params={"client": "json", "size": "small"}).json()
    assert {"key", "url", "taken", "camera", "place", "name", "width", "height"} <= info.keys()
    assert info["key"] in web_site.photos
    assert info["url"] == f"/files/{info['key']}.jpg?size=small"
    picture = client.get(info["url"])
    assert picture.status_code == 200
    assert picture.headers["x-picpipe-key"] == info["key"]
    # The JSON pick advances the same shuffle as /files: the next picture is another photo.
    assert pick_keys(client, 1, client="json")[0] != info["key"]


def test_one_photo_by_key_with_etag(client: TestClient, web_site: WebSite) -> None:
    key = min(web_site.photos)
    response = client.get(f"/files/{key}.jpg")
    assert response.status_code == 200
    assert response.content.startswith(JPEG)
    assert response.headers["x-picpipe-key"] == key
    etag = response.headers["etag"]
    assert not etag.startswith("W/")
    again = client.get(f"/files/{key}.jpg", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert client.get(f"/files/{key.upper()}.jpg").headers["x-picpipe-key"] == key
    assert client.get(f"/files/{key}").headers["x-picpipe-key"] == key


def test_one_photo_by_original_name(client: TestClient, web_site: WebSite) -> None:
    key = web_site.by_name["tall_1.jpg"]
    assert client.get("/files/tall_1.jpg").headers["x-picpipe-key"] == key
    assert client.get("/files/tall_1").headers["x-picpipe-key"] == key
    assert client.get("/files/no_such_name.jpg").status_code == 404


def test_videos_are_never_served_as_photos(client: TestClient, web_site: WebSite) -> None:
    if web_site.video is None:
        pytest.skip("no video in the site (../shared media absent)")
    assert client.get(f"/files/{web_site.video}.jpg").status_code == 404
    keys = pick_keys(client, len(web_site.photos), client="no-videos", size="tiny")
    assert web_site.video not in keys


def test_heic_is_served_as_upright_jpeg(client: TestClient, web_site: WebSite) -> None:
    if web_site.heic is None:
        pytest.skip("no HEIC in the site (../shared media absent)")
    for size in ("medium", "full"):
        response = client.get(f"/files/{web_site.heic}.jpg", params={"size": size})
        assert response.status_code == 200, (size, response.text)
        assert response.headers["content-type"] == "image/jpeg"
        assert response.content.startswith(JPEG)


# -- the shuffle ------------------------------------------------------------------------------


def test_random_never_repeats_before_every_photo_was_shown(
    client: TestClient, web_site: WebSite
) -> None:
    n = len(web_site.photos)
    first = pick_keys(client, n, client="exhaust", size="tiny")
    assert len(set(first)) == n
    assert set(first) == web_site.photos
    second = pick_keys(client, n, client="exhaust", size="tiny")
    assert set(second) == web_site.photos  # a new round, again each photo once
    assert second[0] != first[-1]  # and not the photo just shown


def test_shuffle_survives_a_restart(
    client: TestClient, app_client: object, web_site: WebSite
) -> None:
    before = pick_keys(client, 5, client="restart", size="tiny")
    restarted = app_client()  # type: ignore[operator]
    after = pick_keys(restarted, len(web_site.photos) - 5, client="restart", size="tiny")
    assert set(before).isdisjoint(after)
    assert set(before) | set(after) == web_site.photos


def test_each_client_has_its_own_shuffle(client: TestClient, web_site: WebSite) -> None:
    pick_keys(client, 10, client="kitchen", size="tiny")
    hallway = pick_keys(client, len(web_site.photos), client="hallway", size="tiny")
    assert set(hallway) == web_site.photos
    kitchen_rest = pick_keys(client, len(web_site.photos) - 10, client="kitchen", size="tiny")
    assert len(set(kitchen_rest)) == len(web_site.photos) - 10


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"orientation": "portrait"}, "portrait"),
        ({"orientation": "landscape"}, "landscape"),
        ({"on_this_day": "true"}, "on_this_day"),
        ({"album": ALBUM}, "album"),
        ({"source": "camera"}, "camera"),
    ],
)
def test_filters_choose_the_matching_photos(
    client: TestClient, web_site: WebSite, params: dict[str, str], expected: str
) -> None:
    wanted = web_site.by_source["camera"] if expected == "camera" else getattr(web_site, expected)
    assert wanted
    keys = pick_keys(client, len(wanted), client=f"filter-{expected}", size="tiny", **params)
    assert set(keys) == wanted


def test_orientation_follows_the_exif_rotation(web_site: WebSite) -> None:
    if "turned_landscape" not in web_site.real:
        pytest.skip("orientation samples absent (../shared media)")
    assert web_site.real["turned_landscape"] in web_site.landscape  # stored 450x600, turned
    assert web_site.real["turned_portrait"] in web_site.portrait  # stored 600x450, turned


def test_album_by_id_and_no_match(client: TestClient) -> None:
    album_id = client.get("/api/albums").json()["albums"][0]["id"]
    assert client.get("/files", params={"album": str(album_id), "size": "tiny"}).status_code == 200
    missing = client.get("/files", params={"album": "no such album"})
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"


def test_bad_client_names_are_refused(client: TestClient) -> None:
    for name in ("", "a/b", "x" * 65, "spaces here", "../x"):
        assert client.get("/files", params={"client": name}).status_code == 422


# -- the shuffle on each engine, without HTTP ----------------------------------------------------


@pytest.fixture
def synthetic_catalog(catalog_url: str) -> Iterator[Catalog]:
    catalog = open_catalog(catalog_url)
    try:
        yield catalog
    finally:
        catalog.close()


def test_shuffle_rounds_on_each_engine(synthetic_catalog: Catalog) -> None:
    day = datetime(2024, 6, 1)
    add_assets(synthetic_catalog, 40, start=day, same_time_every=1)  # imported on `day`
    photos = AssetFilter(photos_only=True)
    shuffle = Shuffle("wall", photos)
    with synthetic_catalog.session() as db:
        expected = {a.sha256 for a in db.scalars(select(Asset).where(*photos.clauses()))}
        first = [shuffle.pick(db, now=day).sha256 for _ in range(len(expected))]
        assert set(first) == expected
        assert len(first) == len(expected)
        second = [shuffle.pick(db, now=day).sha256 for _ in range(10)]
        assert second[0] != first[-1]
    # Two more arrive mid-round (the first of a batch is a video, the second a photo): the
    # photo joins this round, once the round looks again (at most a minute later).
    later = day + timedelta(minutes=5)
    add_assets(synthetic_catalog, 2, start=later, same_time_every=1, prefix="e")
    with synthetic_catalog.session() as db:
        rest = [shuffle.pick(db, now=later).sha256 for _ in range(len(expected) - 10 + 1)]
        assert len(set(second + rest)) == len(expected) + 1
        assert Shuffle("x", AssetFilter(album="none")).pick(db, now=later) is None


def test_photos_that_stop_matching_leave_the_round(synthetic_catalog: Catalog) -> None:
    day = datetime(2024, 6, 1)
    add_assets(synthetic_catalog, 12, start=day, same_time_every=1)
    with synthetic_catalog.session() as db:
        album = Album(name="frame", created_at=day)
        db.add(album)
        db.flush()
        members = sorted(db.scalars(select(Asset.sha256).where(Asset.kind == "photo")))[:5]
        db.add_all(AlbumAsset(album_id=album.id, sha256=sha) for sha in members)
        db.commit()
        shuffle = Shuffle("frame", AssetFilter(album="frame", photos_only=True))
        shown = shuffle.pick(db, now=day).sha256
        removed = next(sha for sha in members if sha != shown)
        db.execute(delete(AlbumAsset).where(AlbumAsset.sha256 == removed))
        db.commit()
        rest = [shuffle.pick(db, now=day).sha256 for _ in range(3)]
        assert set(rest) == set(members) - {shown, removed}


def test_concurrent_picks_of_one_client_never_repeat(synthetic_catalog: Catalog) -> None:
    add_assets(synthetic_catalog, 60, start=datetime(2024, 1, 1), same_time_every=2)
    photos = AssetFilter(photos_only=True)
    with synthetic_catalog.session() as db:
        expected = len(list(db.scalars(select(Asset.sha256).where(*photos.clauses()))))

    def pick(_: int) -> str:
        with synthetic_catalog.session() as db:
            asset = Shuffle("busy", photos).pick(db, now=datetime.now())
            assert asset is not None
            return asset.sha256

    with ThreadPoolExecutor(max_workers=6) as pool:
        keys = list(pool.map(pick, range(expected)))
    assert len(set(keys)) == expected


def test_a_running_watcher_is_reported_by_status_health_and_folders(
    client: TestClient, web_site: WebSite
) -> None:
    from picpipe.catalog import runs as q
    from picpipe.jobs.runs import LeasedRun

    catalog = open_catalog(web_site.settings.catalog_url)
    status = {"source": "inbox", "kind": "watched", "path": "/srv/inbox", "mode": "polling"}
    status |= {"why": "cifs mount", "events": 7, "queue": 2, "last_error": None}
    try:
        with LeasedRun(
            catalog,
            kind="watch",
            device="inbox",
            keys=["watch:test"],
            options=web_site.settings.runs,
        ) as run:
            with catalog.write() as db:  # what the heartbeat stores
                q.renew_lease(db, run.id, lease_seconds=60, keys=1, progress=status)
            body = client.get("/watcher/status").json()
            assert body["running"] is True
            [watcher] = body["watchers"]
            assert {k: watcher[k] for k in status} == status
            assert client.get("/health").json()["watcher"] == "running"
            [watched] = client.get("/folders").json()["watched"]
            assert watched["mode"] == "polling"
            assert watched["queue"] == 2
    finally:
        catalog.close()
    assert client.get("/watcher/status").json()["running"] is False
