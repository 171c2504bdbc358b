"""The Immich source against the spec-validated fake: one-line errors, cut-off downloads, 5xx
storms, the high-water mark, and the round trip picpipe → Immich → picpipe."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select, update

from picpipe.catalog.models import Album, AlbumAsset, Asset, Source, SourceFile
from picpipe.clients.immich_marker import upload_marker
from picpipe.destinations.base import Destination, open_destination
from picpipe.errors import (
    ConfigError,
    SourceAuthFailed,
    SourceMisconfigured,
    SourceUnavailable,
)
from picpipe.jobs.replicate import SyncRun
from picpipe.jobs.retry import RetryPolicy
from picpipe.jobs.sync_report import SyncReport
from picpipe.sources.base import source_options
from picpipe.sources.immich import ImmichSource, ImmichSourceOptions
from tests.conftest import LibraryFixture
from tests.destinations.contract import photo
from tests.servers.immich import ImmichAccount

LIBRARY_ID = "6f1c1d43-52a4-4a5e-9a36-0c2f3e6e4b11"  # an external library of picpipe's
FAST = RetryPolicy(retries=3, base=0.01, cap=0.05)


OPENED: list[ImmichSource] = []


@pytest.fixture(autouse=True)
def _close_sources() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()


def immich_source(account: ImmichAccount, **options: object) -> ImmichSource:
    parsed = ImmichSourceOptions(url=account.url, api_key=SecretStr(account.api_key), **options)
    return opened(ImmichSource("phone", parsed, retry=FAST))


def opened(source: ImmichSource) -> ImmichSource:
    OPENED.append(source)
    return source


def phone_photos(account: ImmichAccount, count: int, first: int = 1) -> list[bytes]:
    """Photos a phone app uploaded to Immich."""
    data = [photo(first + i, 20_000) for i in range(count)]
    for i, content in enumerate(data):
        account.fake.put_asset(account.user_id, f"IMG_{first + i:04}.JPG", content)
    return data


def downloads(account: ImmichAccount) -> int:
    return account.calls("downloadAsset")


def originals(lib: LibraryFixture) -> list[Path]:
    return [p for p in (lib.root / "originals").rglob("*") if p.is_file() and p.suffix != ".xmp"]


def count(lib: LibraryFixture, model: type[object]) -> int:
    with lib.catalog.session() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


def sync(lib: LibraryFixture, destination: Destination) -> SyncReport:
    targets = {"immich": destination}
    return SyncRun(lib.catalog, lib.root, targets, policy=FAST, concurrency={"immich": 2}).run()


def test_a_bad_api_key_is_one_clear_line(
    immich_account: ImmichAccount, sqlite_library: LibraryFixture
) -> None:
    source = opened(
        ImmichSource(
            "phone", ImmichSourceOptions(url=immich_account.url, api_key=SecretStr("wrong-key"))
        )
    )
    with pytest.raises(SourceAuthFailed) as caught:
        sqlite_library.run(source)
    message = caught.value.message
    assert "\n" not in message
    assert "wrong-key" not in message
    assert message.startswith("source phone: authentication failed")


def test_a_server_that_is_down_and_an_unknown_album(
    immich_account: ImmichAccount, sqlite_library: LibraryFixture
) -> None:
    down = opened(
        ImmichSource(
            "phone",
            ImmichSourceOptions(url="http://127.0.0.1:9", api_key=SecretStr("k")),
            retry=FAST,
        )
    )
    with pytest.raises(SourceUnavailable) as caught:
        sqlite_library.run(down)
    assert "\n" not in caught.value.message
    with pytest.raises(SourceMisconfigured, match="no album named 'holidays'"):
        sqlite_library.run(immich_source(immich_account, albums=["holidays"]))


def test_a_download_cut_off_halfway_leaves_nothing_and_the_next_run_completes(
    immich_account: ImmichAccount, sqlite_library: LibraryFixture
) -> None:
    phone_photos(immich_account, 3)
    immich_account.fake.truncate_downloads = 100  # every attempt of this run is cut off
    source = immich_source(immich_account)
    first = sqlite_library.run(source)
    assert (first.new, first.failed) == (0, 3)
    assert all("download failed" in f["reason"] for f in first.failures)
    assert originals(sqlite_library) == []
    leftovers = [
        name
        for _dir, _sub, names in os.walk(sqlite_library.root)
        for name in names
        if name != ".picpipe-library.json"  # the library's marker
    ]
    assert leftovers == []
    immich_account.fake.truncate_downloads = 0
    second = sqlite_library.run(source)
    assert (second.new, second.failed) == (3, 0)
    assert len(originals(sqlite_library)) == 3


def test_a_5xx_storm_is_retried_with_backoff(
    immich_account: ImmichAccount, sqlite_library: LibraryFixture
) -> None:
    phone_photos(immich_account, 2)
    faults = immich_account.fake.faults
    faults.fail_next(2, 503, operation="searchAssets")
    faults.fail_next(2, 502, operation="downloadAsset")
    summary = sqlite_library.run(immich_source(immich_account))
    assert (summary.new, summary.failed) == (2, 0)
    faults.fail_next(50, 500, operation="searchAssets")  # longer than the retries
    with pytest.raises(SourceUnavailable, match="HTTP 500"):
        sqlite_library.run(immich_source(immich_account))
    faults.clear()


def test_the_high_water_mark_never_passes_a_failed_asset(
    immich_account: ImmichAccount, sqlite_library: LibraryFixture
) -> None:
    phone_photos(immich_account, 2)
    source = immich_source(immich_account)
    sqlite_library.run(source)
    with sqlite_library.catalog.session() as db:
        state = db.scalar(select(Source.state).where(Source.name == "phone"))
    assert state is not None
    assert state["updated_after"]
    newest = max(a.updated for a in immich_account.fake.assets.values()
                 if a.owner_id == immich_account.user_id)  # fmt: skip
    assert state["updated_after"] == newest.isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )
    # The state after a run with a failure stops at that asset's updatedAt.
    source.resume(state)
    list(source.listing())
    failed = next(iter(source._updated))
    assert source.next_state({failed})["updated_after"] == source._updated[failed]
    assert source.next_state(set())["updated_after"] == state["updated_after"]


def test_external_library_assets_and_non_media_are_accounted_for_not_imported(
    immich_account: ImmichAccount, sqlite_library: LibraryFixture
) -> None:
    fake = immich_account.fake
    fake.put_asset(immich_account.user_id, "lib.jpg", photo(50), library_id=str(uuid.uuid4()))
    fake.put_asset(immich_account.user_id, "voice.m4a", b"audio", kind="AUDIO")
    summary = sqlite_library.run(immich_source(immich_account))
    assert (summary.seen, summary.new, summary.skipped) == (2, 0, 2)
    assert downloads(immich_account) == 0


def test_round_trip_picpipe_immich_picpipe_adds_nothing_and_downloads_once(
    immich_account: ImmichAccount, sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    folder = tmp_path / "camera"
    folder.mkdir()
    for i in range(3):
        (folder / f"DSC_{i:04}.JPG").write_bytes(photo(100 + i, 30_000))
    assert sqlite_library.import_folder(folder).new == 3
    # picpipe's own uploads to the same Immich account ...
    destination = open_destination("immich", immich_account.config())
    report = sync(sqlite_library, destination)
    assert report.destinations["immich"].uploaded == 3
    # ... an external library of picpipe's library (checksums of paths) ...
    for path in originals(sqlite_library):
        immich_account.fake.put_asset(
            immich_account.user_id, path.name, path.read_bytes(), library_id=LIBRARY_ID
        )
    # ... and one photo only the phone app sent.
    phone_photos(immich_account, 1, first=900)
    assets_before = count(sqlite_library, Asset)
    source = immich_source(immich_account)
    first = sqlite_library.run(source)
    assert (first.new, first.duplicate, first.skipped, first.failed) == (1, 3, 3, 0)
    assert count(sqlite_library, Asset) == assets_before + 1
    assert downloads(immich_account) == 1  # the phone's photo only: known bytes are not fetched
    again = sqlite_library.run(immich_source(immich_account))
    assert (again.new, again.duplicate, again.failed) == (0, 0, 0)
    assert downloads(immich_account) == 1
    # Syncing again sends the phone's photo back: Immich answers "duplicate", no new asset.
    created = immich_account.created
    sync(sqlite_library, destination)
    assert immich_account.created == created
    third = sqlite_library.run(immich_source(immich_account))
    assert (third.new, third.failed) == (0, 0)
    assert downloads(immich_account) == 1
    with sqlite_library.catalog.session() as db:
        refs = db.scalars(select(SourceFile.ref).where(SourceFile.state == "duplicate")).all()
    assert len(refs) == 3  # provenance: the Immich asset ids of picpipe's uploads
    destination.close()


def test_bytes_that_do_not_match_immichs_sha1_are_not_imported(
    immich_account: ImmichAccount, sqlite_library: LibraryFixture
) -> None:
    data = phone_photos(immich_account, 1)[0]
    (asset,) = [a for a in immich_account.fake.assets.values()
                if a.owner_id == immich_account.user_id]  # fmt: skip
    # A disk fault on Immich's side: same size, other bytes, the recorded checksum kept.
    immich_account.fake.corrupt(asset.id, photo(777, len(data)), keep_checksum=True)
    summary = sqlite_library.run(immich_source(immich_account))
    assert (summary.new, summary.failed) == (0, 1)
    assert "do not match the server's SHA-1 checksum" in summary.failures[0]["reason"]
    assert originals(sqlite_library) == []


def test_uploads_from_before_sha1s_were_recorded_are_known_by_their_id(
    immich_account: ImmichAccount, sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    folder = tmp_path / "camera"
    folder.mkdir()
    for i in range(2):
        (folder / f"DSC_{i:04}.JPG").write_bytes(photo(300 + i, 30_000))
    sqlite_library.import_folder(folder)
    destination = open_destination("immich", immich_account.config())
    sync(sqlite_library, destination)
    destination.close()
    with sqlite_library.catalog.write() as db:  # a catalog from before migration 0014
        db.execute(update(Asset).values(sha1=None))
    summary = sqlite_library.run(immich_source(immich_account))
    assert (summary.new, summary.duplicate, summary.failed) == (0, 2, 0)
    assert downloads(immich_account) == 0


def test_picpipes_uploads_carry_its_mark_in_immich(
    immich_account: ImmichAccount, sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    folder = tmp_path / "camera"
    folder.mkdir()
    (folder / "DSC_0001.JPG").write_bytes(photo(400, 30_000))
    sqlite_library.import_folder(folder)
    destination = open_destination("immich", immich_account.config())
    sync(sqlite_library, destination)
    destination.close()
    with sqlite_library.catalog.session() as db:
        sha256 = db.scalars(select(Asset.sha256)).one()
    (uploaded,) = [a for a in immich_account.fake.assets.values()
                   if a.owner_id == immich_account.user_id]  # fmt: skip
    client = immich_source(immich_account)._http()
    marker = upload_marker(client, uploaded.id)
    assert marker is not None
    assert marker["sha256"] == sha256
    phone = immich_account.fake.put_asset(immich_account.user_id, "IMG_1.JPG", photo(401))
    assert upload_marker(client, phone.id) is None


def album_members(lib: LibraryFixture) -> dict[str, set[str]]:
    with lib.catalog.session() as db:
        rows = db.execute(
            select(Album.name, AlbumAsset.sha256).join(
                AlbumAsset, AlbumAsset.album_id == Album.id, isouter=True
            )
        ).all()
    out: dict[str, set[str]] = {}
    for name, sha in rows:
        out.setdefault(name, set())
        if sha is not None:
            out[name].add(sha)
    return out


def imported_as(lib: LibraryFixture, ref: str) -> str:
    with lib.catalog.session() as db:
        sha = db.scalar(select(SourceFile.sha256).where(SourceFile.ref == ref))
    assert sha is not None
    return sha


def test_albums_are_recorded_and_follow_immich(
    immich_account: ImmichAccount, sqlite_library: LibraryFixture
) -> None:
    fake, user = immich_account.fake, immich_account.user_id
    phone_photos(immich_account, 3)
    ids = sorted((a.file_created_at, a.id) for a in fake.assets.values() if a.owner_id == user)
    first, second, _third = (i for _t, i in ids)
    album = fake.put_album(user, "Kids", [first, second])
    sqlite_library.run(immich_source(immich_account))
    kids = {imported_as(sqlite_library, first), imported_as(sqlite_library, second)}
    assert album_members(sqlite_library) == {"Kids": kids}
    fake.remove_from_album(album.id, second)  # the album changes, its assets do not
    again = sqlite_library.run(immich_source(immich_account))
    assert again.new == 0
    assert album_members(sqlite_library) == {"Kids": {imported_as(sqlite_library, first)}}


def test_an_album_source_imports_only_its_album(
    immich_account: ImmichAccount, sqlite_library: LibraryFixture
) -> None:
    fake, user = immich_account.fake, immich_account.user_id
    phone_photos(immich_account, 3)
    some = [a.id for a in fake.assets.values() if a.owner_id == user][:2]
    fake.put_album(user, "Kitchen", some)
    summary = sqlite_library.run(immich_source(immich_account, albums=["Kitchen"]))
    assert (summary.seen, summary.new) == (2, 2)
    assert len(album_members(sqlite_library)["Kitchen"]) == 2
    assert downloads(immich_account) == 2


def test_live_photo_halves_are_paired(
    immich_account: ImmichAccount, sqlite_library: LibraryFixture
) -> None:
    fake, user = immich_account.fake, immich_account.user_id
    video = fake.put_asset(
        user, "MOTION_7.MOV", b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00" + photo(70),
        visibility="hidden",
    )  # fmt: skip
    still = fake.put_asset(user, "IMG_0007.JPG", photo(71, 20_000))
    still.live_photo_video_id = video.id
    fake.put_album(user, "Live", [still.id])  # the album holds the still only
    summary = sqlite_library.run(immich_source(immich_account, albums=["Live"]))
    assert (summary.new, summary.failed) == (2, 0)
    halves = {imported_as(sqlite_library, still.id), imported_as(sqlite_library, video.id)}
    with sqlite_library.catalog.session() as db:
        pairs = db.execute(
            select(Asset.pair_id, Asset.pair_kind).where(Asset.sha256.in_(halves))
        ).all()
    assert len(pairs) == 2
    assert len({p for p, _k in pairs}) == 1
    assert {k for _p, k in pairs} == {"live"}
    assert pairs[0][0] is not None


def test_an_old_asset_that_failed_is_listed_again_after_newer_ones_imported(
    immich_account: ImmichAccount, sqlite_library: LibraryFixture
) -> None:
    fake, user = immich_account.fake, immich_account.user_id
    old = fake.put_asset(user, "OLD.JPG", photo(500, 20_000))
    old.updated -= timedelta(days=1)  # far behind the mark's overlap
    new = fake.put_asset(user, "NEW.JPG", photo(501, 20_000))
    fake.cut_off.add(old.id)
    source = immich_source(immich_account)
    first = sqlite_library.run(source)
    assert (first.new, first.failed) == (1, 1)
    fake.cut_off.clear()
    second = sqlite_library.run(immich_source(immich_account))
    assert (second.new, second.failed) == (1, 0)
    assert {imported_as(sqlite_library, old.id), imported_as(sqlite_library, new.id)}


def test_options_forbid_unknown_keys_and_accept_mode_and_polling() -> None:
    entry = {"kind": "immich", "url": "http://immich:2283", "api_key_env": "K"}
    parsed = source_options("phone", {**entry, "mode": "index", "poll_seconds": 30})
    assert (parsed.mode, parsed.poll_seconds, parsed.albums) == ("index", 30, [])
    with pytest.raises(ConfigError, match=r"sources\.phone\.albumz"):
        source_options("phone", {**entry, "albumz": ["x"]})
    with pytest.raises(ConfigError, match="api_key"):
        source_options("phone", {"kind": "immich", "url": "http://immich:2283"})
    with pytest.raises(ConfigError, match="url"):
        source_options("phone", {**entry, "url": "immich:2283"})
