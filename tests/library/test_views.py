"""Link views: built from the catalog, incremental, atomic per folder, originals untouched."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete

from picpipe.catalog.db import Catalog, open_catalog
from picpipe.catalog.models import Album, AlbumAsset, Asset, Source, SourceFile
from picpipe.config import Settings, load_settings
from picpipe.errors import ConfigError
from picpipe.library.layout import original_path, sidecar_path
from picpipe.library.views import STAGING, build_views

T0 = datetime(2024, 5, 6, 10, 0, 0)


class Lib:
    """A library with catalog rows and original files made directly (no exiftool needed)."""

    def __init__(self, tmp_path: Path, url: str | None = None, **options: object) -> None:
        self.tmp_path = tmp_path
        self.url = url
        self.options = options
        self.settings = self.with_views(**options)
        self.catalog: Catalog = open_catalog(self.settings.catalog_url)
        self.count = 0

    def with_views(self, **views: object) -> Settings:
        return load_settings(
            home=self.tmp_path / "home",
            library=self.tmp_path / "library",
            database_url=self.url,
            views={"layouts": ["by-date", "by-album"], **views},
        )

    @property
    def root(self) -> Path:
        return self.settings.library_root

    def add(
        self,
        name: str,
        taken: datetime = T0,
        *,
        kind: str = "photo",
        pair: str | None = None,
        make: str | None = "Canon",
        model: str | None = "Canon EOS R6",
        sidecar: bool = False,
    ) -> Asset:
        self.count += 1
        data = f"{name}-{self.count}".encode()
        sha = hashlib.sha256(data).hexdigest()
        ext = name.rsplit(".", 1)[-1].lower()
        rel = original_path(sha, taken.date(), ext)
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.root / rel).write_bytes(data)
        mtime = None
        if sidecar:
            (self.root / sidecar_path(rel)).write_text("<x:xmpmeta/>", encoding="utf-8")
            mtime = (self.root / sidecar_path(rel)).stat().st_mtime_ns
        asset = Asset(
            sha256=sha, size=len(data), kind=kind, taken_local=taken, date_source="exif",
            make=make, model=model, original_name=name, library_path=rel, pair_id=pair,
            imported_at=T0 + timedelta(seconds=self.count), sidecar_mtime_ns=mtime,
        )  # fmt: skip
        with self.catalog.session() as db, db.begin():
            db.add(asset)
        with self.catalog.session() as db:
            found = db.get_one(Asset, sha)
            db.expunge(found)
            return found

    def album(self, name: str, *assets: Asset) -> int:
        with self.catalog.session() as db, db.begin():
            album = Album(name=name, created_at=T0)
            db.add(album)
            db.flush()
            for asset in assets:
                db.add(AlbumAsset(album_id=album.id, sha256=asset.sha256))
            return album.id

    def build(self, settings: Settings | None = None) -> dict[str, object]:
        return build_views(settings or self.settings, self.catalog).as_dict()

    @property
    def views(self) -> Path:
        return self.root / "views"


@pytest.fixture
def lib(tmp_path: Path, catalog_url: str) -> Iterator[Lib]:
    made = Lib(tmp_path, catalog_url)
    try:
        yield made
    finally:
        made.catalog.close()


def tree(root: Path) -> dict[str, str]:
    """Every link under ``root`` (relative) → what it points at (the symlink text)."""
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".picpipe")]
        for name in files:
            path = Path(folder) / name
            if path.is_symlink():
                found[path.relative_to(root).as_posix()] = os.readlink(path)
    return found


def originals(root: Path) -> dict[str, tuple[int, int, int]]:
    out = {}
    for path in (root / "originals").rglob("*"):
        if path.is_file():
            st = path.stat()
            out[path.relative_to(root).as_posix()] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def test_views_follow_the_catalog_through_imports_and_album_changes(lib: Lib) -> None:
    one = lib.add("IMG_0001.JPG", sidecar=True)
    two = lib.add("IMG_0001.JPG")  # same name, same day: collision
    three = lib.add("DSC_7.NEF", T0 + timedelta(days=40), kind="raw")
    lib.album("Summer / 2024", one, three)
    before = originals(lib.root)

    report = lib.build()

    links = tree(lib.views)
    assert links == {
        "by-date/2024/05/06/IMG_0001.JPG": f"../../../../../{one.library_path}",
        "by-date/2024/05/06/IMG_0001.JPG.xmp": f"../../../../../{sidecar_path(one.library_path)}",
        f"by-date/2024/05/06/IMG_0001~{two.sha256[:8]}.JPG": f"../../../../../{two.library_path}",
        "by-date/2024/06/15/DSC_7.NEF": f"../../../../../{three.library_path}",
        "by-album/Summer _ 2024/IMG_0001.JPG": f"../../../{one.library_path}",
        "by-album/Summer _ 2024/IMG_0001.JPG.xmp": f"../../../{sidecar_path(one.library_path)}",
        "by-album/Summer _ 2024/DSC_7.NEF": f"../../../{three.library_path}",
    }
    for rel in links:
        assert (lib.views / rel).resolve().is_file(), rel
        assert (lib.views / rel).resolve().is_relative_to(lib.root.resolve() / "originals")
    layouts = report["layouts"]
    assert isinstance(layouts, dict)
    assert layouts["by-date"]["rebuilt"] == 2
    assert layouts["by-album"]["links"] == 2

    # A new import into a new day; an asset leaves the album; nothing else is rewritten.
    settled = (lib.views / "by-date/2024/06/15").stat().st_ino
    four = lib.add("IMG_0002.JPG", T0 + timedelta(days=1))
    with lib.catalog.session() as db, db.begin():
        db.execute(delete(AlbumAsset).where(AlbumAsset.sha256 == three.sha256))

    report = lib.build()

    links = tree(lib.views)
    assert "by-album/Summer _ 2024/DSC_7.NEF" not in links
    assert "by-album/Summer _ 2024/IMG_0001.JPG" in links
    assert links["by-date/2024/05/07/IMG_0002.JPG"] == f"../../../../../{four.library_path}"
    layouts = report["layouts"]
    assert isinstance(layouts, dict)
    assert (layouts["by-date"]["rebuilt"], layouts["by-album"]["rebuilt"]) == (1, 1)
    assert (lib.views / "by-date/2024/06/15").stat().st_ino == settled, "unchanged folder kept"
    assert lib.build()["layouts"]["by-date"]["rebuilt"] == 0  # type: ignore[index]

    # An asset leaves the library: its link and its now empty folders go.
    with lib.catalog.session() as db, db.begin():
        db.execute(delete(Asset).where(Asset.sha256 == three.sha256))
    lib.build()
    assert not (lib.views / "by-date/2024/06").exists()
    assert originals(lib.root) == before | {
        four.library_path: originals(lib.root)[four.library_path]
    }
    assert not any(p.name.startswith(".picpipe") for p in (lib.views / "by-date").rglob("*"))
    assert (lib.views / STAGING).is_dir(), "replaced folders wait there for the next build"


def test_pairs_keep_one_base_name_and_collisions_move_the_whole_pair(lib: Lib) -> None:
    lib.add("IMG_5.HEIC")  # an unrelated photo that owns the name first
    still = lib.add("IMG_5.HEIC", pair="live-1")
    motion = lib.add("IMG_5_3.MOV", kind="video", pair="live-1")
    raw = lib.add("IMG_9.CR2", kind="raw", pair="raw-1")
    jpeg = lib.add("IMG_9.JPG", pair="raw-1")

    lib.build()

    names = {Path(rel).name for rel in tree(lib.views / "by-date")}
    suffix = still.sha256[:8]
    assert {f"IMG_5~{suffix}.HEIC", f"IMG_5~{suffix}.MOV"} <= names, "the pair moved together"
    assert {"IMG_5.HEIC", "IMG_9.JPG", "IMG_9.CR2"} <= names
    assert motion.pair_id == still.pair_id
    assert raw.pair_id == jpeg.pair_id


def test_a_reader_never_sees_a_half_built_folder(lib: Lib) -> None:
    for i in range(150):
        lib.add(f"IMG_{i:04d}.JPG")
    lib.build()
    day = lib.views / "by-date/2024/05/06"
    for i in range(150, 300):
        lib.add(f"IMG_{i:04d}.JPG")
    seen: set[int] = set()
    broken: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                names = os.listdir(day)
            except FileNotFoundError:
                broken.append("folder missing")
                continue
            seen.add(len(names))
            broken.extend(n for n in names[:5] if not (day / n).exists())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(3):
            lib.build()
            lib.build(lib.with_views(templates={"by-album": "{album}/{stem}.{ext}"}))
            for i in range(300, 305):
                lib.add(f"IMG_{i:04d}.JPG")
    finally:
        stop.set()
        thread.join()
    assert not broken
    assert seen <= {150, 300, 305, 310, 315}, seen


def test_hardlinks_share_the_originals_inode_and_change_nothing(tmp_path: Path) -> None:
    lib = Lib(tmp_path, link="hardlink")
    try:
        asset = lib.add("IMG_1.JPG", sidecar=True)
        before = originals(lib.root)
        lib.build()
        link = lib.views / "by-date/2024/05/06/IMG_1.JPG"
        original = lib.root / asset.library_path
        assert not link.is_symlink()
        assert link.stat().st_ino == original.stat().st_ino
        assert (lib.views / "by-date/2024/05/06/IMG_1.JPG.xmp").stat().st_nlink == 2
        # Back to symlinks: every folder is rebuilt with the new kind of link.
        lib.build(lib.with_views(link="symlink"))
        assert link.is_symlink()
        assert {k: v[1:] for k, v in originals(lib.root).items()} == {
            k: v[1:] for k, v in before.items()
        }
    finally:
        lib.catalog.close()


def test_files_a_tool_drops_into_a_view_are_kept(lib: Lib) -> None:
    lib.add("IMG_1.JPG")
    lib.build()
    day = lib.views / "by-date/2024/05/06"
    (day / "digikam4.db").write_bytes(b"SQLite format 3\x00")
    lib.add("IMG_2.JPG")
    lib.build()
    assert (day / "digikam4.db").read_bytes() == b"SQLite format 3\x00"
    assert {p.name for p in day.iterdir()} == {"IMG_1.JPG", "IMG_2.JPG", "digikam4.db"}
    # Links changed by hand come back with a rewrite; the tool's file stays.
    (day / "IMG_1.JPG").unlink()
    assert lib.build()["layouts"]["by-album"]["rebuilt"] == 0  # type: ignore[index]
    assert not (day / "IMG_1.JPG").exists(), "an ordinary build trusts its records"
    report = build_views(lib.settings, lib.catalog, rewrite=True).as_dict()
    assert report["layouts"]["by-date"]["rebuilt"] == 1  # type: ignore[index]
    assert {p.name for p in day.iterdir()} == {"IMG_1.JPG", "IMG_2.JPG", "digikam4.db"}


def test_layouts_templates_and_lost_state(lib: Lib) -> None:
    asset = lib.add("P1.JPG", make="Apple", model="iPhone 12")
    other = lib.add("P2.JPG", make=None, model=None)
    with lib.catalog.session() as db, db.begin():
        source = Source(name="phone", kind="folder", location="/x", created_at=T0)
        db.add(source)
        db.flush()
        db.add(
            SourceFile(
                source_id=source.id,
                ref="DCIM/100APPLE/P1.JPG",
                folder="DCIM/100APPLE",
                size=asset.size,
                mtime_ns=0,
                sha256=asset.sha256,
                state="imported",
                first_seen=T0,
                last_seen=T0,
            )
        )
    settings = lib.with_views(
        layouts=["by-camera", "by-source"], templates={"by-camera": "{camera}/{sha8}-{name}"}
    )
    lib.build(settings)
    links = set(tree(lib.views))
    assert links == {
        f"by-camera/Apple iPhone 12/{asset.sha256[:8]}-P1.JPG",
        f"by-camera/Unknown camera/{other.sha256[:8]}-P2.JPG",
        "by-source/phone/DCIM/100APPLE/P1.JPG",
    }
    assert not (lib.views / "by-date").exists(), "the layouts not asked for are gone"
    (lib.views / ".picpipe-views.json").unlink()
    lib.build(lib.with_views(layouts=["by-source"]))
    assert set(tree(lib.views)) == {"by-source/phone/DCIM/100APPLE/P1.JPG"}
    assert json.loads((lib.views / ".picpipe-views.json").read_text())["link"] == "symlink"


@pytest.mark.parametrize(
    ("views", "problem"),
    [
        ({"path": "LIB/originals/v"}, "outside"),
        ({"templates": {"by-date": "{year}/{nope}"}}, "unknown field"),
        ({"templates": {"by-album": "{source}/{name}"}}, "unknown field"),
    ],
)
def test_bad_view_settings_are_config_errors(
    tmp_path: Path, views: dict[str, object], problem: str
) -> None:
    lib = Lib(tmp_path)
    try:
        if "path" in views:
            views = {"path": str(views["path"]).replace("LIB", str(lib.root))}
        with pytest.raises(ConfigError, match=problem):
            lib.build(lib.with_views(**views))
    finally:
        lib.catalog.close()


def test_an_import_that_only_adds_reads_just_its_days(tmp_path: Path) -> None:
    lib = Lib(tmp_path, layouts=["by-date"])
    try:
        first = lib.add("IMG_1.JPG")
        lib.add("IMG_2.JPG", T0 + timedelta(days=3))
        assert lib.build()["full"] is True
        other_day = (lib.views / "by-date/2024/05/09").stat().st_ino

        lib.add("IMG_1.JPG")  # same day and name as `first`: the suffix rule still holds
        report = lib.build()

        assert report["full"] is False
        layout = report["layouts"]["by-date"]  # type: ignore[index]
        assert (layout["folders"], layout["links"], layout["rebuilt"]) == (2, 3, 1)
        assert len(tree(lib.views / "by-date/2024/05/06")) == 2
        assert (lib.views / "by-date/2024/05/09").stat().st_ino == other_day

        # Changes that are not plain additions fall back to a full build.
        with lib.catalog.session() as db, db.begin():
            db.get_one(Asset, first.sha256).pair_id = "live-9"
        assert lib.build()["full"] is True
        assert lib.build()["full"] is False, "nothing new: nothing to read"
        with lib.catalog.session() as db, db.begin():
            db.get_one(Asset, first.sha256).sidecar_mtime_ns = 1
        (lib.root / sidecar_path(first.library_path)).write_text("<x/>", encoding="utf-8")
        assert lib.build()["full"] is True
        assert "by-date/2024/05/06/IMG_1.JPG.xmp" in tree(lib.views)
        with lib.catalog.session() as db, db.begin():
            db.execute(delete(Asset).where(Asset.sha256 == first.sha256))
        assert lib.build()["full"] is True
        left = tree(lib.views)
        assert first.library_path not in " ".join(left.values())
        assert "by-date/2024/05/06/IMG_1.JPG" in left, "the other IMG_1.JPG takes the name"
        assert lib.build(lib.with_views(layouts=["by-date"], link="hardlink"))["full"] is True
    finally:
        lib.catalog.close()


def test_hardlinks_across_file_systems_are_a_config_error(tmp_path: Path) -> None:
    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system at /dev/shm")
    views = other / f"picpipe-views-{os.getpid()}"
    lib = Lib(tmp_path, link="hardlink", path=str(views))
    try:
        lib.add("IMG_1.JPG")
        with pytest.raises(ConfigError, match="library's file system"):
            lib.build()
        assert not any(views.rglob("IMG_1.JPG"))
    finally:
        lib.catalog.close()
        shutil.rmtree(views, ignore_errors=True)
