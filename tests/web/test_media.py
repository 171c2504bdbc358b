"""Serving bytes: thumbnails (memory, fast path, 304), full resolution with Range, HEIC as upright
JPEG, the full-resolution cache behind an unreachable library (replicas, sources, 503), nginx accel.

Read-only checks use the shared ``web_site``; tests that take the library or the sources away
use this module's own small site (``media_site``) and put everything back afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops, ImageStat
from sqlalchemy import delete, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from picpipe.catalog.models import Asset, Destination, Replica
from picpipe.config import CacheOptions, Settings
from picpipe.library.layout import ThumbSize, thumb_path
from picpipe.pipeline.thumbrun import ThumbRun
from picpipe.samples import make_jpeg
from picpipe.web.app import create_app
from picpipe.web.auth import Guard
from picpipe.web.fastpath import FastThumbs
from picpipe.web.media import MediaServer
from picpipe.web.thumbmemo import ThumbMemo
from tests.conftest import MEDIA, missing, open_library
from tests.web.conftest import TestClient, WebSite, clean_picpipe_env, with_serve  # type: ignore[attr-defined]

JPEG = b"\xff\xd8\xff"
YEAR = "max-age=31536000, immutable"
ACCEL = {"X-Picpipe-Accel": "/_picpipe/"}
REAL = {  # files of ../shared/testdata/media this module imports, by role
    "iphone/iphone_7.heic": "heic_exif6",  # EXIF orientation 6, no HEIF irot: 4032x3024 stored
    "heic/Stonehenge.heic": "heic",
    "video/with-gps.mp4": "video",
}


# -- a site of our own -------------------------------------------------------------------------


@dataclass
class MediaSite:
    root: Path
    settings: Settings
    photos: dict[str, bytes] = field(default_factory=dict)  # sha256 → original bytes (JPEGs)
    real: dict[str, str] = field(default_factory=dict)  # role → sha256
    originals: dict[str, bytes] = field(default_factory=dict)  # every sha256 → bytes

    @property
    def cache_dir(self) -> Path:
        return self.settings.home_root / "cache" / "full"


@pytest.fixture(scope="module")
def media_site(tmp_path_factory: pytest.TempPathFactory, exiftool_available: None) -> MediaSite:
    root = tmp_path_factory.mktemp("media")
    phone, camera = root / "in" / "phone", root / "in" / "camera"
    for i in range(8):
        make_jpeg(phone / f"p{i}.jpg", size=(640, 480), taken=datetime(2021, 5, 1 + i), seed=i)
    names: dict[str, str] = {}
    if MEDIA.is_dir():
        for rel, role in REAL.items():
            target = camera / Path(rel).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(MEDIA / rel, target)
            names[target.name] = role
    with clean_picpipe_env(), open_library(root) as lib:
        sources = [lib.folder(phone, "phone")]
        if names:
            sources.append(lib.folder(camera, "camera"))
        lib.run(*sources, workers=2)
        ThumbRun(
            lib.catalog,
            home=lib.settings.home_root,
            library_root=lib.settings.library_root,
            options=lib.settings.thumbs,
            workers=2,
        ).run()
        site = MediaSite(root, lib.settings)
        with lib.catalog.session() as db:
            for asset in db.scalars(select(Asset)):
                data = (lib.settings.library_root / asset.library_path).read_bytes()
                site.originals[asset.sha256] = data
                if asset.original_name in names:
                    site.real[names[asset.original_name]] = asset.sha256
                elif asset.kind == "photo":
                    site.photos[asset.sha256] = data
    return site


def real(site: MediaSite, role: str) -> str:
    if role not in site.real:
        missing(f"real media for {role} ({MEDIA}) is not there")
    return site.real[role]


def settings_of(site: MediaSite, **changes: Any) -> Settings:
    return site.settings.model_copy(update=changes)


@contextmanager
def moved_away(path: Path) -> Iterator[None]:
    """Take a folder away (an unmounted NAS, an unplugged card) and put it back afterwards."""
    away = path.with_name(path.name + ".away")
    path.rename(away)
    try:
        yield
    finally:
        away.rename(path)


@contextmanager
def app_for(settings: Settings, *, fresh_cache: bool = True) -> Iterator[Any]:
    """A new application (no lifespan: closed here) over ``settings``."""
    if fresh_cache:
        shutil.rmtree(settings.home_root / "cache", ignore_errors=True)
    app = create_app(settings)
    try:
        yield app
    finally:
        app.state.ctx.media.close()
        app.state.ctx.catalog.close()


def get_all(
    app: Any,
    urls: list[str],
    headers: dict[str, str] | None = None,
    client: tuple[str, int] = ("127.0.0.1", 40000),
) -> list[httpx.Response]:
    """Send every request at once (one event loop, like concurrent browsers)."""

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            return list(await asyncio.gather(*(http.get(u, headers=headers) for u in urls)))

    return asyncio.run(run())


def get(app: Any, url: str, **kwargs: Any) -> httpx.Response:
    return get_all(app, [url], **kwargs)[0]


def register_replica(settings: Settings, sha256: str, data: bytes, folder: Path) -> Settings:
    """A verified replica of ``sha256`` holding ``data`` at a filesystem destination ``nas``."""
    key = f"2021/{sha256[:8]}.bin"
    (folder / key).parent.mkdir(parents=True, exist_ok=True)
    (folder / key).write_bytes(data)
    from picpipe.catalog.db import open_catalog

    catalog = open_catalog(settings.catalog_url)
    try:
        with catalog.session() as db, db.begin():
            destination = db.scalar(select(Destination).where(Destination.name == "nas"))
            if destination is None:
                destination = Destination(name="nas", kind="filesystem", created_at=datetime.now())
                db.add(destination)
                db.flush()
            db.add(
                Replica(
                    sha256=sha256,
                    destination_id=destination.id,
                    remote_key=key,
                    state="verified",
                    updated_at=datetime.now(),
                    verified_at=datetime.now(),
                )
            )
    finally:
        catalog.close()
    nas = {"nas": {"kind": "filesystem", "path": str(folder)}}
    return settings.model_copy(update={"destinations": nas})


@pytest.fixture
def drop_replicas(media_site: MediaSite) -> Iterator[None]:
    yield
    from picpipe.catalog.db import open_catalog

    catalog = open_catalog(media_site.settings.catalog_url)
    try:
        with catalog.session() as db, db.begin():
            db.execute(delete(Replica))
    finally:
        catalog.close()


def no_paths(text: str, site: MediaSite) -> None:
    assert str(site.root) not in text
    assert "originals/" not in text
    assert "/in/" not in text


def cache_bytes(folder: Path) -> int:
    """Every file in the cache's shard folders, finished or being written.

    Taken while holding the index's write lock (no eviction, reservation or commit can run),
    counting each inode once (a fill renaming its temp file is not counted twice).
    """
    index = folder / "index.sqlite3"
    if not index.exists():
        return 0
    db = sqlite3.connect(index, timeout=30, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        sizes: dict[int, int] = {}
        for shard in folder.glob("??"):
            for entry in os.scandir(shard):
                with contextlib.suppress(FileNotFoundError):
                    stat = entry.stat()
                    sizes[stat.st_ino] = stat.st_size
        db.execute("ROLLBACK")
    finally:
        db.close()
    return sum(sizes.values())


# -- thumbnails --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["tiny", "small", "medium"])
def test_thumbnails_are_the_files_with_content_addressed_headers(
    client: TestClient, web_site: WebSite, size: ThumbSize
) -> None:
    sha = sorted(web_site.photos)[0]
    response = client.get(f"/api/assets/{sha}/{size}")
    assert response.status_code == 200
    assert response.content == (web_site.home_root / thumb_path(sha, size)).read_bytes()
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["etag"] == f'"{sha}-{size}"'
    assert response.headers["cache-control"] == f"public, {YEAR}"
    assert response.headers["content-length"] == str(len(response.content))


def test_if_none_match_answers_304_without_a_body(client: TestClient, web_site: WebSite) -> None:
    sha = sorted(web_site.photos)[1]
    etag = f'"{sha}-small"'
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = client.get(f"/api/assets/{sha}/small", headers={"If-None-Match": header})
        assert response.status_code == 304, header
        assert response.content == b""
        assert response.headers["etag"] == etag
    assert (
        client.get(f"/api/assets/{sha}/small", headers={"If-None-Match": '"other"'}).status_code
        == 200
    )


def media_app(app: Any) -> Starlette:
    """The media server behind a plain GET|HEAD route (the contract, without the API's router)."""

    async def endpoint(request: Request) -> Response:
        media: MediaServer = app.state.ctx.media
        params = request.path_params
        jpeg = request.query_params.get("jpeg") == "true"
        return await media.respond(request, params["sha"], params["size"], as_jpeg=jpeg)

    return Starlette(routes=[Route("/m/{sha}/{size}", endpoint, methods=["GET", "HEAD"])])


def test_head_gives_the_headers_only(media_site: MediaSite) -> None:
    sha = sorted(media_site.photos)[2]
    video = real(media_site, "video")
    with app_for(media_site.settings) as app, TestClient(media_app(app)) as http:
        for url in (f"/m/{sha}/tiny", f"/m/{sha}/full", f"/m/{video}/full"):
            body = http.get(url).content
            response = http.head(url)
            assert response.status_code == 200
            assert response.content == b""
            assert response.headers["content-length"] == str(len(body))
            assert response.headers["etag"]
        part = http.head(f"/m/{video}/full", headers={"Range": "bytes=0-9"})
        assert (part.status_code, part.headers["content-length"]) == (206, "10")


def test_unknown_assets_and_sizes_are_404(client: TestClient) -> None:
    unknown = "0" * 64
    for url in (f"/api/assets/{unknown}/tiny", f"/api/assets/{unknown}/full"):
        response = client.get(url)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    assert client.get(f"/api/assets/{'g' * 64}/tiny").status_code in (404, 422)
    assert client.get(f"/api/assets/{unknown}/huge").status_code in (404, 422)


def test_a_token_makes_thumbnails_private(app_client: Any, web_site: WebSite) -> None:
    http = app_client(token="t", read_token="r")
    sha = sorted(web_site.photos)[3]
    assert http.get(f"/api/assets/{sha}/tiny").status_code == 401
    response = http.get(f"/api/assets/{sha}/tiny", headers={"X-Picpipe-Token": "r"})
    assert response.status_code == 200
    assert response.headers["cache-control"] == f"private, {YEAR}"


def test_the_fast_path_serves_remembered_thumbnails_and_checks_tokens(
    web_site: WebSite,
) -> None:
    """FastThumbs alone, in front of an app that only counts what reaches it."""
    settings = with_serve(web_site.settings, token="t", read_token="r")
    memo = ThumbMemo(settings.home_root, "jpeg", private=True)
    reached: list[str] = []

    async def behind(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
            await send({"type": "lifespan.shutdown.complete"})
            return
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    fast = FastThumbs(behind, memo=memo, guard=Guard.from_settings(settings))
    sha = sorted(web_site.photos)[4]
    url = f"/api/assets/{sha}/small"
    token = {"X-Picpipe-Token": "r"}
    file = (web_site.home_root / thumb_path(sha, "small")).read_bytes()
    with TestClient(fast) as http:  # lifespan events pass through to `behind`
        assert http.get(url, headers=token).status_code == 599  # not remembered yet
        assert asyncio.run(memo.get(sha, "small")) is not None
        for response in (http.get(url, headers=token), http.get(url, params={"token": "r"})):
            assert response.status_code == 200
            assert response.content == file
            assert response.headers["etag"] == f'"{sha}-small"'
            assert response.headers["cache-control"] == f"private, {YEAR}"
            assert response.headers["x-content-type-options"] == "nosniff"
        head = http.head(url, headers=token)
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == str(len(file))
        not_modified = http.get(url, headers=token | {"If-None-Match": f'"{sha}-small"'})
        assert not_modified.status_code == 304
        assert len(reached) == 1
        for refused in (
            http.get(url),  # no token: the application answers (401)
            http.get(url, params={"token": "wrong"}),
            http.get(url, params={"token": "t"}),  # the full token is never accepted in a URL
            http.get(url, params={"token": "r", "jpeg": "true"}),  # other parameters
            http.post(url, headers=token),
            http.get(f"/api/assets/{sha}/full", headers=token),
            http.get(f"/api/assets/{sha.upper()}/small", headers=token),
        ):
            assert refused.status_code == 599
        assert len(reached) == 8


def test_the_application_installs_the_fast_path(client: TestClient) -> None:
    assert any(m.cls is FastThumbs for m in client.app.user_middleware)  # type: ignore[attr-defined]


def test_a_remade_thumbnail_is_noticed(media_site: MediaSite) -> None:
    sha = sorted(media_site.photos)[0]
    path = media_site.settings.home_root / thumb_path(sha, "tiny")
    before = path.read_bytes()
    with app_for(media_site.settings) as app:
        memo = app.state.ctx.media.thumbs
        now = [1000.0]
        memo.clock = lambda: now[0]
        assert get(app, f"/api/assets/{sha}/tiny").content == before
        try:
            path.write_bytes(before + b"\x00")  # a remake: new bytes, new mtime
            os.utime(path, ns=(1, 1))
            assert get(app, f"/api/assets/{sha}/tiny").content == before  # still trusted
            now[0] += 31
            assert get(app, f"/api/assets/{sha}/tiny").content == before + b"\x00"
        finally:
            path.write_bytes(before)


# -- full resolution from the library ------------------------------------------------------------


def test_full_is_the_original_from_the_library(media_site: MediaSite) -> None:
    sha, data = sorted(media_site.photos.items())[0]
    with app_for(media_site.settings) as app:
        response = get(app, f"/api/assets/{sha}/full")
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["content-type"] == "image/jpeg"
        assert response.headers["etag"] == f'"{sha}-full"'
        assert response.headers["accept-ranges"] == "bytes"
        jpeg = get(app, f"/api/assets/{sha}/full?jpeg=true")  # a JPEG stays as it is
        assert jpeg.content == data
        assert app.state.ctx.media.cache_stats()["entries"] == 0


def test_video_range_requests(media_site: MediaSite) -> None:
    sha = real(media_site, "video")
    data = media_site.originals[sha]
    size = len(data)
    url = f"/api/assets/{sha}/full"
    etag = f'"{sha}-full"'
    with app_for(media_site.settings) as app:
        whole = get(app, url)
        assert whole.status_code == 200
        assert whole.content == data
        assert whole.headers["content-type"].startswith("video/")
        cases = {
            "bytes=0-99": (0, 100),
            "bytes=100-": (100, size),
            "bytes=-50": (size - 50, size),
            f"bytes={size - 10}-{size + 500}": (size - 10, size),
        }
        for header, (start, end) in cases.items():
            part = get(app, url, headers={"Range": header})
            assert part.status_code == 206, header
            assert part.content == data[start:end], header
            assert part.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
            assert part.headers["content-length"] == str(end - start)
        for header in (f"bytes={size}-", f"bytes={size + 5}-{size + 9}", "bytes=-0"):
            refused = get(app, url, headers={"Range": header})
            assert refused.status_code == 416, header
            assert refused.headers["content-range"] == f"bytes */{size}"
        for ignored in ("bytes=9-3", "items=0-5", "bytes=0-1,5-9", "bytes=x-"):
            assert get(app, url, headers={"Range": ignored}).status_code == 200, ignored
        stale = get(app, url, headers={"Range": "bytes=0-9", "If-Range": '"old"'})
        assert (stale.status_code, len(stale.content)) == (200, size)
        fresh = get(app, url, headers={"Range": "bytes=0-9", "If-Range": etag})
        assert (fresh.status_code, fresh.content) == (206, data[:10])


def test_heic_full_as_jpeg_is_upright(media_site: MediaSite) -> None:
    sha = real(media_site, "heic_exif6")
    with app_for(media_site.settings) as app:
        response = get(app, f"/api/assets/{sha}/full?jpeg=true")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/jpeg"
        assert response.headers["etag"] == f'"{sha}-full-jpeg"'
        served = Image.open(io.BytesIO(response.content))
        assert served.format == "JPEG"
        assert served.size == (3024, 4032)  # MANIFEST: shown 3024x4032 after EXIF 6
        assert served.getexif().get(0x0112, 1) == 1  # upright pixels, nothing left to turn
        # An independent reference: libheif's pixels as stored, turned by hand for EXIF 6
        # (a quarter turn clockwise), as the MANIFEST describes this file.
        import pillow_heif

        heif = pillow_heif.open_heif(MEDIA / "iphone/iphone_7.heic", convert_hdr_to_8bit=True)
        stored = heif.to_pillow().convert("RGB")
        assert stored.size == (4032, 3024)
        reference = stored.transpose(Image.Transpose.ROTATE_270)
        assert reference.size == served.size
        small = (378, 504)
        difference = ImageChops.difference(
            served.convert("RGB").resize(small), reference.resize(small)
        )
        assert max(ImageStat.Stat(difference).mean) < 8
        stats = app.state.ctx.media.cache_stats()
        assert stats["entries"] == 1  # the JPEG is kept
        assert stats["conversions"] == 1
        again = get(app, f"/api/assets/{sha}/full?jpeg=true")
        assert again.content == response.content
        assert len(response.content) > 1 << 20  # streamed in chunks, so ranges across them:
        span = {"Range": "bytes=1000000-1100000"}
        part = get(app, f"/api/assets/{sha}/full?jpeg=true", headers=span)
        assert part.status_code == 206
        assert part.content == response.content[1_000_000:1_100_001]
        assert app.state.ctx.media.cache_stats()["conversions"] == 1
        raw = get(app, f"/api/assets/{sha}/full")  # without jpeg: the HEIC itself
        assert raw.content == media_site.originals[sha]
        assert raw.headers["content-type"] in ("image/heic", "image/heif")


def test_files_serves_heic_as_jpeg(media_site: MediaSite) -> None:
    sha = real(media_site, "heic")
    with app_for(media_site.settings) as app:
        response = get(app, f"/files/{sha}.jpg?size=full")
        assert response.status_code == 200, response.text
        assert response.content.startswith(JPEG)
        assert Image.open(io.BytesIO(response.content)).size == (300, 200)


# -- the library is unreachable ----------------------------------------------------------------


def test_library_down_thumbnails_serve_and_full_is_503_without_paths(
    media_site: MediaSite,
) -> None:
    sha = sorted(media_site.photos)[1]
    with (
        moved_away(media_site.settings.library_root),
        moved_away(media_site.root / "in"),
        app_for(media_site.settings) as app,
    ):
        assert get(app, f"/api/assets/{sha}/small").status_code == 200
        response = get(app, f"/api/assets/{sha}/full")
        assert response.status_code == 503
        assert response.json()["code"] == "library_unavailable"
        assert "not reachable" in response.json()["error"]
        assert response.headers["retry-after"]
        no_paths(response.text, media_site)
        jpeg = get(app, f"/files/{sha}.jpg?size=full")
        assert jpeg.status_code == 503
        no_paths(jpeg.text, media_site)
        # A browser that has the picture already is told so without any file being read.
        cached = get(app, f"/api/assets/{sha}/full", headers={"If-None-Match": f'"{sha}-full"'})
        assert cached.status_code == 304
        assert app.state.ctx.media.cache_stats()["entries"] == 0


def test_library_down_full_comes_from_a_verified_replica(
    media_site: MediaSite, tmp_path: Path, drop_replicas: None
) -> None:
    sha, data = sorted(media_site.photos.items())[2]
    settings = register_replica(media_site.settings, sha, data, tmp_path / "nas")
    with moved_away(media_site.settings.library_root), moved_away(media_site.root / "in"):
        with app_for(settings) as app:
            response = get(app, f"/api/assets/{sha}/full")
            assert response.status_code == 200, response.text
            assert response.content == data
            stats = app.state.ctx.media.cache_stats()
            assert (stats["entries"], stats["fetches"]) == (1, 1)
            cached = media_site.cache_dir / sha[:2] / f"{sha}.jpg"
            assert cached.read_bytes() == data
        shutil.rmtree(tmp_path / "nas")  # the replica goes too: the cache still has it
        with app_for(settings, fresh_cache=False) as app:  # and it survives a restart
            again = get(app, f"/api/assets/{sha}/full")
            assert again.status_code == 200
            assert again.content == data
            assert app.state.ctx.media.cache_stats()["fetches"] == 0


def test_a_replica_that_does_not_match_is_refused(
    media_site: MediaSite, tmp_path: Path, drop_replicas: None
) -> None:
    sha, data = sorted(media_site.photos.items())[3]
    wrong = data[:-1] + bytes([data[-1] ^ 1])
    settings = register_replica(media_site.settings, sha, wrong, tmp_path / "nas")
    with (
        moved_away(media_site.settings.library_root),
        moved_away(media_site.root / "in"),
        app_for(settings) as app,
    ):
        response = get(app, f"/api/assets/{sha}/full")
        assert response.status_code == 503
        no_paths(response.text, media_site)
        assert app.state.ctx.media.cache_stats()["entries"] == 0
        assert cache_bytes(media_site.cache_dir) == 0


def test_library_down_full_comes_from_a_source_and_a_changed_source_is_refused(
    media_site: MediaSite,
) -> None:
    (sha, data), (other, _) = sorted(media_site.photos.items())[4:6]
    with moved_away(media_site.settings.library_root), app_for(media_site.settings) as app:
        response = get(app, f"/api/assets/{sha}/full")
        assert response.status_code == 200
        assert response.content == data
        source_file = next(
            p
            for p in (media_site.root / "in" / "phone").iterdir()
            if p.read_bytes() == (media_site.photos[other])
        )
        saved = source_file.read_bytes()
        try:
            source_file.write_bytes(saved[:-2] + b"\x00\x00")  # edited since the import
            refused = get(app, f"/api/assets/{other}/full")
            assert refused.status_code == 503
        finally:
            source_file.write_bytes(saved)


def test_heic_as_jpeg_with_the_library_down_is_fetched_then_converted(
    media_site: MediaSite,
) -> None:
    sha = real(media_site, "heic")
    with moved_away(media_site.settings.library_root), app_for(media_site.settings) as app:
        response = get(app, f"/api/assets/{sha}/full?jpeg=true")
        assert response.status_code == 200, response.text
        assert Image.open(io.BytesIO(response.content)).size == (300, 200)
        names = sorted(name for name, _, _ in app.state.ctx.media.full.cache.entries())
        assert names == sorted([f"{sha}.heic", f"{sha}-upright.jpg"])


def test_concurrent_requests_for_one_missing_original_fetch_it_once(
    media_site: MediaSite,
) -> None:
    sha, data = sorted(media_site.photos.items())[6]
    with moved_away(media_site.settings.library_root), app_for(media_site.settings) as app:
        responses = get_all(app, [f"/api/assets/{sha}/full"] * 20)
        assert [r.status_code for r in responses] == [200] * 20
        assert all(r.content == data for r in responses)
        stats = app.state.ctx.media.cache_stats()
        assert stats["fetches"] == 1
        assert stats["entries"] == 1
    heic = real(media_site, "heic")
    with moved_away(media_site.settings.library_root), app_for(media_site.settings) as app:
        responses = get_all(app, [f"/api/assets/{heic}/full?jpeg=true"] * 8)
        assert len({r.content for r in responses}) == 1
        assert all(r.status_code == 200 for r in responses)
        stats = app.state.ctx.media.cache_stats()
        assert (stats["fetches"], stats["conversions"]) == (2, 1)  # the HEIC, then its JPEG


def test_the_cache_never_exceeds_its_limit(media_site: MediaSite) -> None:
    """Every photo through a cache that holds about three, many requests at once."""
    sizes = sorted(len(d) for d in media_site.photos.values())
    limit = sizes[-1] * 3 + 100
    settings = settings_of(media_site, cache=CacheOptions(max_size_gb=limit / 1e9))
    worst = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            worst[0] = max(worst[0], cache_bytes(media_site.cache_dir))

    urls = [f"/api/assets/{sha}/full" for sha in sorted(media_site.photos)]
    with moved_away(media_site.settings.library_root), app_for(settings) as app:
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            for _ in range(3):
                responses = get_all(app, urls + urls[::-1])
                for response in responses:
                    assert response.status_code == 200
                    digest = hashlib.sha256(response.content).hexdigest()
                    assert response.url.path.split("/")[3] == digest
        finally:
            stop.set()
            watcher.join()
        stats = app.state.ctx.media.cache_stats()
        assert stats["max_bytes"] == limit
        assert stats["bytes"] <= limit
        assert stats["evictions"] > 0
    assert worst[0] <= limit
    assert cache_bytes(media_site.cache_dir) <= limit


def test_without_a_usable_cache_folder_the_library_still_serves(media_site: MediaSite) -> None:
    sha, data = sorted(media_site.photos.items())[0]
    blocker = media_site.settings.home_root / "cache"
    shutil.rmtree(blocker, ignore_errors=True)
    blocker.write_bytes(b"not a folder")  # cache/full cannot be created
    try:
        with app_for(media_site.settings, fresh_cache=False) as app:
            assert get(app, f"/api/assets/{sha}/full").content == data
            stats = app.state.ctx.media.cache_stats()
            assert stats["available"] is False
            assert stats["entries"] == 0
            with moved_away(media_site.settings.library_root):
                response = get(app, f"/api/assets/{sha}/full")
                assert response.status_code == 503
                no_paths(response.text, media_site)
    finally:
        blocker.unlink()


# -- nginx front -------------------------------------------------------------------------------


def test_accel_redirect_from_a_local_front(media_site: MediaSite) -> None:
    sha = sorted(media_site.photos)[7]
    with app_for(media_site.settings) as app:
        thumb = get(app, f"/api/assets/{sha}/small", headers=ACCEL)
        assert thumb.status_code == 200
        assert thumb.content == b""
        assert thumb.headers["x-accel-redirect"] == f"/_picpipe/{thumb_path(sha, 'small')}"
        assert thumb.headers["etag"] == f'"{sha}-small"'
        assert thumb.headers["content-type"] == "image/jpeg"
        full = get(app, f"/api/assets/{sha}/full", headers=ACCEL)
        library_path = next(
            p for p in media_site.settings.library_root.rglob(f"{sha}.*") if p.suffix != ".xmp"
        )
        rel = library_path.relative_to(media_site.settings.library_root).as_posix()
        assert full.headers["x-accel-redirect"] == f"/_picpipe/library/{rel}"
        assert full.content == b""
        # From another machine, or with a prefix that is not a plain path: no redirect.
        remote = get(app, f"/api/assets/{sha}/small", headers=ACCEL, client=("192.0.2.7", 5000))
        assert "x-accel-redirect" not in remote.headers
        assert remote.content.startswith(JPEG)
        odd = get(app, f"/api/assets/{sha}/small", headers={"X-Picpipe-Accel": "/../etc/"})
        assert "x-accel-redirect" not in odd.headers


def test_cache_stats_shape(client: TestClient) -> None:
    stats = client.get("/cache/stats").json()
    for key in ("entries", "bytes", "max_bytes", "utilisation", "hits", "misses", "fetches"):
        assert key in stats
    assert "ttl_seconds" in stats
    assert stats["path"] == "cache/full"


# -- the real server ---------------------------------------------------------------------------


def test_a_killed_server_leaves_no_conversion_worker_holding_its_port(
    media_site: MediaSite, tmp_path: Path
) -> None:
    """The conversion worker is forked from the server; SIGKILL of the server must free the port."""
    sha = real(media_site, "heic")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exe = Path(sys.executable).with_name("picpipe")
    home, library = media_site.settings.home_root, media_site.settings.library_root
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICPIPE_")}
    shutil.rmtree(home / "cache", ignore_errors=True)  # the conversion must run
    log_file = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(exe), "--home", str(home), "--library", str(library), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log_file,  # a file: a full pipe would stall the server
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        seen = "no answer"
        while True:
            try:
                health = httpx.get(f"{base}/health", timeout=2)
                if health.status_code == 200:
                    break
                seen = f"{health.status_code} {health.text[:300]}"
            except httpx.HTTPError as exc:
                seen = repr(exc)
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                server.wait(timeout=10)
                errors = (tmp_path / "serve.log").read_text(errors="replace")
                pytest.fail(f"picpipe serve did not start ({seen}): {errors[-2000:]}")
            time.sleep(0.2)
        response = httpx.get(f"{base}/api/assets/{sha}/full?jpeg=true", timeout=60)
        assert response.status_code == 200
        assert response.content.startswith(JPEG)
        server.kill()
        server.wait(timeout=10)
        deadline = time.monotonic() + 10
        while True:  # the port is free again: a new server could listen on it
            try:
                with socket.socket() as again:
                    again.bind(("127.0.0.1", port))
                break
            except OSError:
                assert time.monotonic() < deadline, "a worker still holds the server's port"
                time.sleep(0.2)
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=10)
        log_file.close()
