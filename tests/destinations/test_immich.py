"""The immich kind against the spec-built fake Immich, plus what only Immich can get wrong."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from picpipe.clients.immich import ErrorMap, ImmichClient, api_base_url
from picpipe.clients.immich_models import rfc3339
from picpipe.destinations.base import Destination, Digests, RemoteObject, open_destination
from picpipe.destinations.immich_fields import capture_time, duration_ms, modified_time
from picpipe.errors import (
    ConfigError,
    DestinationAuthFailed,
    DestinationMisconfigured,
    DestinationRejected,
    DestinationUnavailable,
    IntegrityMismatch,
)
from tests.conftest import MEDIA, missing
from tests.destinations.contract import DestinationContract, asset_for, photo
from tests.servers.immich import ImmichAccount


@pytest.fixture
def destination(immich_account: ImmichAccount) -> Iterator[Destination]:
    dest = open_destination("immich", immich_account.config())
    yield dest
    dest.close()


@pytest.fixture
def tamper(immich_account: ImmichAccount):
    def replace_bytes(dest: Destination, key: str, data: bytes) -> None:
        # As if the file were swapped and Immich re-read it: the recorded checksum follows.
        immich_account.fake.corrupt(key, data)

    return replace_bytes


@pytest.fixture
def large_size() -> int:
    return 6 << 20


@pytest.fixture
def bad_credentials(immich_account: ImmichAccount) -> Iterator[Destination]:
    dest = open_destination("immich", immich_account.config(api_key="not-the-key"))
    yield dest
    dest.close()


class TestImmichContract(DestinationContract):
    pass


def put(dest: Destination, data: bytes, name: str = "IMG_0001.JPG", **changes: Any) -> RemoteObject:
    asset, digests = asset_for(data, name, **changes)
    return dest.put(dest.key_for(asset), io.BytesIO(data), digests=digests, asset=asset)


# -- uploads and duplicates ------------------------------------------------------------------


def test_a_duplicate_returns_the_same_id_and_counts_as_verified(
    destination: Destination, immich_account: ImmichAccount
) -> None:
    data = photo(60)
    first = put(destination, data, "DUP.JPG")
    second = put(destination, data, "DUP_COPY.JPG")
    assert first.extra["status"] == "created"
    assert second.extra["status"] == "duplicate"
    assert second.key == first.key
    assert destination.verify(second.key, Digests.of_bytes(data)).ok
    assert immich_account.calls("uploadAsset") == 2


def test_the_checksum_header_lets_immich_answer_before_the_body(
    destination: Destination, immich_account: ImmichAccount
) -> None:
    """Immich answers "duplicate" from the header and closes while we still send 6 MiB."""
    fake = immich_account.fake
    data = photo(61, 6 << 20)
    first = put(destination, data, "EARLY.JPG")
    fake.reset_on_early_duplicate = True
    second = put(destination, data, "EARLY.JPG")
    assert (second.key, second.extra["status"]) == (first.key, "duplicate")
    assert immich_account.created == 1


def test_an_answer_lost_after_storing_is_found_by_checksum(
    destination: Destination, immich_account: ImmichAccount
) -> None:
    fake = immich_account.fake
    data = photo(62)
    fake.faults.drop_next(1, operation="uploadAsset", after_body=True)
    stored = put(destination, data, "LOST_ANSWER.JPG")
    assert stored.extra["status"] == "duplicate"  # the bulk check found what the upload stored
    assert immich_account.calls("checkBulkUpload") == 1
    assert fake.asset(stored.key).data == data
    assert destination.verify(stored.key, Digests.of_bytes(data), deep=True).ok


def test_a_dropped_upload_that_stored_nothing_is_retryable(
    destination: Destination, immich_account: ImmichAccount
) -> None:
    immich_account.fake.faults.drop_next(1, operation="uploadAsset")
    with pytest.raises(DestinationUnavailable) as caught:
        put(destination, photo(63), "DROPPED.JPG")
    assert caught.value.retryable
    assert immich_account.api_key not in str(caught.value)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_are_retryable(
    destination: Destination, immich_account: ImmichAccount, status: int
) -> None:
    immich_account.fake.faults.fail_next(1, status=status, operation="uploadAsset")
    with pytest.raises(DestinationUnavailable):
        put(destination, photo(64), "FLAKY.JPG")
    assert put(destination, photo(64), "FLAKY.JPG").extra["status"] == "created"


def test_a_stalled_server_times_out(immich_account: ImmichAccount) -> None:
    client = ImmichClient(
        immich_account.url,
        SecretStr(immich_account.api_key),
        errors=ErrorMap.for_destination("immich"),
        timeout=httpx.Timeout(0.3, connect=1.0),
    )
    immich_account.fake.faults.stall_next(1, 1.0, operation="getAssetInfo")
    with pytest.raises(DestinationUnavailable, match="timed out"):
        client.get_asset("00000000-0000-4000-8000-000000000000")
    client.close()


def test_an_unsupported_file_type_is_rejected_with_immichs_words(destination: Destination) -> None:
    with pytest.raises(DestinationRejected, match="Unsupported file type"):
        put(destination, photo(65), "notes.txt")


def test_wrong_bytes_that_were_stored_fail_put(destination: Destination) -> None:
    """The stream did not hold the bytes the digests describe: put says so."""
    claimed, sent = photo(66), photo(67)
    asset, digests = asset_for(claimed, "CHANGED.JPG")
    with pytest.raises(IntegrityMismatch, match="changed while sent"):
        destination.put("CHANGED.JPG", io.BytesIO(sent), digests=digests, asset=asset)


# -- bulk check ------------------------------------------------------------------------------


def test_bulk_check_skips_what_immich_already_has(
    destination: Destination, immich_account: ImmichAccount
) -> None:
    held, new = photo(70), photo(71)
    stored = put(destination, held, "HELD.JPG")
    uploads = immich_account.calls("uploadAsset")
    items = [asset_for(held, "HELD.JPG"), asset_for(new, "NEW.JPG")]
    found = destination.find_existing(items)  # type: ignore[attr-defined]
    assert set(found) == {Digests.of_bytes(held).sha256}
    assert found[Digests.of_bytes(held).sha256].key == stored.key
    assert immich_account.calls("uploadAsset") == uploads  # nothing uploaded to find out
    assert destination.verify(stored.key, Digests.of_bytes(held)).ok


def test_bulk_check_asks_in_batches_of_a_thousand(
    destination: Destination, immich_account: ImmichAccount
) -> None:
    items = [asset_for(bytes([i % 256, i // 256]) * 10, f"X{i}.JPG") for i in range(1500)]
    assert destination.find_existing(items) == {}  # type: ignore[attr-defined]
    assert immich_account.calls("checkBulkUpload") == 2


def test_a_trashed_copy_is_not_a_replica(
    destination: Destination, immich_account: ImmichAccount
) -> None:
    data = photo(72)
    stored = put(destination, data, "TRASHED.JPG")
    immich_account.fake.trash(stored.key)
    digests = Digests.of_bytes(data)
    assert destination.find_existing([asset_for(data, "TRASHED.JPG")]) == {}  # type: ignore[attr-defined]
    outcome = destination.verify(stored.key, digests)
    assert not outcome.ok
    assert "trash" in outcome.detail
    with pytest.raises(DestinationRejected, match="restore it there"):
        put(destination, data, "TRASHED.JPG")
    assert stored.key not in {o.key for o in destination.list()}


# -- verification ----------------------------------------------------------------------------


def test_a_disk_fault_passes_the_cheap_check_but_not_the_deep_one(
    destination: Destination, immich_account: ImmichAccount
) -> None:
    data = photo(80)
    stored = put(destination, data, "ROT.JPG")
    broken = bytearray(data)
    broken[100] ^= 0x01
    immich_account.fake.corrupt(stored.key, bytes(broken), keep_checksum=True)
    digests = Digests.of_bytes(data)
    assert destination.verify(stored.key, digests).ok  # Immich's record still says all is well
    outcome = destination.verify(stored.key, digests, deep=True)
    assert not outcome.ok
    assert outcome.detail == "sha256 differs"
    # The limit: Immich matches the recorded checksum, so uploading again cannot repair it.
    assert put(destination, data, "ROT.JPG").key == stored.key


def test_keys_that_are_not_asset_ids_are_missing(destination: Destination) -> None:
    digests = Digests.of_bytes(b"x")
    assert destination.stat("IMG_0001.JPG") is None
    assert destination.verify("../etc/passwd", digests).detail == "missing"
    assert destination.verify("00000000-0000-4000-8000-000000000000", digests).detail == "missing"


def test_list_covers_archived_and_hidden_assets(
    destination: Destination, immich_account: ImmichAccount
) -> None:
    fake = immich_account.fake
    ids = [put(destination, photo(90 + i), f"VIS_{i}.JPG").key for i in range(3)]
    fake.asset(ids[1]).visibility = "archive"
    fake.asset(ids[2]).visibility = "hidden"
    listed = {o.key: o for o in destination.list()}
    assert set(listed) == set(ids)
    assert all(o.sha1 and o.size > 0 for o in listed.values())


def test_listing_pages_through_next_page(
    destination: Destination, immich_account: ImmichAccount
) -> None:
    ids = {put(destination, photo(100 + i), f"PAGE_{i}.JPG").key for i in range(5)}
    client = ImmichClient(
        immich_account.url, SecretStr(immich_account.api_key), errors=ErrorMap.for_destination("x")
    )
    before = immich_account.calls("searchAssets")
    assert {a.id for a in client.iter_assets("timeline", page_size=2)} == ids
    assert immich_account.calls("searchAssets") - before == 3
    client.close()


# -- Live Photos -----------------------------------------------------------------------------


def _manifest_media(relative: str) -> bytes:
    """A file of the shared media set, checked against its MANIFEST row."""
    manifest = MEDIA / "MANIFEST.csv"
    if not manifest.is_file():
        missing(f"shared media not found at {MEDIA}")
    with open(manifest, newline="", encoding="utf-8") as handle:
        row = next(r for r in csv.DictReader(handle) if r["path"] == relative)
    data = (MEDIA / relative).read_bytes()
    assert hashlib.sha256(data).hexdigest() == row["sha256"], relative
    return data


def test_a_live_photo_pair_is_linked(
    destination: Destination, immich_account: ImmichAccount
) -> None:
    still_bytes = _manifest_media("iphone/train.jpg")
    video_bytes = _manifest_media("iphone/train.mov")
    video = put(
        destination,
        video_bytes,
        "train.mov",
        kind="video",
        duration=1.5,
        mime_type="video/quicktime",
    )
    still = put(destination, still_bytes, "train.jpg")
    fake = immich_account.fake
    assert fake.asset(video.key).type == "VIDEO"
    assert fake.asset(video.key).duration_ms == 1500

    linked = destination.link_pairs([(still.key, video.key)])  # type: ignore[attr-defined]
    assert linked == [(still.key, video.key)]
    assert fake.asset(still.key).live_photo_video_id == video.key
    assert fake.asset(video.key).visibility == "hidden"  # Immich hides the motion part

    updates = immich_account.calls("updateAsset")
    assert destination.link_pairs([(still.key, video.key)]) == linked  # type: ignore[attr-defined]
    assert immich_account.calls("updateAsset") == updates  # already linked: no second PUT
    assert {o.key for o in destination.list()} >= {still.key, video.key}  # hidden is listed


def test_a_pair_immich_refuses_is_skipped_not_fatal(
    destination: Destination, immich_account: ImmichAccount, caplog: pytest.LogCaptureFixture
) -> None:
    one = put(destination, photo(110), "STILL_A.JPG").key
    other = put(destination, photo(111), "STILL_B.JPG").key
    with caplog.at_level(logging.WARNING):
        assert destination.link_pairs([(one, other)]) == []  # type: ignore[attr-defined]
    assert "must be a video" in caplog.text
    assert immich_account.fake.asset(one).live_photo_video_id is None


# -- albums ----------------------------------------------------------------------------------


def test_the_album_option_creates_the_album_once(immich_account: ImmichAccount) -> None:
    dest = open_destination("immich", immich_account.config(album="picpipe backup"))
    keys = [put(dest, photo(120 + i), f"ALB_{i}.JPG").key for i in range(3)]
    keys.append(put(dest, photo(120), "ALB_0_AGAIN.JPG").key)  # a duplicate joins it too
    dest.close()
    albums = [
        a for a in immich_account.fake.albums.values() if a.owner_id == immich_account.user_id
    ]
    assert [a.name for a in albums] == ["picpipe backup"]
    assert sorted(albums[0].asset_ids) == sorted(set(keys))
    assert immich_account.calls("createAlbum") == 1


def test_catalog_albums_are_mirrored_and_reused(immich_account: ImmichAccount) -> None:
    dest = open_destination("immich", immich_account.config(albums_from_catalog=True))
    a, b = (put(dest, photo(130 + i), f"CAT_{i}.JPG").key for i in range(2))
    dest.add_to_albums({"Trip": [a, b], "Home": [b]})  # type: ignore[attr-defined]
    dest.close()
    again = open_destination("immich", immich_account.config(albums_from_catalog=True))
    again.add_to_albums({"Trip": [a, b]})  # type: ignore[attr-defined]
    again.close()
    albums = {
        x.name: x.asset_ids
        for x in immich_account.fake.albums.values()
        if x.owner_id == immich_account.user_id
    }
    assert albums == {"Trip": [a, b], "Home": [b]}
    assert immich_account.calls("createAlbum") == 2


def test_catalog_albums_are_left_alone_unless_asked(
    destination: Destination, immich_account: ImmichAccount
) -> None:
    key = put(destination, photo(140), "NO_ALBUM.JPG").key
    destination.add_to_albums({"Trip": [key]})  # type: ignore[attr-defined]
    assert immich_account.calls("createAlbum") == 0


# -- dates -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (120, "2024-05-17T14:03:09.000+02:00"),
        (-330, "2024-05-17T14:03:09.000-05:30"),
        (0, "2024-05-17T14:03:09.000Z"),
        (None, "2024-05-17T14:03:09.000Z"),  # unknown offset: the wall time, as UTC
    ],
)
def test_capture_times_carry_an_offset(offset: int | None, expected: str) -> None:
    asset, _ = asset_for(b"x", taken_offset_min=offset)
    assert rfc3339(capture_time(asset)) == expected


def test_naive_dates_are_never_sent() -> None:
    with pytest.raises(ValueError, match="offset"):
        rfc3339(datetime(2024, 5, 17, 14, 3, 9))
    odd = datetime(2024, 1, 1, tzinfo=timezone(timedelta(seconds=30)))
    assert rfc3339(odd) == "2023-12-31T23:59:30.000Z"  # no seconds in offsets: sent as UTC


def test_modified_time_and_duration() -> None:
    asset, _ = asset_for(b"x", modified=datetime(2024, 6, 1, 8, 0, 0))
    assert rfc3339(modified_time(asset)) == "2024-06-01T08:00:00.000Z"
    assert modified_time(asset_for(b"x", modified=None)[0]) == capture_time(asset)
    assert duration_ms(asset_for(b"x", kind="video", duration=2.0004)[0]) == 2000
    assert duration_ms(asset_for(b"x", kind="photo", duration=2.0)[0]) is None


def test_immich_receives_the_offset(
    destination: Destination, immich_account: ImmichAccount
) -> None:
    stored = put(destination, photo(150), "WHEN.JPG", taken_offset_min=-240)
    recorded = immich_account.fake.asset(stored.key).file_created_at
    assert recorded == datetime(2024, 5, 17, 18, 3, 9, tzinfo=UTC)
    assert recorded.utcoffset() == timedelta(hours=-4)


# -- connection checks, configuration and secrets --------------------------------------------


def test_check_judges_writable_from_permissions(immich_account: ImmichAccount) -> None:
    fake = immich_account.fake
    read_only = fake.add_key(immich_account.user_id, ("asset.read", "asset.download"))
    dest = open_destination("immich", immich_account.config(api_key=read_only))
    report = dest.check()
    dest.close()
    assert report.reachable
    assert report.authenticated
    assert not report.writable
    assert "asset.upload" in report.detail
    assert immich_account.calls("uploadAsset") == 0  # no probe asset in anyone's timeline

    scoped = fake.add_key(immich_account.user_id, ("asset.upload", "asset.read"))
    dest = open_destination("immich", immich_account.config(api_key=scoped))
    report = dest.check()
    key = put(dest, photo(160), "SCOPED.JPG").key
    with pytest.raises(DestinationAuthFailed, match=r"asset\.download"):
        list(dest.read(key))
    dest.close()
    assert report.ok
    assert "asset.download" in report.detail
    assert "albumAsset.create" not in report.detail  # albums are not configured

    albums = open_destination("immich", immich_account.config(api_key=scoped, album="x"))
    assert "albumAsset.create" in albums.check().detail
    albums.close()


def test_a_key_without_upload_permission_fails_put(immich_account: ImmichAccount) -> None:
    key = immich_account.fake.add_key(immich_account.user_id, ("asset.read",))
    dest = open_destination("immich", immich_account.config(api_key=key))
    with pytest.raises(DestinationAuthFailed, match=r"asset\.upload") as caught:
        put(dest, photo(161), "DENIED.JPG")
    dest.close()
    assert not caught.value.retryable


def test_the_api_key_never_shows(
    immich_account: ImmichAccount, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-" + "9" * 40
    dest = open_destination("immich", immich_account.config(api_key=secret))
    with caplog.at_level(logging.DEBUG):
        report = dest.check()
        with pytest.raises(DestinationAuthFailed) as caught:
            put(dest, photo(162), "NOPE.JPG")
    dest.close()
    assert not report.authenticated
    options = repr(dest.options)  # type: ignore[attr-defined]
    for text in (report.detail, str(caught.value), caplog.text, options):
        assert secret not in text


def test_an_old_immich_is_refused(destination: Destination, immich_account: ImmichAccount) -> None:
    immich_account.fake.version = {"major": 2, "minor": 5, "patch": 0, "prerelease": None}
    assert "older than 3.0" in destination.check().detail
    with pytest.raises(DestinationMisconfigured, match=r"older than 3\.0"):
        put(destination, photo(163), "OLD.JPG")
    assert immich_account.calls("uploadAsset") == 0


def test_unreachable_and_wrong_urls_are_reported(immich_account: ImmichAccount) -> None:
    closed = open_destination(
        "immich", {"kind": "immich", "url": "http://127.0.0.1:9", "api_key": "k"}
    )
    report = closed.check()
    closed.close()
    assert not report.reachable
    wrong = open_destination("immich", immich_account.config(url=immich_account.url + "/photos"))
    report = wrong.check()
    wrong.close()
    assert not report.reachable
    assert "no Immich API at" in report.detail


def test_the_api_suffix_is_added_once() -> None:
    assert api_base_url("https://photos.example.org") == "https://photos.example.org/api"
    assert api_base_url("https://photos.example.org/api/") == "https://photos.example.org/api"
    assert api_base_url(" http://nas:2283/ ") == "http://nas:2283/api"


def test_the_key_comes_from_env_or_file(
    immich_account: ImmichAccount, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IMMICH_TEST_KEY", immich_account.api_key)
    from_env = {"kind": "immich", "url": immich_account.url, "api_key_env": "IMMICH_TEST_KEY"}
    key_file = tmp_path / "immich.key"
    key_file.write_text(immich_account.api_key + "\n", encoding="utf-8")
    from_file = {"kind": "immich", "url": immich_account.url, "api_key_file": str(key_file)}
    for config in (from_env, from_file):
        dest = open_destination("immich", config)
        assert dest.check().ok
        dest.close()
    unset = open_destination("immich", {**from_env, "api_key_env": "IMMICH_UNSET_KEY"})
    report = unset.check()
    unset.close()
    assert not report.ok
    assert "IMMICH_UNSET_KEY is not set" in report.detail


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"api_key": None}, "api_key"),
        ({"layout": "{name}"}, "layout does not apply"),
        ({"url": "photos.example.org"}, "http"),
        ({"albumz": "x"}, "albumz"),
    ],
)
def test_bad_configurations_are_refused(changes: dict[str, Any], message: str) -> None:
    config = {"kind": "immich", "url": "https://photos.example.org", "api_key": "k", **changes}
    config = {k: v for k, v in config.items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        open_destination("immich", config)


# -- every failure maps to a picpipe error ---------------------------------------------------

ASSET_ID = "7c2c8e1e-9b0a-4d55-8a3e-0f6c1b2a3d4e"


def _client(answer) -> ImmichClient:
    return ImmichClient(
        "http://immich.invalid",
        SecretStr("sk-secret"),
        errors=ErrorMap.for_destination("immich"),
        transport=httpx.MockTransport(answer),
    )


@pytest.mark.parametrize(
    ("status", "body", "error", "words"),
    [
        (401, {"message": "Invalid API key"}, DestinationAuthFailed, "Invalid API key"),
        (
            403,
            {"message": "Missing required permission: asset.read"},
            DestinationAuthFailed,
            "asset.read",
        ),
        (408, {}, DestinationUnavailable, "HTTP 408"),
        (429, {}, DestinationUnavailable, "HTTP 429"),
        (502, "<html>bad gateway</html>", DestinationUnavailable, "bad gateway"),
        (404, {"message": "Cannot GET /api/assets"}, DestinationMisconfigured, "check the url"),
        (413, "Request Entity Too Large", DestinationRejected, "proxy"),
        (
            400,
            {
                "statusCode": 400,
                "message": "Validation failed",
                "errors": [{"path": ["id"], "message": "Invalid UUID"}],
            },
            DestinationRejected,
            "id: Invalid UUID",
        ),
        (400, {"message": "echo sk-secret"}, DestinationRejected, "echo ********"),
    ],
)
def test_http_failures_map_to_picpipe_errors(status, body, error, words) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    client = _client(answer)
    with pytest.raises(error) as caught:
        client.get_asset(ASSET_ID)
    client.close()
    assert words in str(caught.value)
    assert "sk-secret" not in str(caught.value)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.ReadTimeout,
        httpx.WriteError,
        httpx.RemoteProtocolError,
    ],
)
def test_transport_failures_are_retryable(failure: type[httpx.TransportError]) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise failure("boom", request=request)

    client = _client(answer)
    with pytest.raises(DestinationUnavailable) as caught:
        client.get_asset(ASSET_ID)
    with pytest.raises(DestinationUnavailable):
        client.upload_asset(
            io.BytesIO(b"x"),
            filename="a.jpg",
            file_created_at=datetime(2024, 1, 1, tzinfo=UTC),
            file_modified_at=datetime(2024, 1, 1, tzinfo=UTC),
        )
    client.close()
    assert caught.value.retryable


def test_answers_that_are_not_immich_are_refused_cleanly() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/ping"):
            return httpx.Response(200, json={"hello": "world"})
        if request.url.path.endswith("/version"):
            return httpx.Response(200, text="<html>")
        return httpx.Response(200, json={"id": ASSET_ID})  # an asset without its fields

    client = _client(answer)
    with pytest.raises(DestinationMisconfigured, match="does not answer like Immich"):
        client.ping()
    with pytest.raises(DestinationRejected, match="not JSON"):
        client.version()
    with pytest.raises(DestinationRejected, match="unexpected answer"):
        client.get_asset(ASSET_ID)
    client.close()
