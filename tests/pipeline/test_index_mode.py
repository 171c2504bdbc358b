"""Index mode (`mode: index`): each original read once, catalogued and thumbnailed, never kept
in the library; a library-mode copy of the same bytes places it later."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from picpipe.catalog.db import open_catalog
from picpipe.catalog.models import Asset, SourceFile
from picpipe.config import Settings, load_settings
from picpipe.jobs.workflows import ingest
from picpipe.library.layout import THUMB_SIZES, thumb_path
from picpipe.library.staging import staging_root
from picpipe.pipeline.exiftool import ExifToolPool
from picpipe.samples import make_jpeg
from picpipe.sources.folder import FolderSource


def index_settings(
    root: Path, database_url: str | None = None, **sources: dict[str, object]
) -> Settings:
    return load_settings(
        home=root / "home",
        library=root / "library",
        database_url=database_url,
        sources=sources,
        **{"import": {"fsync": False}},
    )


def photos(folder: Path, count: int, *, start: int = 0) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for i in range(start, start + count):
        path = folder / f"p{i}.jpg"
        make_jpeg(path, size=(320, 240), taken=datetime(2022, 6, 1 + i % 27), seed=i)
        out[path.name] = path.read_bytes()
    return out


@contextmanager
def ingesting(settings: Settings) -> Iterator[object]:
    catalog = open_catalog(settings.catalog_url)
    tools = ExifToolPool()

    def run(name: str) -> object:
        raw = settings.sources[name]
        source = FolderSource(name, Path(str(raw["path"])), settings.scan)
        return ingest(settings, catalog, [source], tools=tools, workers=2)

    try:
        yield run
    finally:
        tools.close()
        catalog.close()


def library_files(settings: Settings) -> list[Path]:
    originals = settings.library_root / "originals"
    return [p for p in originals.rglob("*") if p.is_file()] if originals.exists() else []


def test_index_mode_keeps_catalog_thumbnails_and_provenance_but_no_original(
    tmp_path: Path, exiftool_available: None, catalog_url: str
) -> None:
    kitchen = tmp_path / "kitchen"
    originals = photos(kitchen, 3)
    settings = index_settings(
        tmp_path, catalog_url, kitchen={"path": str(kitchen), "mode": "index"}
    )
    with ingesting(settings) as run:
        result = run("kitchen")
    assert result.summary.new == 3  # type: ignore[attr-defined]
    assert library_files(settings) == []
    catalog = open_catalog(settings.catalog_url)
    try:
        with catalog.session() as db:
            assets = list(db.scalars(select(Asset)))
            refs = {f.ref: f.sha256 for f in db.scalars(select(SourceFile))}
    finally:
        catalog.close()
    assert {a.index_only for a in assets} == {True}
    assert {a.thumbs_state for a in assets} == {"ok"}
    assert set(refs) == set(originals)
    for asset in assets:
        assert asset.taken_local.year == 2022  # metadata read from the one read
        for size in THUMB_SIZES:
            assert (settings.home_root / thumb_path(asset.sha256, size)).is_file()
    # The staged copies went once their thumbnails were made.
    assert list(staging_root(settings.home_root).glob("*")) == []


def test_a_library_mode_copy_of_an_index_only_asset_places_its_original(
    tmp_path: Path, exiftool_available: None
) -> None:
    kitchen, camera = tmp_path / "kitchen", tmp_path / "camera"
    originals = photos(kitchen, 2)
    camera.mkdir()
    (camera / "copy.jpg").write_bytes(originals["p0.jpg"])
    settings = index_settings(
        tmp_path,
        kitchen={"path": str(kitchen), "mode": "index"},
        camera={"path": str(camera)},
    )
    with ingesting(settings) as run:
        run("kitchen")
        second = run("camera")
    assert second.summary.duplicate == 1  # type: ignore[attr-defined]
    placed = library_files(settings)
    assert [p.read_bytes() for p in placed] == [originals["p0.jpg"]]
    catalog = open_catalog(settings.catalog_url)
    try:
        with catalog.session() as db:
            flags = {a.library_path: a.index_only for a in db.scalars(select(Asset))}
    finally:
        catalog.close()
    assert sorted(flags.values()) == [False, True]
    assert flags[str(placed[0].relative_to(settings.library_root))] is False


def test_an_index_mode_copy_of_a_library_asset_is_a_duplicate(
    tmp_path: Path, exiftool_available: None
) -> None:
    kitchen, camera = tmp_path / "kitchen", tmp_path / "camera"
    originals = photos(camera, 1)
    kitchen.mkdir()
    (kitchen / "same.jpg").write_bytes(originals["p0.jpg"])
    settings = index_settings(
        tmp_path,
        kitchen={"path": str(kitchen), "mode": "index"},
        camera={"path": str(camera)},
    )
    with ingesting(settings) as run:
        run("camera")
        again = run("kitchen")
    assert again.summary.duplicate == 1  # type: ignore[attr-defined]
    catalog = open_catalog(settings.catalog_url)
    try:
        with catalog.session() as db:
            assert [a.index_only for a in db.scalars(select(Asset))] == [False]
    finally:
        catalog.close()


@pytest.mark.parametrize("bad", ["catalog", 0])
def test_mode_and_poll_seconds_are_checked(tmp_path: Path, bad: object) -> None:
    from picpipe.errors import ConfigError

    entry = {"path": str(tmp_path)} | ({"mode": bad} if bad == "catalog" else {"poll_seconds": bad})
    with pytest.raises(ConfigError) as caught:
        index_settings(tmp_path, kitchen=entry)
    assert "sources.kitchen." in caught.value.message


def test_thumbnails_come_from_the_source_when_the_staged_copy_is_gone(
    tmp_path: Path, exiftool_available: None
) -> None:
    import shutil

    from picpipe.jobs.workflows import thumbnails_run

    kitchen = tmp_path / "kitchen"
    photos(kitchen, 2)
    settings = index_settings(tmp_path, kitchen={"path": str(kitchen), "mode": "index"})
    catalog = open_catalog(settings.catalog_url)
    tools = ExifToolPool()
    try:
        source = FolderSource("kitchen", kitchen, settings.scan)
        ingest(settings, catalog, [source], tools=tools, workers=2, thumbnails=False)
        staged = staging_root(settings.home_root)
        assert len(list(staged.glob("*.jpg"))) == 2  # kept until the thumbnails are made
        shutil.rmtree(staged)  # a cleaned home
        summary = thumbnails_run(settings, catalog, "pending")
        with catalog.session() as db:
            states = {a.thumbs_state for a in db.scalars(select(Asset))}
    finally:
        tools.close()
        catalog.close()
    assert (summary.made, summary.failed) == (2, 0)
    assert states == {"ok"}
    assert list(staged.glob("*")) == []
    assert library_files(settings) == []
