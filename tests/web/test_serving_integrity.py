"""The server never sends bytes that do not match their hash: a corrupt library original is
served from a verified replica or a source copy, or answered 503; never as it is."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from picpipe.catalog.models import Asset
from picpipe.samples import make_jpeg
from tests.conftest import open_library
from tests.web.test_media import (
    MediaSite,
    app_for,
    get,
    moved_away,
    no_paths,
    register_replica,
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, exiftool_available: None) -> MediaSite:
    """Three photos imported from the folder source ``in/phone`` (kept: a source copy)."""
    root = tmp_path_factory.mktemp("integrity")
    phone = root / "in" / "phone"
    for i in range(3):
        make_jpeg(phone / f"p{i}.jpg", size=(320, 240), taken=datetime(2022, 6, 1 + i), seed=i)
    with open_library(root) as lib:
        lib.run(lib.folder(phone, "phone"), workers=2)
        found = MediaSite(root, lib.settings)
        with lib.catalog.session() as db:
            for asset in db.scalars(select(Asset)):
                data = (lib.settings.library_root / asset.library_path).read_bytes()
                found.photos[asset.sha256] = data
    return found


def library_file(site: MediaSite, sha: str) -> Path:
    from picpipe.catalog.db import open_catalog

    catalog = open_catalog(site.settings.catalog_url)
    try:
        with catalog.session() as db:
            rel = db.scalar(select(Asset.library_path).where(Asset.sha256 == sha))
    finally:
        catalog.close()
    assert rel is not None
    return site.settings.library_root / rel


@contextmanager
def corrupted(path: Path, *, keep_mtime: bool = False) -> Iterator[bytes]:
    """Flip one byte in the middle of ``path`` in place (same size, same inode); put it back."""
    saved = path.read_bytes()
    st = path.stat()
    bad = bytearray(saved)
    bad[len(bad) // 2] ^= 0xFF
    with open(path, "r+b") as out:
        out.write(bad)
    if keep_mtime:  # as bit rot or a careless tool would leave it: only ctime tells
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    try:
        yield bytes(bad)
    finally:
        with open(path, "r+b") as out:
            out.write(saved)


def test_a_corrupt_original_is_503_when_no_good_copy_exists(site: MediaSite) -> None:
    sha, data = sorted(site.photos.items())[0]
    path = library_file(site, sha)
    with app_for(site.settings) as app:
        first = get(app, f"/api/assets/{sha}/full")
        assert (first.status_code, first.content) == (200, data)
        verified = app.state.ctx.media.full.verified
        assert verified.hashed == 1
        assert get(app, f"/api/assets/{sha}/full").content == data
        assert verified.hashed == 1  # remembered by its identity: not read again
        with moved_away(site.root / "in"), corrupted(path, keep_mtime=True) as bad:
            for url in (f"/api/assets/{sha}/full", f"/files/{sha}.jpg?size=full"):
                response = get(app, url)
                assert response.status_code == 503, url
                assert response.content != bad
                no_paths(response.text, site)
            assert verified.refused >= 1
        # Put right: served from the library again (hashed once more, then remembered).
        assert get(app, f"/api/assets/{sha}/full").content == data


def test_a_corrupt_original_is_served_from_a_verified_replica(
    site: MediaSite, tmp_path: Path
) -> None:
    sha, data = sorted(site.photos.items())[1]
    settings = register_replica(site.settings, sha, data, tmp_path / "nas")
    path = library_file(site, sha)
    with moved_away(site.root / "in"), corrupted(path) as bad, app_for(settings) as app:
        response = get(app, f"/api/assets/{sha}/full")
        assert response.status_code == 200, response.text
        assert response.content == data != bad
        assert app.state.ctx.media.cache_stats()["fetches"] == 1


def test_a_corrupt_original_is_served_from_a_matching_source_copy(site: MediaSite) -> None:
    sha, data = sorted(site.photos.items())[2]
    path = library_file(site, sha)
    with corrupted(path) as bad, app_for(site.settings) as app:
        response = get(app, f"/api/assets/{sha}/full")
        assert response.status_code == 200
        assert response.content == data != bad


def test_health_is_503_with_the_problem_when_the_library_goes_away(site: MediaSite) -> None:
    library = site.settings.library_root
    with app_for(site.settings) as app:
        healthy = get(app, "/health")
        assert healthy.status_code == 200
        assert healthy.json()["library_problem"] is None
        with moved_away(library):  # the NAS unmounted while serving
            gone = get(app, "/health")
            library.mkdir()  # and an empty mount point
            try:
                empty = get(app, "/health")
            finally:
                library.rmdir()
        for response in (gone, empty):
            assert response.status_code == 503
            body = response.json()
            assert body["status"] == "error"
            assert body["database"] == "ok"
            assert "is the NAS mounted?" in body["library_problem"]
            no_paths(response.text, site)
        assert get(app, "/health").status_code == 200
