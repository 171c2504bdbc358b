"""The fake Immich as an Immich source sees it: search since a mark, the trash, external
libraries, cut-off originals, asset metadata, album updatedAt; all answers spec-checked."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.servers.immich import ImmichAccount

PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8


@pytest.fixture
def api(immich_account: ImmichAccount) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{immich_account.url}/api", headers={"x-api-key": immich_account.api_key}
    ) as client:
        yield client


def search(api: httpx.Client, **body: Any) -> dict[str, Any]:
    answer = api.post("/search/metadata", json={"visibility": "timeline", **body})
    assert answer.status_code == 200, answer.text
    return answer.json()["assets"]  # type: ignore[no-any-return]


def ids(found: dict[str, Any]) -> list[str]:
    return [item["id"] for item in found["items"]]


def test_pages_ascending_with_next_page_strings(
    api: httpx.Client, immich_account: ImmichAccount
) -> None:
    stored = [
        immich_account.fake.put_asset(immich_account.user_id, f"IMG_{i}.JPG", PHOTO + bytes([i]))
        for i in range(5)
    ]
    first = search(api, page=1, size=2, order="asc")
    assert first["nextPage"] == "2"
    last = search(api, page=3, size=2, order="asc")
    assert last["nextPage"] is None
    listed = ids(first) + ids(search(api, page=2, size=2, order="asc")) + ids(last)
    assert listed == [a.id for a in sorted(stored, key=lambda a: (a.file_created_at, a.id))]


def test_updated_after_is_inclusive_and_trashed_after_needs_the_trash(
    api: httpx.Client, immich_account: ImmichAccount
) -> None:
    fake, user = immich_account.fake, immich_account.user_id
    old = fake.put_asset(user, "OLD.JPG", PHOTO + b"o")
    time.sleep(0.01)
    new = fake.put_asset(user, "NEW.JPG", PHOTO + b"n")
    stamp = new.updated.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert ids(search(api, updatedAfter=stamp)) == [new.id]
    fake.trash(old.id)
    assert ids(search(api, updatedAfter=stamp)) == [new.id]  # trash is left out ...
    trashed = search(api, withDeleted=True, trashedAfter=stamp)
    assert ids(trashed) == [old.id]  # ... unless asked for
    assert trashed["items"][0]["isTrashed"] is True


def test_external_library_assets_carry_library_id_and_a_path_checksum(
    api: httpx.Client, immich_account: ImmichAccount
) -> None:
    library = "6f1c1d43-52a4-4a5e-9a36-0c2f3e6e4b11"
    asset = immich_account.fake.put_asset(
        immich_account.user_id, "lib.jpg", PHOTO, library_id=library
    )
    (item,) = search(api, libraryId=library)["items"]
    assert item["libraryId"] == library
    plain = immich_account.fake.put_asset(immich_account.user_id, "own.jpg", PHOTO)
    assert item["checksum"] != api.get(f"/assets/{plain.id}").json()["checksum"]
    assert item["id"] == asset.id


def test_a_truncated_original_announces_the_full_length(
    api: httpx.Client, immich_account: ImmichAccount
) -> None:
    asset = immich_account.fake.put_asset(immich_account.user_id, "a.jpg", PHOTO)
    immich_account.fake.truncate_downloads = 1
    with pytest.raises(httpx.RemoteProtocolError):
        api.get(f"/assets/{asset.id}/original")
    assert immich_account.fake.downloads[asset.id] == 0
    assert api.get(f"/assets/{asset.id}/original").content == PHOTO
    assert immich_account.fake.downloads[asset.id] == 1


def test_asset_metadata_is_kept(api: httpx.Client, immich_account: ImmichAccount) -> None:
    asset = immich_account.fake.put_asset(immich_account.user_id, "a.jpg", PHOTO)
    body = {"items": [{"key": "picpipe", "value": {"sha256": "ab" * 32}}]}
    assert api.put(f"/assets/{asset.id}/metadata", json=body).status_code == 200
    (item,) = api.get(f"/assets/{asset.id}/metadata").json()
    assert (item["key"], item["value"]) == ("picpipe", {"sha256": "ab" * 32})
    bad = api.put(f"/assets/{asset.id}/metadata", json={"items": [{"key": "picpipe"}]})
    assert bad.status_code == 400


def test_an_albums_updated_at_moves_when_assets_are_added(
    api: httpx.Client, immich_account: ImmichAccount
) -> None:
    asset = immich_account.fake.put_asset(immich_account.user_id, "a.jpg", PHOTO)
    album = api.post("/albums", json={"albumName": "Kids"}).json()
    time.sleep(0.01)
    assert api.put(f"/albums/{album['id']}/assets", json={"ids": [asset.id]}).status_code == 200
    (listed,) = api.get("/albums").json()
    assert listed["updatedAt"] > album["updatedAt"]
    assert ids(search(api, albumIds=[album["id"]])) == [asset.id]
