"""The fake Immich itself: it refuses what the spec refuses and answers what the spec documents."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.immich import FakeImmich
from tests.fakes.openapi import parse_multipart
from tests.servers.immich import ImmichAccount

DATES = {"fileCreatedAt": "2024-05-17T14:03:09.000+02:00", "fileModifiedAt": "2024-05-17T12:03:09Z"}
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4


@pytest.fixture
def api(immich_account: ImmichAccount) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{immich_account.url}/api", headers={"x-api-key": immich_account.api_key}
    ) as client:
        yield client


def upload(
    api: httpx.Client, data: bytes = JPEG, name: str = "a.jpg", **fields: str | None
) -> httpx.Response:
    form = {**DATES, **fields}
    form = {k: v for k, v in form.items() if v is not None}
    return api.post("/assets", data=form, files={"assetData": (name, data, "image/jpeg")})


def problems(response: httpx.Response) -> list[tuple[str, str]]:
    """(dotted path, code) of each v3 validation error."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["message"] == "Validation failed"
    return [(".".join(map(str, e["path"])), e["code"]) for e in body["errors"]]


# -- uploads ---------------------------------------------------------------------------------


def test_a_valid_upload_is_created_then_a_duplicate(api: httpx.Client) -> None:
    first = upload(api)
    assert first.status_code == 201
    assert first.json()["status"] == "created"
    again = upload(api, name="other-name.jpg")
    assert again.status_code == 200
    assert again.json() == {"id": first.json()["id"], "status": "duplicate"}
    asset = api.get(f"/assets/{first.json()['id']}").json()
    assert asset["checksum"] == base64.b64encode(hashlib.sha1(JPEG).digest()).decode()
    assert asset["localDateTime"] == "2024-05-17T14:03:09.000Z"
    assert asset["fileCreatedAt"] == "2024-05-17T12:03:09.000Z"
    assert api.get(f"/assets/{asset['id']}/original").content == JPEG


def test_an_upload_without_file_created_at_is_refused(api: httpx.Client) -> None:
    assert problems(upload(api, fileCreatedAt=None)) == [("fileCreatedAt", "invalid_type")]


@pytest.mark.parametrize(
    "date", ["2024-05-17T14:03:09", "2024-05-17 14:03:09Z", "2024-02-30T00:00:00Z", "yesterday"]
)
def test_dates_without_an_offset_or_invalid_are_refused(api: httpx.Client, date: str) -> None:
    assert problems(upload(api, fileCreatedAt=date)) == [("fileCreatedAt", "invalid_format")]


def test_a_field_of_the_wrong_type_is_refused(api: httpx.Client) -> None:
    assert problems(upload(api, duration="1:02.5")) == [("duration", "invalid_type")]
    assert problems(upload(api, isFavorite="yes")) == [("isFavorite", "invalid_type")]
    assert problems(upload(api, visibility="public")) == [("visibility", "invalid_value")]


def test_an_unknown_field_is_refused(api: httpx.Client) -> None:
    """Stricter than Immich (which ignores it): a misspelt field must not pass silently."""
    assert problems(upload(api, deviceAssetId="x")) == [("", "unrecognized_keys")]


