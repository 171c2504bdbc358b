"""Bad input gets a clear error for that item, the run goes on, and nothing is lost."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import pytest
from sqlalchemy import select

from picpipe.catalog.models import Asset, SourceFile
from picpipe.library.layout import TEMP_PREFIX
from picpipe.pipeline.truncation import TRUNCATED
from picpipe.samples import make_jpeg
from picpipe.sources.base import FolderListing, ScanProblem, SourceEntry
from picpipe.sources.folder import FolderSource
from tests.conftest import LibraryFixture, missing, run_cli, tree_digest


class RewritingSource(FolderSource):
    """A folder whose files are rewritten by someone else while picpipe reads them (once)."""

    rewritten: set[str]

    @contextlib.contextmanager
    def open(self, entry: SourceEntry) -> Iterator[BinaryIO]:
        with super().open(entry) as stream:
            if entry.ref not in self.rewritten:
                self.rewritten.add(entry.ref)
                with open(self.root / entry.ref, "ab") as other_writer:
                    other_writer.write(b"more bytes arriving")
            yield stream


class VanishingSource(FolderSource):
    """Sub-folders and one file disappear after the listing has started."""

    def listing(self) -> Iterator[FolderListing | ScanProblem]:
        items = iter(super().listing())
        first = next(items)
        yield first
        for name in ("a", "b"):
            shutil.rmtree(self.root / name)
        (self.root / "gone.jpg").unlink()
        yield from items


def test_a_file_that_changes_while_read_is_retried_next_run(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    source_dir = tmp_path / "icloudpd"
    make_jpeg(source_dir / "IMG_1.jpg", taken=datetime(2022, 1, 1))
    source = RewritingSource(str(source_dir), source_dir, sqlite_library.settings.scan)
    source.rewritten = set()

    first = sqlite_library.run(source)

    assert (first.new, first.failed) == (0, 1)
    assert "changed while it was being read" in first.failures[0]["reason"]
    assert not list(sqlite_library.root.rglob(f"{TEMP_PREFIX}*"))
    with sqlite_library.catalog.session() as db:
        assert db.scalars(select(SourceFile.retryable)).one() is True

    second = sqlite_library.run(source)
    assert (second.new, second.failed) == (1, 0)


def test_folders_and_files_that_vanish_mid_scan(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    root = tmp_path / "card"
    make_jpeg(root / "0-first.jpg", taken=datetime(2022, 1, 1))
    make_jpeg(root / "gone.jpg", taken=datetime(2022, 1, 2), seed=1)
    make_jpeg(root / "a" / "x.jpg", taken=datetime(2022, 1, 3), seed=2)
    make_jpeg(root / "b" / "y.jpg", taken=datetime(2022, 1, 4), seed=3)
    source = VanishingSource(str(root), root, sqlite_library.settings.scan)

    summary = sqlite_library.run(source, workers=1)

    reasons = {f["path"].split(":", 1)[1]: f["reason"] for f in summary.failures}
    assert reasons["a"] == "folder disappeared during the scan"
    assert reasons["b"] == "folder disappeared during the scan"
    assert reasons["gone.jpg"] == "disappeared before it could be imported"
    assert summary.new == 1


def test_damaged_files_are_kept_with_their_problem(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    source = tmp_path / "damaged"
    whole = make_jpeg(
        tmp_path / "whole.jpg", size=(800, 600), taken=datetime(2021, 6, 7, 8, 9, 10)
    ).path
    source.mkdir()
    data = whole.read_bytes()
    (source / "IMG_20200102_030405.jpg").write_bytes(data[: len(data) // 2])  # truncated
    garbage = bytearray(data)
    garbage[30:400] = os.urandom(370)  # EXIF smashed, pixels intact
    (source / "smashed.jpg").write_bytes(bytes(garbage))
    (source / "noise.jpg").write_bytes(b"not a photo at all " * 300)

    summary = sqlite_library.import_folder(source)

    assert (summary.new, summary.failed) == (3, 0)
    with sqlite_library.catalog.session() as db:
        assets = {a.original_name: a for a in db.scalars(select(Asset))}
    truncated = assets["IMG_20200102_030405.jpg"]
    assert truncated.taken_local == datetime(2021, 6, 7, 8, 9, 10)  # EXIF sits before the cut
    assert truncated.problems == [TRUNCATED]
    assert truncated.kind == "photo"
    assert assets["smashed.jpg"].date_source in {"mtime", "exif"}
    assert TRUNCATED not in (assets["smashed.jpg"].problems or [])
    noise = assets["noise.jpg"]
    assert noise.date_source == "mtime"
    # Text named .jpg: kept as what it is, never as a photo with a .jpg name.
    assert (noise.kind, noise.library_path.rsplit(".", 1)[1]) == ("unknown", "txt")
    assert noise.problems


def test_names_that_are_not_utf8(sqlite_library: LibraryFixture, tmp_path: Path) -> None:
    source = tmp_path / "latin1"
    make_jpeg(tmp_path / "x.jpg", taken=datetime(2018, 8, 8))
    source.mkdir()
    odd = os.path.join(os.fsencode(source), b"caf\xe9 \n line.jpg")
    shutil.copy(tmp_path / "x.jpg", odd)

    summary = sqlite_library.import_folder(source)

    assert (summary.new, summary.failed) == (1, 0)
    assert any("not valid UTF-8" in w["problem"] for w in summary.warnings)
    with sqlite_library.catalog.session() as db:
        row = db.scalars(select(SourceFile)).one()
        asset = db.scalars(select(Asset)).one()
    assert row.ref == "caf\\xe9 \n line.jpg"
    assert asset.taken_local == datetime(2018, 8, 8)
    assert sqlite_library.import_folder(source).unchanged == 1


def test_unreadable_files_fail_alone(tmp_path: Path, exiftool_available: None) -> None:
    # Permission bits do not stop root, so the import runs as an unprivileged user, in a
    # folder that user can reach (pytest's own temp root is private to root).
    if shutil.which("setpriv") is None and os.geteuid() == 0:
        missing("setpriv is needed to drop root privileges")
    work = Path(tempfile.mkdtemp(prefix="picpipe-unreadable-"))
    try:
        _import_unreadable(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _import_unreadable(work: Path) -> None:
    source = work / "src"
    make_jpeg(source / "ok.jpg", taken=datetime(2020, 2, 2))
    make_jpeg(source / "secret.jpg", taken=datetime(2020, 2, 3), seed=5)
    os.chmod(source / "secret.jpg", 0)
    (source / "locked").mkdir()
    make_jpeg(source / "locked" / "inner.jpg", taken=datetime(2020, 2, 4), seed=6)
    os.chmod(source / "locked", 0)
    prefix: list[str] = []
    if os.geteuid() == 0:
        for path in [work, *work.rglob("*")]:
            os.chown(path, 65534, 65534)
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    exe = Path(os.sys.executable).with_name("picpipe")
    env = {**os.environ, "HOME": str(work), "PICPIPE_IMPORT__FSYNC": "false"}
    command = [
        *prefix,
        str(exe),
        "--home",
        str(work / "home"),
        "--library",
        str(work / "lib"),
        "import",
        str(source),
        "--json",
        "--no-thumbs",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 3, result.stderr
    summary = json.loads(result.stdout)
    reasons = {f["path"].split(":", 1)[1]: f["reason"] for f in summary["failures"]}
    assert summary["new"] == 1
    assert reasons["secret.jpg"].startswith("cannot be read (Permission denied)")
    assert "locked" in reasons
    assert "Permission denied" in reasons["locked"]

    # Unchanged, the failures are tried and reported again (exit 3 every run)...
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 3, again.stderr
    assert json.loads(again.stdout)["failed"] == 2
    # ...and a chmod that fixes them (size and mtime unchanged) lets them in.
    os.chmod(source / "secret.jpg", 0o644)
    os.chmod(source / "locked", 0o755)
    fixed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert fixed.returncode == 0, fixed.stderr
    report = json.loads(fixed.stdout)
    assert (report["new"], report["failed"], report["unchanged"]) == (2, 0, 1)


def test_a_full_library_disk_fails_items_and_leaves_no_partial_files(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        missing("mounting a small tmpfs needs root")
    small = sqlite_library.root
    small.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        missing(f"cannot mount tmpfs here: {mounted.stderr.strip()}")
    try:
        source = tmp_path / "big"
        for i in range(4):
            make_jpeg(
                source / f"{i}.jpg",
                size=(1200, 900),
                noise=90,
                taken=datetime(2020, 1, 1 + i),
                seed=i,
            )
        before = tree_digest(source)

        summary = sqlite_library.import_folder(source, workers=1)

        assert summary.failed >= 1
        assert summary.new >= 1
        assert summary.new + summary.failed == 4
        assert all("no space left" in f["reason"] for f in summary.failures)
        assert not list(small.rglob(f"{TEMP_PREFIX}*"))
        assert tree_digest(source) == before
        with sqlite_library.catalog.session() as db:
            failed = db.scalars(select(SourceFile).where(SourceFile.state == "failed")).all()
        assert all(row.retryable for row in failed)
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_an_unwritable_library_is_one_clear_line(tmp_path: Path, exiftool_available: None) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    source = tmp_path / "s"
    make_jpeg(source / "a.jpg")

    result = run_cli(
        "--home", str(tmp_path / "h"), "--library", str(blocker / "lib"), "import", str(source)
    )

    assert result.returncode == 6
    assert result.stderr.strip().startswith("error: library root")
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_exiftool_is_one_clear_line(tmp_path: Path) -> None:
    source = tmp_path / "s"
    make_jpeg(source / "a.jpg")

    result = run_cli(
        "--home",
        str(tmp_path / "h"),
        "import",
        str(source),
        env={"PICPIPE_EXIFTOOL": str(tmp_path / "no-exiftool")},
    )

    assert result.returncode == 7
    assert result.stderr.strip() == (
        "error: exiftool is not installed or not runnable (not found on PATH); "
        "run scripts/setup to install it"
    )


def test_import_of_a_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    result = run_cli("--home", str(tmp_path / "h"), "import", str(tmp_path / "nope"))
    assert result.returncode == 4
    assert "no such folder" in result.stderr


@pytest.mark.parametrize("size", [0])
def test_empty_files_fail(sqlite_library: LibraryFixture, tmp_path: Path, size: int) -> None:
    source = tmp_path / "e"
    source.mkdir()
    (source / "zero.jpg").write_bytes(b"" * size)
    summary = sqlite_library.import_folder(source)
    assert summary.failed == 1
    assert not (sqlite_library.root / "originals").exists() or not any(
        p.is_file() for p in (sqlite_library.root / "originals").rglob("*")
    )
