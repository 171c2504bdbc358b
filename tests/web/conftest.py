"""Fixtures for the web tests: one real library, built once, and clients of the real app.

For every web test module (API, security, pages, media, benchmarks):

- ``web_site`` (session scope): a ``WebSite`` built once by the import pipeline and the
  thumbnail run from generated samples (``picpipe.samples``) and real media from ``MEDIA``
  (a HEIC, orientation-6 JPEGs, an MP4 video) in two sources, ``phone`` and ``camera``, plus
  an album ``Favourites``. Its fields name the assets by role (``photos``, ``portrait``,
  ``on_this_day``, ``heic``, ``video``…). Treat it as read-only: a test that changes files or
  the catalog builds its own with ``build_site(tmp_path)``.
- ``client`` (session scope): a ``TestClient`` over ``create_app(web_site.settings)``, no token.
- ``app_client(**serve)`` (function scope): a factory for clients of another app over the same
  site with ``serve`` options changed, e.g. ``app_client(token="t", read_token="r")``;
  closed at the end of the test.
- ``TestClient`` here is Starlette's, imported without its httpx deprecation warning
  (``filterwarnings = error``) and with ``http://localhost`` as its base URL (the host check
  refuses Starlette's ``testserver``); import it from this module, not from
  ``fastapi.testclient``.
- Helpers: ``build_site(root)`` (a private site), ``with_serve(settings, token=…)``,
  ``add_assets(catalog, n, …)`` (synthetic catalog rows, no files: paging and shuffle at size).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from picpipe.catalog.db import Catalog
from picpipe.catalog.models import Album, AlbumAsset, Asset, Source, SourceFile
from picpipe.config import ServeOptions, Settings
from picpipe.pipeline.thumbrun import ThumbRun
from picpipe.samples import make_jpeg, make_sample_set
from picpipe.web.app import create_app
from tests.conftest import MEDIA, open_library

with warnings.catch_warnings():
    # Starlette warns once, at import, that it would rather use `httpx2`; nothing to act on.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient as _StarletteClient


class TestClient(_StarletteClient):
    """Starlette's test client, speaking to ``http://localhost`` (a Host the app answers to;
    Starlette's default ``testserver`` is refused as a DNS-rebinding name would be)."""

    __test__ = False

    def __init__(self, app: Any, base_url: str = "http://localhost", **kwargs: Any) -> None:
        super().__init__(app, base_url=base_url, **kwargs)


ALBUM = "Favourites"
# Real files copied into the `camera` source when ../shared is present (path → role).
REAL_MEDIA = {
    "heic/Stonehenge.heic": "heic",
    "iphone/IMG_4120.JPG": "jpeg",
    "orientation/landscape_6.jpg": "turned_landscape",  # stored 450x600, shown 600x450
    "orientation/portrait_6.jpg": "turned_portrait",  # stored 600x450, shown 450x600
    "video/with-gps.mp4": "video",
}


@dataclass
class WebSite:
    """A real library and catalog with thumbnails; sha256 keys grouped by what tests need."""

    settings: Settings
    assets: set[str] = field(default_factory=set)  # every asset, videos included
    photos: set[str] = field(default_factory=set)  # what /files can serve
    portrait: set[str] = field(default_factory=set)  # among photos, shown taller than wide
    landscape: set[str] = field(default_factory=set)
    on_this_day: set[str] = field(default_factory=set)  # taken on today's month and day
    by_source: dict[str, set[str]] = field(default_factory=dict)
    album: set[str] = field(default_factory=set)  # members of ALBUM
    by_name: dict[str, str] = field(default_factory=dict)  # original file name → sha256
    heic: str | None = None  # None when ../shared/testdata/media is absent
    video: str | None = None
    real: dict[str, str] = field(default_factory=dict)  # REAL_MEDIA role → sha256

    @property
    def library_root(self) -> Path:
        return self.settings.library_root

    @property
    def home_root(self) -> Path:
        return self.settings.home_root


def build_site(root: Path, *, real_media: bool = True) -> WebSite:
    """Import generated and real photos into a new library under ``root``, with thumbnails."""
    phone, camera = root / "in" / "phone", root / "in" / "camera"
    make_sample_set(phone, count=24)
    today = datetime.now()
    for i in range(3):
        make_jpeg(
            camera / f"tall_{i}.jpg", size=(300, 400), taken=datetime(2022, 3, 1 + i), seed=50 + i
        )
    for year in (2016, 2020):  # leap years, so 29 February works too
        taken = today.replace(year=year, hour=12, minute=0, second=0, microsecond=0)
        make_jpeg(camera / f"anniversary_{year}.jpg", size=(400, 300), taken=taken, seed=year)
    make_jpeg(camera / "été à Zürich.jpg", size=(400, 300), taken=datetime(2021, 8, 1), seed=7)
    roles: dict[str, str] = {}
    if real_media and MEDIA.is_dir():
        for rel, role in REAL_MEDIA.items():
            target = camera / Path(rel).name
            shutil.copyfile(MEDIA / rel, target)
            roles[target.name] = role
    with clean_picpipe_env(), open_library(root) as lib:
        lib.run(lib.folder(phone, "phone"), lib.folder(camera, "camera"), workers=2)
        ThumbRun(
            lib.catalog,
            home=lib.settings.home_root,
            library_root=lib.settings.library_root,
            options=lib.settings.thumbs,
            workers=2,
        ).run()
        site = WebSite(lib.settings)
        with lib.catalog.session() as db:
            _describe(db, site, roles, today)
    return site


