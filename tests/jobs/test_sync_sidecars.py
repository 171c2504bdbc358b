"""Sidecars replicate beside their originals: edits reach the destination, never over someone's."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from sqlalchemy import select

from picpipe.catalog.models import Asset, Replica, SidecarReplica
from picpipe.destinations.base import Destination, open_destination
from picpipe.hashing import sha256_file
from picpipe.jobs.replicate import SyncRun
from picpipe.jobs.retry import RetryPolicy
from picpipe.jobs.sync_report import SyncReport
from picpipe.pipeline.sidecar_sync import reimport_changed_sidecars
from picpipe.samples import make_sample_set
from tests.conftest import LibraryFixture

FAST = RetryPolicy(retries=2, base=0.0, cap=0.0)


def filesystem(tmp_path: Path, name: str) -> Destination:
    root = tmp_path / name
    root.mkdir(exist_ok=True)
    return open_destination(name, {"kind": "filesystem", "path": str(root), "fsync": False})


def sync(lib: LibraryFixture, dests: dict[str, Any]) -> SyncReport:
    return SyncRun(
        lib.catalog, lib.root, dests, policy=FAST, concurrency=dict.fromkeys(dests, 2)
    ).run()


def edit_as_digikam(sidecar: Path, *assignments: str) -> None:
    """digiKam writes ratings and keywords into the .xmp with exiv2; exiftool does the same."""
    before = sidecar.stat().st_mtime_ns
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", *assignments, str(sidecar)], check=True
    )
    os.utime(sidecar, ns=(before + 2_000_000_000, before + 2_000_000_000))  # a later edit


def xmp_tags(path: Path) -> str:
    return subprocess.run(
        ["exiftool", "-s", "-XMP:Rating", "-XMP:Subject", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def first_asset(lib: LibraryFixture) -> tuple[Asset, Replica]:
    with lib.catalog.session() as db:
        asset = db.scalars(select(Asset).order_by(Asset.sha256)).first()
        assert asset is not None
        replica = db.scalars(select(Replica).where(Replica.sha256 == asset.sha256)).one()
        return asset, replica


def sidecar_rows(lib: LibraryFixture) -> dict[str, SidecarReplica]:
    with lib.catalog.session() as db:
        return {r.sha256: r for r in db.scalars(select(SidecarReplica))}


def test_sidecars_follow_their_originals_and_their_edits(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    lib = sqlite_library
    make_sample_set(tmp_path / "phone", count=4)
    lib.import_folder(tmp_path / "phone")
    nas = filesystem(tmp_path, "nas")

    report = sync(lib, {"nas": nas})
    assert report.status == "completed", report.failures
    assert report.sidecars_uploaded == {"nas": 4}
    rows = sidecar_rows(lib)
    assert len(rows) == 4
    asset, replica = first_asset(lib)
    remote = tmp_path / "nas" / f"{replica.remote_key}.xmp"
    local = lib.root / asset.library_path.rsplit(".", 1)[0]
    local = local.with_suffix(".xmp")
    assert remote.read_bytes() == local.read_bytes()
    assert rows[asset.sha256].sidecar_sha256 == sha256_file(local)[0]

    # Nothing changed: a second sync reads no sidecar and writes nothing.
    assert sync(lib, {"nas": nas}).sidecars_uploaded == {}

    # An edit as digiKam makes it, re-read by picpipe, reaches the destination.
    edit_as_digikam(local, "-XMP:Rating=4", "-XMP:Subject+=holiday")
    reimport_changed_sidecars(lib.settings, lib.catalog, tools=lib.tools)
    with lib.catalog.session() as db:
        held = db.get(Asset, asset.sha256)
        assert held is not None
        assert held.rating == 4
        assert "holiday" in (held.keywords or [])
    assert sync(lib, {"nas": nas}).sidecars_uploaded == {"nas": 1}
    assert remote.read_bytes() == local.read_bytes()
    assert "Rating" in xmp_tags(remote)
    assert "holiday" in xmp_tags(remote)

    # Edited again: the new content replaces what picpipe wrote (it is picpipe's own file).
    edit_as_digikam(local, "-XMP:Rating=5")
    report = sync(lib, {"nas": nas})
    assert report.sidecars_uploaded == {"nas": 1}
    assert report.sidecar_versions == []
    assert remote.read_bytes() == local.read_bytes()

    # Someone edits the remote sidecar; the next change goes beside it, theirs is kept.
    theirs = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>someone else's</x:xmpmeta>\n"
    remote.write_bytes(theirs)
    edit_as_digikam(local, "-XMP:Rating=2")
    report = sync(lib, {"nas": nas})
    assert report.status == "completed", report.failures
    assert remote.read_bytes() == theirs
    [(dest, kept, written)] = report.sidecar_versions
    assert (dest, kept) == ("nas", f"{replica.remote_key}.xmp")
    assert written.startswith(f"{replica.remote_key}.picpipe-")
    assert written.endswith(".xmp")
    assert (tmp_path / "nas" / written).read_bytes() == local.read_bytes()
    assert sidecar_rows(lib)[asset.sha256].remote_key == written

    # And the version key is picpipe's own from then on: replaced in place at the next edit.
    edit_as_digikam(local, "-XMP:Rating=3")
    report = sync(lib, {"nas": nas})
    assert report.sidecar_versions == []
    assert (tmp_path / "nas" / written).read_bytes() == local.read_bytes()
    assert remote.read_bytes() == theirs


def test_a_remote_sidecar_already_holding_the_content_is_adopted(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    lib = sqlite_library
    make_sample_set(tmp_path / "phone", count=2)
    lib.import_folder(tmp_path / "phone")
    nas = filesystem(tmp_path, "nas")
    sync(lib, {"nas": nas})
    with lib.catalog.write() as db:
        for row in db.scalars(select(SidecarReplica)):
            db.delete(row)
    report = sync(lib, {"nas": nas})
    assert report.sidecars_uploaded == {}
    assert report.sidecar_versions == []
    assert len(sidecar_rows(lib)) == 2
