"""Index-only assets at full resolution: fetched from their source through the full-resolution
cache (byte limit, LRU order), verified by SHA-256; a changed or vanished source is a 503 with
one line, never wrong bytes. The safety report, sync and verify know them."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from picpipe.catalog.db import open_catalog
from picpipe.catalog.models import Asset
from picpipe.config import Settings, load_settings
from picpipe.jobs.workflows import ingest
from picpipe.pipeline.exiftool import ExifToolPool
from picpipe.samples import make_jpeg
from picpipe.sources.configured import open_configured_source
from tests.conftest import run_cli
from tests.web.test_media import app_for, get, no_paths

PHOTOS = 4


def kitchen_settings(root: Path, *, max_bytes: int | None = None, **extra: Any) -> Settings:
    cache = {"max_size_gb": max_bytes / 1e9} if max_bytes else {}
    return load_settings(
        home=root / "home",
        library=root / "library",
        sources={"kitchen": {"path": str(root / "kitchen"), "mode": "index"}},
        cache=cache,
        **{"import": {"fsync": False}},
        **extra,
    )


def build_kitchen(root: Path) -> dict[str, bytes]:
    """``PHOTOS`` photos ingested from the index-mode folder source ``kitchen``: sha → bytes."""
    folder = root / "kitchen"
    for i in range(PHOTOS):
        make_jpeg(folder / f"k{i}.jpg", size=(320, 240), taken=datetime(2021, 3, 1 + i), seed=i)
    settings = kitchen_settings(root)
    catalog = open_catalog(settings.catalog_url)
    tools = ExifToolPool()
    try:
        source = open_configured_source(settings, "kitchen")
        ingest(settings, catalog, [source], tools=tools, workers=2)
        with catalog.session() as db:
            rows = {a.sha256: a.original_name for a in db.scalars(select(Asset))}
    finally:
        tools.close()
        catalog.close()
    return {sha: (folder / name).read_bytes() for sha, name in rows.items()}


@pytest.fixture
def kitchen(tmp_path: Path, exiftool_available: None) -> dict[str, bytes]:
    return build_kitchen(tmp_path)


def no_originals(root: Path) -> bool:
    return not [p for p in (root / "library").rglob("*") if p.is_file() and p.suffix == ".jpg"]


def cached_names(settings: Settings) -> set[str]:
    folder = settings.home_root / "cache" / "full"
    return {p.name.split(".")[0] for p in folder.glob("??/*") if p.is_file()}


def test_full_resolution_comes_from_the_source_through_the_cache_in_lru_order(
    tmp_path: Path, kitchen: dict[str, bytes]
) -> None:
    assert no_originals(tmp_path)
    largest = max(len(data) for data in kitchen.values())
    settings = kitchen_settings(tmp_path, max_bytes=round(2.5 * largest))
    a, b, c, d = sorted(kitchen)
    with app_for(settings) as app:
        for sha in (a, b):
            response = get(app, f"/api/assets/{sha}/full")
            assert response.status_code == 200
            assert response.content == kitchen[sha]
        assert cached_names(settings) == {a, b}
        # Read a again: b is now the least recently used and goes first.
        assert get(app, f"/files/{a}.jpg?size=full").content == kitchen[a]
        assert get(app, f"/files/{c}.jpg?size=full").content == kitchen[c]
        assert cached_names(settings) == {a, c}
        stats = app.state.ctx.media.cache_stats()
        assert stats["bytes"] <= stats["max_bytes"]
        assert stats["evictions"] >= 1
        # The thumbnails are served as for any asset; /files picks among the index.
        assert get(app, f"/api/assets/{d}/medium").status_code == 200
        assert get(app, "/files").status_code == 200
        listed = get(app, "/files/list").json()
        assert sorted(listed["files"]) == sorted(f"{sha}.jpg" for sha in kitchen)
    assert no_originals(tmp_path)


def test_a_changed_source_file_is_a_503_never_its_new_bytes(
    tmp_path: Path, kitchen: dict[str, bytes]
) -> None:
    settings = kitchen_settings(tmp_path)
    sha = sorted(kitchen)[0]
    name = next(p for p in (tmp_path / "kitchen").iterdir() if p.read_bytes() == kitchen[sha])
    make_jpeg(name, size=(320, 240), taken=datetime(2021, 3, 9), seed=99)  # other bytes
    with app_for(settings) as app:
        response = get(app, f"/api/assets/{sha}/full")
        assert response.status_code == 503
        assert response.content != name.read_bytes()
        body = response.json()
        assert "\n" not in body["error"]
        no_paths(response.text, _Site(tmp_path))
        assert cached_names(settings) == set()


@pytest.mark.parametrize("gone", ["file", "folder"])
def test_a_source_that_is_gone_is_a_503(
    tmp_path: Path, kitchen: dict[str, bytes], gone: str
) -> None:
    settings = kitchen_settings(tmp_path)
    sha = sorted(kitchen)[1]
    if gone == "folder":
        shutil.rmtree(tmp_path / "kitchen")
    else:
        for path in (tmp_path / "kitchen").iterdir():
            if path.read_bytes() == kitchen[sha]:
                path.unlink()
    with app_for(settings) as app:
        response = get(app, f"/files/{sha}.jpg?size=full")
        assert response.status_code == 503
        assert response.json()["error"].startswith(f"the original of {sha[:12]}")
        # Another index-only asset still comes when only one file went.
        other = sorted(kitchen)[2]
        expected = 503 if gone == "folder" else 200
        assert get(app, f"/api/assets/{other}/full").status_code == expected


class _Site:
    def __init__(self, root: Path) -> None:
        self.root = root


def test_replicas_sync_and_verify_know_index_only_assets(
    tmp_path: Path, kitchen: dict[str, bytes]
) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps(
            {
                "sources": {"kitchen": {"path": str(tmp_path / "kitchen"), "mode": "index"}},
                "destinations": {"nas": {"kind": "filesystem", "path": str(nas)}},
            }
        )
    )
    base = ["--home", str(tmp_path / "home"), "--library", str(tmp_path / "library")]
    base += ["--config", str(config)]

    safety = run_cli(*base, "replicas", "--json")
    assert safety.returncode == 0, safety.stderr
    report = json.loads(safety.stdout)
    assert report["not_in_library"] == PHOTOS
    assert report["under_replicated"] == PHOTOS
    assert {a["copies"] for a in report["assets"]} == {0}
    assert {a["in_library"] for a in report["assets"]} == {False}

    synced = run_cli(*base, "sync", "--json")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    done = json.loads(synced.stdout)
    assert done["destinations"]["nas"]["uploaded"] == 0
    assert done["destinations"]["nas"]["failed"] == 0
    assert done["skipped"] == [
        {"reason": "index only (mode: index): no original in the library to send", "assets": 4}
    ]
    assert not [p for p in nas.rglob("*") if p.is_file() and p.suffix == ".jpg"]

    verified = run_cli(*base, "verify", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    result = json.loads(verified.stdout)
    assert result["clean"] is True
    assert result["missing"] == []
    assert result["index_only"] == PHOTOS

    text = run_cli(*base, "verify")
    assert "index-only" in text.stdout
    assert "missing" not in text.stdout


def test_a_source_of_another_kind_is_opened_by_name_to_fetch(
    tmp_path: Path, exiftool_available: None
) -> None:
    """A watched folder stands for the remote kinds: its files are found by ref in its
    listing and read with ``Source.open`` (not at a path), then checked by their hash."""
    drop = tmp_path / "drop"
    make_jpeg(drop / "d.jpg", size=(320, 240), taken=datetime(2021, 4, 1), seed=7)
    entry = {"kind": "watched", "path": str(drop), "settle_seconds": 0, "mode": "index"}
    settings = load_settings(
        home=tmp_path / "home",
        library=tmp_path / "library",
        sources={"drop": entry},
        **{"import": {"fsync": False}},
    )
    catalog = open_catalog(settings.catalog_url)
    tools = ExifToolPool()
    try:
        ingest(settings, catalog, [open_configured_source(settings, "drop")], tools=tools)
        with catalog.session() as db:
            (sha,) = db.scalars(select(Asset.sha256))
    finally:
        tools.close()
        catalog.close()
    assert no_originals(tmp_path)
    with app_for(settings) as app:
        response = get(app, f"/api/assets/{sha}/full")
        assert response.status_code == 200
        assert response.content == (drop / "d.jpg").read_bytes()
    (drop / "d.jpg").unlink()
    with app_for(settings) as app:
        assert get(app, f"/api/assets/{sha}/full").status_code == 503
