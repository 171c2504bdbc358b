"""Backups keep the edits at Immich too: a sidecar edited after the upload reaches the Immich
asset as its description, rating and tags at the next sync; tags given in Immich stay."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from picpipe.catalog.models import Asset, Replica, SidecarReplica
from picpipe.destinations.base import open_destination
from picpipe.destinations.immich import ImmichDestination, ImmichOptions
from picpipe.destinations.immich_metadata import ImmichEdits
from picpipe.jobs.replicate import SyncRun
from picpipe.library.layout import sidecar_path
from picpipe.samples import make_sample_set
from tests.jobs.test_sync_sidecars import FAST, edit_as_digikam

if TYPE_CHECKING:
    from pathlib import Path

    from picpipe.jobs.sync_report import SyncReport
    from tests.conftest import LibraryFixture
    from tests.servers.immich import ImmichAccount


def sync(lib: LibraryFixture, account: ImmichAccount) -> SyncReport:
    dest = open_destination("immich", account.config())
    try:
        return SyncRun(
            lib.catalog, lib.root, {"immich": dest}, policy=FAST, concurrency={"immich": 2}
        ).run()
    finally:
        dest.close()


def replica_ids(lib: LibraryFixture) -> dict[str, str]:
    with lib.catalog.session() as db:
        rows = db.execute(select(Replica.sha256, Replica.remote_key)).all()
    return {str(sha): str(key) for sha, key in rows}


def test_edits_after_upload_reach_immich(
    sqlite_library: LibraryFixture, tmp_path: Path, immich_account: ImmichAccount
) -> None:
    lib = sqlite_library
    make_sample_set(tmp_path / "phone", count=3)
    lib.import_folder(tmp_path / "phone")
    first = sync(lib, immich_account)
    assert first.failed == 0
    assert first.edits_pushed == {}  # each upload carried its sidecar: nothing to send after
    with lib.catalog.session() as db:
        sent = db.scalars(select(SidecarReplica)).all()
        assert len(sent) == len(db.scalars(select(Asset)).all()) > 1  # recorded as sent
        asset = db.scalars(select(Asset).order_by(Asset.sha256)).first()
        assert asset is not None
    ids = replica_ids(lib)
    fake = immich_account.fake
    remote = ids[asset.sha256]

    sidecar = lib.root / sidecar_path(asset.library_path)
    edit_as_digikam(
        sidecar,
        "-XMP-xmp:Rating=4",
        "-XMP-dc:Subject=Family",
        "-XMP-dc:Subject=Trip",
        "-XMP-lr:HierarchicalSubject=Places|Paris",
        "-XMP-dc:Description=Grandma's birthday",
    )
    calls_before = immich_account.calls("updateAsset")
    second = sync(lib, immich_account)
    assert second.failed == 0, second.failures
    assert second.edits_pushed == {"immich": 1}  # only the edited one
    assert immich_account.calls("updateAsset") == calls_before + 1
    stored = fake.asset(remote)
    assert stored.rating == 4
    assert stored.description == "Grandma's birthday"
    assert {"Family", "Trip"} <= fake.asset_tags(remote)

    # Someone tags the photo in Immich itself; then the sidecar loses a keyword.
    dest = ImmichDestination(
        "immich", ImmichOptions(url=immich_account.url, api_key=immich_account.api_key)
    )
    try:
        dest.push_edits(remote, ImmichEdits("Grandma's birthday", 4, ("Kept",)), previous=[])
    finally:
        dest.close()
    edit_as_digikam(sidecar, "-XMP-dc:Subject-=Trip", "-XMP-xmp:Rating=-1")
    third = sync(lib, immich_account)
    assert third.edits_pushed == {"immich": 1}
    tags = fake.asset_tags(remote)
    assert "Trip" not in tags  # picpipe had put it there: taken off with the keyword
    assert {"Family", "Kept"} <= tags  # Immich's own tag stays
    assert fake.asset(remote).rating == -1  # rejected

    calls_before = immich_account.calls("updateAsset")
    quiet = sync(lib, immich_account)
    assert quiet.edits_pushed == {}
    assert immich_account.calls("updateAsset") == calls_before  # unchanged: one stat, no call


def test_an_edit_that_cannot_be_sent_is_one_failure(
    sqlite_library: LibraryFixture, tmp_path: Path, immich_account: ImmichAccount
) -> None:
    lib = sqlite_library
    make_sample_set(tmp_path / "phone", count=2)
    lib.import_folder(tmp_path / "phone")
    assert sync(lib, immich_account).failed == 0
    with lib.catalog.session() as db:
        assets = db.scalars(select(Asset).order_by(Asset.sha256)).all()
    for asset in assets:
        edit_as_digikam(lib.root / sidecar_path(asset.library_path), "-XMP-xmp:Rating=5")
    immich_account.fake.faults.fail_next(1, status=400, operation="updateAsset")
    report = sync(lib, immich_account)
    assert report.edits_pushed == {"immich": 1}
    assert len(report.failures) == 1
    assert report.failures[0][1].endswith("(edits)")
    again = sync(lib, immich_account)  # the failed one is sent next time
    assert again.edits_pushed == {"immich": 1}
    assert again.failures == []