def test_the_file_must_be_a_file_part(api: httpx.Client) -> None:
    parts = [*DATES.items(), ("assetData", "not a file")]
    body = b"".join(
        f'--b\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in parts
    )
    response = api.post(
        "/assets",
        content=body + b"--b--\r\n",
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert problems(response) == [("assetData", "invalid_type")]


def test_empty_and_unsupported_files_are_refused(api: httpx.Client) -> None:
    assert upload(api, data=b"").status_code == 400
    response = upload(api, name="notes.txt")
    assert response.status_code == 400
    assert "Unsupported file type" in response.json()["message"]


def test_a_checksum_header_answers_before_the_body(
    api: httpx.Client, immich_account: ImmichAccount
) -> None:
    created = upload(api).json()["id"]
    sha1 = hashlib.sha1(JPEG).hexdigest()
    # The body is not even a valid form: the answer comes from the header alone.
    response = api.post(
        "/assets",
        content=b"garbage",
        headers={"x-immich-checksum": sha1, "content-type": "multipart/form-data; boundary=x"},
    )
    assert response.json() == {"id": created, "status": "duplicate"}
    assert api.post("/assets", headers={"x-immich-checksum": "abc"}).status_code == 400


# -- authentication, routing, parameters -----------------------------------------------------


def test_a_wrong_or_missing_key_is_401(immich_account: ImmichAccount) -> None:
    base = f"{immich_account.url}/api"
    wrong = httpx.get(f"{base}/api-keys/me", headers={"x-api-key": "wrong"})
    assert wrong.status_code == 401
    assert wrong.json()["message"] == "Invalid API key"
    assert httpx.get(f"{base}/api-keys/me").status_code == 401
    assert httpx.get(f"{base}/server/ping").json() == {"res": "pong"}  # public


def test_a_key_without_the_permission_is_403(immich_account: ImmichAccount) -> None:
    key = immich_account.fake.add_key(immich_account.user_id, ("asset.read",))
    response = httpx.post(
        f"{immich_account.url}/api/assets/bulk-upload-check",
        json={"assets": []},
        headers={"x-api-key": key},
    )
    assert response.status_code == 403
    assert "asset.upload" in response.json()["message"]


def test_unknown_paths_and_methods_are_404(api: httpx.Client) -> None:
    assert api.get("/no-such-thing").status_code == 404
    assert api.patch("/server/ping").status_code == 404
    assert api.get("/../server/ping").status_code == 404


def test_parameters_are_checked(api: httpx.Client) -> None:
    assert problems(api.get("/assets/not-a-uuid")) == [("id", "invalid_format")]
    assert problems(api.get("/albums", params={"nmae": "x"})) == [("nmae", "unrecognized_keys")]
    assert problems(api.get("/albums", params={"isOwned": "maybe"})) == [
        ("isOwned", "invalid_type")
    ]


def test_json_bodies_are_checked(api: httpx.Client) -> None:
    missing = api.post("/assets/bulk-upload-check", json={"assets": [{"id": "a"}]})
    assert problems(missing) == [("assets.0.checksum", "invalid_type")]
    assert problems(api.post("/search/metadata", json={"size": 5000})) == [("size", "too_big")]
    assert api.post("/search/metadata", content=b"{}").status_code == 400  # no content type


def test_a_missing_asset_is_400_not_404(api: httpx.Client) -> None:
    response = api.get("/assets/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 400
    assert response.json()["message"] == "Not found or no asset.read access"


def test_unimplemented_operations_say_so(api: httpx.Client) -> None:
    assert api.get("/assets/statistics").status_code == 501


# -- behaviour -------------------------------------------------------------------------------


def test_search_pages_by_visibility(api: httpx.Client, immich_account: ImmichAccount) -> None:
    ids = [upload(api, data=JPEG + bytes([i]), name=f"{i}.jpg").json()["id"] for i in range(3)]
    immich_account.fake.asset(ids[0]).visibility = "archive"
    first = api.post("/search/metadata", json={"size": 1, "withExif": True}).json()["assets"]
    assert first["nextPage"] == "2"
    assert first["items"][0]["exifInfo"]["fileSizeInByte"] == len(JPEG) + 1
    last = api.post("/search/metadata", json={"size": 1, "page": 2}).json()["assets"]
    assert last["nextPage"] is None  # the archived one is not on the timeline
    archived = api.post("/search/metadata", json={"visibility": "archive"}).json()["assets"]
    assert [a["id"] for a in archived["items"]] == [ids[0]]


def test_live_photo_links_need_a_video_of_the_same_owner(
    api: httpx.Client, immich_account: ImmichAccount
) -> None:
    still = upload(api).json()["id"]
    video = upload(api, data=b"\x00\x00\x00\x18ftypqt  ", name="v.mov").json()["id"]
    assert api.put(f"/assets/{still}", json={"livePhotoVideoId": still}).status_code == 400
    stranger = immich_account.fake.add_user()
    foreign = httpx.post(
        f"{immich_account.url}/api/assets",
        data=DATES,
        files={"assetData": ("w.mov", b"other video", "video/quicktime")},
        headers={"x-api-key": stranger.api_key},
    ).json()["id"]
    assert api.put(f"/assets/{still}", json={"livePhotoVideoId": foreign}).status_code == 400
    linked = api.put(f"/assets/{still}", json={"livePhotoVideoId": video})
    assert linked.json()["livePhotoVideoId"] == video
    assert api.get(f"/assets/{video}").json()["visibility"] == "hidden"


def test_albums_report_duplicates(api: httpx.Client) -> None:
    asset = upload(api).json()["id"]
    album = api.post("/albums", json={"albumName": "Trip"})
    assert album.status_code == 201
    added = api.put(f"/albums/{album.json()['id']}/assets", json={"ids": [asset, asset]}).json()
    assert [r.get("error") for r in added] == [None, "duplicate"]
    assert [a["albumName"] for a in api.get("/albums", params={"name": "Trip"}).json()] == ["Trip"]
    assert api.get("/albums", params={"name": "trip"}).json() == []


def test_faults_from_the_back_door(api: httpx.Client, immich_account: ImmichAccount) -> None:
    fake = immich_account.fake
    fake.faults.fail_next(2, status=503)
    assert [api.get("/server/ping").status_code for _ in range(3)] == [503, 503, 200]
    fake.faults.drop_next(1, operation="pingServer")
    with pytest.raises(httpx.TransportError):
        api.get("/server/ping")
    assert api.get("/server/ping").status_code == 200


# -- the fake stays on the spec --------------------------------------------------------------


def test_every_handler_is_a_spec_operation() -> None:
    fake = FakeImmich()
    operation_ids = {
        op["operationId"]
        for item in fake.spec.document["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    handlers = [n[4:] for n in dir(fake) if n.startswith("_op_")]
    assert handlers
    for name in handlers:
        camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)
        assert camel in operation_ids, name


def test_an_off_spec_answer_would_be_caught() -> None:
    spec = FakeImmich().spec
    op = spec.match("POST", "/assets")
    assert op is not None
    assert (
        spec.check_response(
            op, 201, {"id": "7c2c8e1e-9b0a-4d55-8a3e-0f6c1b2a3d4e", "status": "created"}
        )
        == []
    )
    wrong = spec.check_response(
        op, 201, {"id": "7c2c8e1e-9b0a-4d55-8a3e-0f6c1b2a3d4e", "status": "replaced"}
    )
    assert [p["code"] for p in wrong] == ["invalid_value"]
    assert spec.check_response(op, 204, {})  # undocumented status


def test_malformed_multipart_is_not_parsed() -> None:
    assert parse_multipart("multipart/form-data", b"") is None
    assert parse_multipart("multipart/form-data; boundary=b", b"--b\r\nno end") is None
    body = b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--b--\r\n'
    assert [f.name for f in parse_multipart("multipart/form-data; boundary=b", body) or []] == ["x"]