def _describe(db: Any, site: WebSite, roles: dict[str, str], today: datetime) -> None:
    from picpipe.web.shapes import display_size

    for asset in db.scalars(select(Asset)):
        site.assets.add(asset.sha256)
        site.by_name[asset.original_name] = asset.sha256
        if asset.original_name in roles:
            site.real[roles[asset.original_name]] = asset.sha256
        if asset.kind == "video":
            site.video = asset.sha256
        if asset.kind not in ("photo", "raw") or asset.thumbs_state != "ok":
            continue
        site.photos.add(asset.sha256)
        width, height = display_size(asset)
        if width and height and height > width:
            site.portrait.add(asset.sha256)
        if width and height and width > height:
            site.landscape.add(asset.sha256)
        if (asset.taken_local.month, asset.taken_local.day) == (today.month, today.day):
            site.on_this_day.add(asset.sha256)
    for name, sha in db.execute(
        select(Source.name, SourceFile.sha256).join(Source, Source.id == SourceFile.source_id)
    ):
        if sha in site.photos:
            site.by_source.setdefault(name, set()).add(sha)
    site.heic = site.real.get("heic")
    # An album of a few photos, as a Synology or Immich source would record it.
    members = sorted(site.by_source["phone"])[:3] + sorted(site.by_source["camera"])[:2]
    album = Album(name=ALBUM, created_at=datetime(2024, 1, 1))
    db.add(album)
    db.flush()
    db.add_all(AlbumAsset(album_id=album.id, sha256=sha) for sha in members)
    db.commit()
    site.album = set(members)


def add_assets(
    catalog: Catalog, count: int, *, start: datetime, same_time_every: int, prefix: str = ""
) -> None:
    """``count`` synthetic catalog rows (no files); runs of ``same_time_every`` share one
    capture time; every tenth is a video. ``prefix`` starts each key (for a second batch)."""
    rows = []
    for i in range(count):
        taken = start - timedelta(minutes=i // same_time_every)
        sha = (prefix + hashlib.sha256(f"{prefix}{i}".encode()).hexdigest())[:64]
        rows.append(
            {
                "sha256": sha,
                "size": 1000 + i,
                "kind": "video" if i % 10 == 0 else "photo",
                "taken_local": taken,
                "date_source": "exif",
                "original_name": f"IMG_{i:06d}.jpg",
                "library_path": f"originals/{taken:%Y/%m/%d}/{sha}.jpg",
                "thumbs_state": "ok",
                "imported_at": start,
                "width": 400,
                "height": 300,
            }
        )
    with catalog.session() as db:
        for chunk in range(0, len(rows), 5000):
            db.execute(insert(Asset), rows[chunk : chunk + 5000])
        db.commit()


@contextmanager
def clean_picpipe_env() -> Iterator[None]:
    """No PICPIPE_* from the developer's shell while session fixtures build settings."""
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith("PICPIPE_") and key != "PICPIPE_TEST_PG":
                patch.delenv(key)
        yield


def with_serve(settings: Settings, **serve: Any) -> Settings:
    """A copy of ``settings`` with some ``serve`` options changed (tokens, insecure…)."""
    options = ServeOptions.model_validate(settings.serve.model_dump() | serve)
    return settings.model_copy(update={"serve": options})


@pytest.fixture(scope="session")
def web_site(tmp_path_factory: pytest.TempPathFactory, exiftool_available: None) -> WebSite:
    return build_site(tmp_path_factory.mktemp("web"))


@pytest.fixture(scope="session")
def client(web_site: WebSite) -> Iterator[TestClient]:
    with TestClient(create_app(web_site.settings)) as test_client:
        yield test_client


@pytest.fixture
def app_client(web_site: WebSite) -> Iterator[Callable[..., TestClient]]:
    with ExitStack() as stack:

        def make(**serve: Any) -> TestClient:
            app = create_app(with_serve(web_site.settings, **serve))
            return stack.enter_context(TestClient(app))

        yield make
