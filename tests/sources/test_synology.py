"""The Synology source in imports: logins, 2-step verification, sessions, faults, albums,
Live Photos; each against the fake NAS in process, into a real library."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from sqlalchemy import select

from picpipe.catalog import browse
from picpipe.catalog.models import Asset
from picpipe.errors import SourceAuthFailed, SourceMisconfigured, SourceOtpNeeded, SourceUnavailable
from picpipe.sources.base import SourceEntry, iter_entries
from picpipe.sources.synology import SynologyOptions, SynologySource
from tests.conftest import LibraryFixture
from tests.destinations.contract import photo
from tests.fakes.synology import FakeSynology
from tests.fakes.synology_world import FAST_RETRY, synology_source

ALBUM = "kitchen-dash"
LIVE = Path(__file__).resolve().parents[3] / "shared/testdata/media/iphone"  # a Live Photo


@pytest.fixture
def fake() -> FakeSynology:
    fake = FakeSynology()
    album = fake.add_album(ALBUM)
    for n in range(5):
        fake.add_item(album, f"IMG_{n:04}.JPG", photo(n, 20_000), 1_700_000_000 + n * 60)
    return fake


def originals(lib: LibraryFixture) -> list[Path]:
    files = (lib.root / "originals").rglob("*")
    return sorted(p for p in files if p.is_file() and p.suffix != ".xmp")


def test_an_album_imports_and_becomes_a_picpipe_album(
    fake: FakeSynology, library: LibraryFixture, tmp_path: Path
) -> None:
    source = synology_source(fake, tmp_path / "home", albums=[ALBUM])
    summary = library.run(source)
    assert (summary.seen, summary.new, summary.failed) == (5, 5, 0)
    again = library.run(source)
    assert (again.new, again.unchanged) == (0, 5)
    with library.catalog.session() as db:
        albums = browse.albums(db)
    assert [(a["name"], a["count"], a["source"]) for a in albums] == [(ALBUM, 5, "kitchen")]
    source.close()


def test_a_photo_removed_from_the_album_leaves_it_and_stays_in_the_library(
    fake: FakeSynology, sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    source = synology_source(fake, tmp_path / "home", albums=[ALBUM])
    sqlite_library.run(source)
    first = fake.items[fake.album(ALBUM).items[0]]
    fake.album(ALBUM).items.remove(first.id)
    sqlite_library.run(source)
    with sqlite_library.catalog.session() as db:
        assert browse.albums(db)[0]["count"] == 4
    assert len(originals(sqlite_library)) == 5
    source.close()


def test_wrong_password_is_one_clear_error_and_one_login(
    fake: FakeSynology, sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    source = synology_source(fake, tmp_path / "home", password="nope")
    with pytest.raises(SourceAuthFailed) as refused:
        sqlite_library.run(source)
    assert str(refused.value) == (
        "source kitchen: login refused: wrong account or password (code 400)"
    )
    assert "nope" not in str(refused.value)
    assert fake.logins == 1  # never retried: repeated bad logins get an address blocked
    source.close()


def test_otp_once_then_the_device_token_is_reused(
    fake: FakeSynology,
    sqlite_library: LibraryFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake.otp = "123456"
    home = tmp_path / "home"
    without = synology_source(fake, home, otp_env="SYNO_OTP")
    with pytest.raises(SourceOtpNeeded) as needed:
        sqlite_library.run(without)
    assert "otp_env" in str(needed.value)
    without.close()
    monkeypatch.setenv("SYNO_OTP", "000000")
    wrong = synology_source(fake, home, otp_env="SYNO_OTP")
    with pytest.raises(SourceOtpNeeded, match="wrong or expired"):
        sqlite_library.run(wrong)
    wrong.close()
    monkeypatch.setenv("SYNO_OTP", "123456")
    first = synology_source(fake, home, otp_env="SYNO_OTP")
    assert sqlite_library.run(first).new == 5
    first.close()
    token = home / "secrets" / "synology-kitchen.device"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    state = (home / "state" / "synology-kitchen.json").read_text()
    assert json.loads(state)["device_token_file"] == str(token)
    assert token.read_text() not in state  # the state names the file, never the secret
    monkeypatch.delenv("SYNO_OTP")
    fake.otp = "999999"  # a new code on the phone: the device token still skips it
    later = synology_source(fake, home, otp_env="SYNO_OTP")
    assert sqlite_library.run(later).unchanged == 5
    later.close()


def test_a_session_expiring_mid_listing_logs_in_again(
    fake: FakeSynology, sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    source = synology_source(fake, tmp_path / "home", albums=[ALBUM])
    source.client.page_limit = 2  # three pages
    fake.fail_next("code", code=119, api="SYNO.Foto.Browse.Item", after=1)
    summary = sqlite_library.run(source)
    assert (summary.new, summary.failed) == (5, 0)
    assert fake.logins == 2
    source.close()


def test_an_album_deleted_between_runs_is_a_clear_error_and_nothing_is_marked_gone(
    fake: FakeSynology, sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    source = synology_source(fake, tmp_path / "home", albums=[ALBUM])
    sqlite_library.run(source)
    fake.delete_album(fake.album(ALBUM))
    with pytest.raises(SourceMisconfigured, match="album 'kitchen-dash' not found"):
        sqlite_library.run(source)
    with sqlite_library.catalog.session() as db:
        assert browse.albums(db)[0]["count"] == 5
    again = fake.add_album(ALBUM)
    again.items.extend(sorted(fake.items))
    assert sqlite_library.run(source).unchanged == 5
    source.close()


def test_a_download_cut_off_is_retried_or_fails_alone_and_the_next_run_completes(
    fake: FakeSynology, sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    source = synology_source(fake, tmp_path / "home", albums=[ALBUM])
    fake.fail_next("truncate", count=2, api="SYNO.Foto.Download")
    assert sqlite_library.run(source).new == 5  # retried inside the download
    fake.add_item(fake.album(ALBUM), "IMG_9999.JPG", photo(99, 30_000))
    fake.fail_next("truncate", count=100, api="SYNO.Foto.Download")
    summary = sqlite_library.run(source)
    assert (summary.new, summary.failed) == (0, 1)
    assert "download interrupted" in summary.failures[0]["reason"]
    assert len(originals(sqlite_library)) == 5  # nothing partial in the library
    assert not [p for p in sqlite_library.root.rglob("*") if ".picpipe-tmp" in p.name]
    fake.clear_faults()
    assert sqlite_library.run(source).new == 1
    source.close()


@pytest.mark.slow
def test_a_server_error_storm_is_retried_then_reported_and_the_next_run_completes(
    fake: FakeSynology, sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    source = synology_source(fake, tmp_path / "home", albums=[ALBUM])
    fake.fail_next("http500", count=2)
    fake.fail_next("code", code=109, count=1)
    assert sqlite_library.run(source).new == 5
    fake.fail_next("http500", count=1000)
    extra = fake.add_item(fake.album(ALBUM), "IMG_9999.JPG", photo(99, 30_000))
    with pytest.raises(SourceUnavailable, match="HTTP 500"):
        sqlite_library.run(source)
    fake.clear_faults()
    fake.fail_next("http500", count=1000, api="SYNO.Foto.Download")
    storm = sqlite_library.run(source)
    assert (storm.new, storm.unchanged, storm.failed) == (0, 5, 1)
    assert storm.failures[0]["reason"] == (
        "download interrupted (HTTP 500); the next run fetches it again"
    )
    fake.clear_faults()
    summary = sqlite_library.run(source)
    assert (summary.new, summary.unchanged, summary.failed) == (1, 5, 0)
    assert extra.id in fake.items
    source.close()


@pytest.mark.slow
def test_live_photos_arrive_as_two_paired_halves(
    fake: FakeSynology, sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    if not (LIVE / "train.mov").exists():
        pytest.skip("the shared test media are missing")
    still, video = (LIVE / "train.jpg").read_bytes(), (LIVE / "train.mov").read_bytes()
    fake.add_item(fake.album(ALBUM), "IMG_5000.JPG", still, video=video)
    source = synology_source(fake, tmp_path / "home", albums=[ALBUM])
    summary = sqlite_library.run(source)
    assert (summary.new, summary.failed) == (7, 0)
    downloads = fake.calls["SYNO.Foto.Download.download"]
    assert downloads == 6  # the Live Photo's zip once, for both halves
    with sqlite_library.catalog.session() as db:
        rows = db.scalars(select(Asset).where(Asset.pair_kind == "live")).all()
    assert sorted(a.kind for a in rows) == ["photo", "video"]
    assert len({a.pair_id for a in rows}) == 1
    again = sqlite_library.run(source)
    assert again.unchanged == 7
    assert fake.calls["SYNO.Foto.Download.download"] == downloads
    source.close()


def test_the_shared_space_and_albums_shared_with_the_account(
    fake: FakeSynology, sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    fake.add_item(None, "team.jpg", photo(70, 10_000), shared_space=True)
    shared = fake.add_album("from-anna", passphrase="98765")
    fake.add_item(shared, "anna.jpg", photo(71, 10_000))
    team = synology_source(fake, tmp_path / "home", name="team", space="shared")
    assert sqlite_library.run(team).new == 1
    team.close()
    anna = synology_source(fake, tmp_path / "home", name="anna", albums=["from-anna"])
    assert sqlite_library.run(anna).new == 1
    anna.close()
    fake.shared_space = False
    off = synology_source(fake, tmp_path / "home", name="team", space="shared")
    with pytest.raises(SourceMisconfigured, match="Shared Space is off"):
        sqlite_library.run(off)
    off.close()


def test_photos_not_installed_is_a_clear_error(
    fake: FakeSynology, sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    fake.photos_installed = False
    source = synology_source(fake, tmp_path / "home")
    with pytest.raises(SourceMisconfigured, match="Synology Photos is not installed"):
        sqlite_library.run(source)
    source.close()


def test_a_disabled_account_is_a_clear_error(
    fake: FakeSynology, sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    fake.disabled = True
    source = synology_source(fake, tmp_path / "home")
    with pytest.raises(SourceAuthFailed, match="disabled"):
        sqlite_library.run(source)
    source.close()


def test_an_unreachable_nas_is_retried_then_one_clear_error(tmp_path: Path) -> None:
    options = {"url": "http://127.0.0.1:9", "username": "frame", "password": "x"}
    source = SynologySource(
        "kitchen", SynologyOptions.model_validate(options), home=tmp_path, retry=FAST_RETRY
    )
    with pytest.raises(SourceUnavailable) as down:
        list(iter_entries(source))
    assert str(down.value) == (
        "source kitchen is not reachable (cannot connect to http://127.0.0.1:9; "
        "check `url` and that the NAS is on)"
    )
    assert source.client.requests == 1 + FAST_RETRY.retries
    source.close()


def test_a_fresh_source_opens_a_ref_it_has_not_listed(fake: FakeSynology, tmp_path: Path) -> None:
    first = synology_source(fake, tmp_path / "home", albums=[ALBUM])
    entry = next(e for e in iter_entries(first) if isinstance(e, SourceEntry))
    first.close()
    fresh = synology_source(fake, tmp_path / "home", albums=[ALBUM])
    with fresh.open(entry) as stream:  # as serving one photo on demand would
        assert stream.read() == fake.items[entry.extras["item_id"]].data
    fresh.close()


def test_an_older_photos_gets_the_versions_it_offers(
    fake: FakeSynology, sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    fake.max_versions = dict.fromkeys(fake.max_versions, 1)  # Photos 1.0 on DSM 7.0
    source = synology_source(fake, tmp_path / "home", albums=[ALBUM])
    assert sqlite_library.run(source).new == 5
    source.close()


def test_one_download_per_item_version_across_albums_and_runs(
    fake: FakeSynology, sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    other = fake.add_album("fridge")
    other.items.extend(fake.album(ALBUM).items)  # the same five photos in a second album
    source = synology_source(fake, tmp_path / "home")
    summary = sqlite_library.run(source)
    assert (summary.new, summary.duplicate) == (5, 5)
    assert fake.calls["SYNO.Foto.Download.download"] == 5
    changed = fake.items[other.items[0]]
    fake.replace(changed, photo(123, 21_000), changed.time + 60)  # re-indexed: a new cache key
    again = sqlite_library.run(source)  # the same source object, as a service's polls
    assert (again.new, again.failed) == (1, 0)
    assert fake.calls["SYNO.Foto.Download.download"] == 6
    with sqlite_library.catalog.session() as db:
        counts = {a["name"]: a["count"] for a in browse.albums(db)}
    assert counts == {ALBUM: 5, "fridge": 5}
    source.close()


def test_a_session_that_died_between_polls_is_opened_again(
    fake: FakeSynology, sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    source = synology_source(fake, tmp_path / "home", albums=[ALBUM])
    sqlite_library.run(source)
    fake.expire_sessions()  # a NAS reboot overnight
    fake.add_item(fake.album(ALBUM), "IMG_7777.JPG", photo(77, 20_000))
    summary = sqlite_library.run(source)  # the same source object, as the service keeps it
    assert (summary.new, summary.unchanged, summary.failed) == (1, 5, 0)
    assert fake.logins == 2
    source.close()


def test_whole_folders_with_their_subfolders(
    fake: FakeSynology, sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    kitchen = fake.add_folder("family/kitchen")
    fake.add_item(None, "top.jpg", photo(80, 10_000), folder=kitchen)
    fake.add_item(
        None, "deep.jpg", photo(81, 10_000), folder=fake.add_folder("family/kitchen/2024")
    )
    fake.add_item(None, "else.jpg", photo(82, 10_000), folder=fake.add_folder("family/garden"))
    team = fake.add_folder("projects", team=True)
    fake.add_item(None, "team.jpg", photo(83, 10_000), folder=team)
    source = synology_source(fake, tmp_path / "home", folders=["family/kitchen"])
    refs = sorted(e.ref for e in iter_entries(source) if isinstance(e, SourceEntry))
    assert refs == ["family/kitchen/2024/deep.jpg", "family/kitchen/top.jpg"]
    assert sqlite_library.run(source).new == 2
    assert source.album_members() == []  # folders are not albums
    source.close()
    shared = synology_source(
        fake, tmp_path / "home", name="team", space="shared", folders=["projects"]
    )
    refs = sorted(e.ref for e in iter_entries(shared) if isinstance(e, SourceEntry))
    assert refs == ["Shared Space/projects/team.jpg"]
    shared.close()
    missing = synology_source(fake, tmp_path / "home", name="x", folders=["family/attic"])
    with pytest.raises(SourceMisconfigured, match="folder 'family/attic' not found"):
        list(iter_entries(missing))
    missing.close()


def test_albums_and_folders_are_one_or_the_other() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not both"):
        SynologyOptions.model_validate(
            {
                "url": "http://nas:5000",
                "username": "u",
                "password": "p",
                "albums": ["a"],
                "folders": ["b"],
            }
        )
