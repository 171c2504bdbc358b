"""The fake NAS answers as NOTES §13 says and refuses off-spec requests."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import httpx
import pytest

from tests.fakes.synology import FakeSynology, serve_in_thread


@pytest.fixture
def fake() -> FakeSynology:
    return FakeSynology()


def call(fake: FakeSynology, cgi: str = "entry.cgi", **params: Any) -> httpx.Response:
    with httpx.Client(transport=fake.transport(), base_url="http://nas:5000") as client:
        form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
        return client.post(f"/webapi/{cgi}", data=form)


def code(response: httpx.Response) -> int | None:
    body = response.json()
    return None if body["success"] else body["error"]["code"]


def login(fake: FakeSynology, **extra: Any) -> httpx.Response:
    params = {"api": "SYNO.API.Auth", "version": 7, "method": "login"}
    return call(fake, "auth.cgi", **params, account="frame", passwd="s3cret", **extra)


def sid(fake: FakeSynology) -> str:
    return str(login(fake, format="sid").json()["data"]["sid"])


def test_api_info_lists_photos_and_no_team_albums(fake: FakeSynology) -> None:
    answer = call(fake, "query.cgi", api="SYNO.API.Info", version=1, method="query", query="all")
    data = answer.json()["data"]
    assert data["SYNO.Foto.Browse.Item"]["requestFormat"] == "JSON"
    assert "SYNO.FotoTeam.Browse.Item" in data
    assert "SYNO.FotoTeam.Browse.Album" not in data
    fake.photos_installed = False
    answer = call(fake, "query.cgi", api="SYNO.API.Info", version=1, method="query", query="all")
    assert "SYNO.Foto.Browse.Item" not in answer.json()["data"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"api": "SYNO.Foto.Browse.Item", "method": "list"}, 101),
        ({"api": "SYNO.Foto.Nope", "method": "list", "version": 1}, 102),
        ({"api": "SYNO.Foto.Browse.Item", "method": "nope", "version": 1}, 103),
        ({"api": "SYNO.Foto.Browse.Item", "method": "list", "version": 99}, 104),
        ({"api": "SYNO.Foto.Browse.Item", "method": "list", "version": 1}, 114),
        (
            {
                "api": "SYNO.Foto.Browse.Item",
                "method": "list",
                "version": 1,
                "offset": 0,
                "limit": 5001,
            },
            120,
        ),
        (
            {
                "api": "SYNO.Foto.Browse.Item",
                "method": "list",
                "version": 1,
                "offset": 0,
                "limit": 0,
            },
            120,
        ),
    ],
)
def test_off_spec_requests_are_refused(
    fake: FakeSynology, params: dict[str, Any], expected: int
) -> None:
    assert code(call(fake, **params, _sid=sid(fake))) == expected


def test_without_a_session_every_photo_call_is_119(fake: FakeSynology) -> None:
    params = {"api": "SYNO.Foto.Browse.Album", "method": "list", "version": 4}
    assert code(call(fake, **params, offset=0, limit=10)) == 119
    assert code(call(fake, **params, offset=0, limit=10, _sid="made-up")) == 119


def test_login_codes_and_the_device_token(fake: FakeSynology) -> None:
    assert (
        code(
            call(
                fake,
                "auth.cgi",
                api="SYNO.API.Auth",
                version=7,
                method="login",
                account="frame",
                passwd="wrong",
            )
        )
        == 400
    )
    fake.otp = "123456"
    needed = login(fake)
    assert code(needed) == 403
    assert {t["type"] for t in needed.json()["error"]["errors"]["types"]} >= {"otp"}
    assert code(login(fake, otp_code="000000")) == 404
    good = login(fake, otp_code="123456", enable_device_token="yes", device_name="picpipe")
    device = good.json()["data"]["device_id"]
    assert good.cookies.get("id") == good.json()["data"]["sid"]
    assert code(login(fake, device_id=device, device_name="picpipe")) is None
    fake.disabled = True
    assert code(login(fake, device_id=device)) == 401


def test_idle_sessions_expire(fake: FakeSynology) -> None:
    session = sid(fake)
    fake.idle_seconds = 0.0
    params = {"api": "SYNO.Foto.Browse.Album", "method": "list", "version": 4}
    assert code(call(fake, **params, offset=0, limit=10, _sid=session)) == 106
    assert code(call(fake, **params, offset=0, limit=10, _sid=session)) == 119


def test_items_page_without_a_total_and_shared_albums_by_passphrase(fake: FakeSynology) -> None:
    album = fake.add_album("kitchen-dash")
    for n in range(7):
        fake.add_item(album, f"IMG_{n}.JPG", b"x" * n)
    shared = fake.add_album("from-anna", passphrase="12345")
    fake.add_item(shared, "anna.jpg", b"anna")
    session = sid(fake)
    base = {"api": "SYNO.Foto.Browse.Item", "method": "list", "version": 4, "_sid": session}
    page = call(fake, **base, album_id=album.id, offset=5, limit=5).json()["data"]
    assert set(page) == {"list"}
    assert len(page["list"]) == 2
    assert code(call(fake, **base, album_id=shared.id, offset=0, limit=5)) == 609
    by_pass = call(fake, **base, passphrase=json.dumps("12345"), offset=0, limit=5)
    assert [i["filename"] for i in by_pass.json()["data"]["list"]] == ["anna.jpg"]
    albums = {"api": "SYNO.Foto.Browse.Album", "method": "list", "version": 4, "_sid": session}
    own = call(fake, **albums, offset=0, limit=10).json()["data"]["list"]
    assert [a["name"] for a in own] == ["kitchen-dash"]
    both = call(fake, **albums, offset=0, limit=10, category="normal_share_with_me")
    assert len(both.json()["data"]["list"]) == 2


def test_shared_space_items_and_801_when_off(fake: FakeSynology) -> None:
    fake.add_item(None, "team.jpg", b"team", shared_space=True)
    session = sid(fake)
    base = {"api": "SYNO.FotoTeam.Browse.Item", "method": "list", "version": 4, "_sid": session}
    items = call(fake, **base, offset=0, limit=10).json()["data"]["list"]
    assert [i["owner_user_id"] for i in items] == [0]
    fake.shared_space = False
    assert code(call(fake, **base, offset=0, limit=10)) == 801


def test_downloads_single_many_and_live(fake: FakeSynology) -> None:
    album = fake.add_album("a")
    one = fake.add_item(album, "a.jpg", b"\xff\xd8one")
    two = fake.add_item(album, "b.heic", b"heic")
    live = fake.add_item(album, "IMG_1.HEIC", b"still", video=b"motion")
    base = {"api": "SYNO.Foto.Download", "method": "download", "version": 2, "_sid": sid(fake)}
    single = call(fake, **base, unit_id=[one.id])
    assert (single.content, single.headers["content-type"]) == (b"\xff\xd8one", "image/jpeg")
    assert (
        call(fake, **base, item_id=[two.id]).headers["content-type"] == "application/octet-stream"
    )
    many = call(fake, **base, unit_id=[one.id, two.id])
    assert zipfile.ZipFile(io.BytesIO(many.content)).namelist() == ["a.jpg", "b.heic"]
    zipped = call(fake, **base, unit_id=[live.id])
    assert zipped.content.startswith(b"PK\x03\x04")
    assert sorted(zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()) == [
        "IMG_1.HEIC",
        "IMG_1.MOV",
    ]
    assert code(call(fake, **base, unit_id=[99999])) == 620


def test_thumbnails_need_the_current_cache_key(fake: FakeSynology) -> None:
    item = fake.add_item(fake.add_album("a"), "a.jpg", b"one")
    base = {"api": "SYNO.Foto.Thumbnail", "method": "get", "version": 2, "_sid": sid(fake)}
    good = call(
        fake, **base, id=item.id, cache_key=json.dumps(item.cache_key), type="unit", size="sm"
    )
    assert good.headers["content-type"] == "image/jpeg"
    bad = call(fake, **base, id=item.id, cache_key="1_2", type="unit", size="sm")
    assert bad.status_code == 404
    assert code(bad) == 120


def test_fault_knobs(fake: FakeSynology) -> None:
    item = fake.add_item(fake.add_album("a"), "a.jpg", b"x" * 1000)
    session = sid(fake)
    base = {"api": "SYNO.Foto.Download", "method": "download", "version": 2, "_sid": session}
    fake.fail_next("http500", api="SYNO.Foto.Download")
    assert call(fake, **base, unit_id=[item.id]).status_code == 500
    fake.fail_next("json_error", code=117, api="SYNO.Foto.Download")
    answer = call(fake, **base, unit_id=[item.id])
    assert answer.status_code == 200
    assert code(answer) == 117
    fake.fail_next("code", code=109)
    assert code(call(fake, **base, unit_id=[item.id])) == 109
    fake.fail_next("truncate", api="SYNO.Foto.Download")
    cut = call(fake, **base, unit_id=[item.id])
    assert int(cut.headers["content-length"]) == 1000
    assert len(cut.content) == 500
    assert call(fake, **base, unit_id=[item.id]).content == b"x" * 1000


def test_slow_answers_and_the_loopback_server(fake: FakeSynology) -> None:
    fake.add_item(fake.add_album("a"), "a.jpg", b"x")
    with serve_in_thread(fake) as url:
        session = httpx.post(
            f"{url}/photo/webapi/entry.cgi/SYNO.API.Auth",
            data={
                "api": "SYNO.API.Auth",
                "version": "7",
                "method": "login",
                "account": "frame",
                "passwd": "s3cret",
            },
        ).json()["data"]["sid"]
        fake.fail_next("slow", seconds=1.0)
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(
                f"{url}/webapi/entry.cgi",
                params={
                    "api": "SYNO.Foto.Browse.Album",
                    "version": "4",
                    "method": "list",
                    "offset": "0",
                    "limit": "5",
                    "_sid": session,
                },
                timeout=0.2,
            )


def test_folders_by_parent_and_their_own_items(fake: FakeSynology) -> None:
    deep = fake.add_folder("a/b")
    fake.add_item(None, "deep.jpg", b"x", folder=deep)
    fake.add_item(None, "root.jpg", b"y")
    session = sid(fake)
    base = {"api": "SYNO.Foto.Browse.Folder", "version": 2, "_sid": session}
    root = call(fake, **base, method="get", id=0).json()["data"]["folder"]
    assert root["name"] == "/"
    level = call(fake, **base, method="list", id=root["id"], offset=0, limit=2000)
    (a,) = level.json()["data"]["list"]
    assert a["name"] == "/a"
    assert code(call(fake, **base, method="list", id=root["id"], offset=0, limit=2001)) == 120
    items = {"api": "SYNO.Foto.Browse.Item", "method": "list", "version": 4, "_sid": session}
    own = call(fake, **items, folder_id=deep.id, offset=0, limit=10).json()["data"]["list"]
    assert [i["filename"] for i in own] == ["deep.jpg"]
    at_root = call(fake, **items, folder_id=root["id"], offset=0, limit=10).json()["data"]["list"]
    assert [i["filename"] for i in at_root] == ["root.jpg"]
