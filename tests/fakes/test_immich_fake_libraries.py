"""The fake Immich's external libraries: admin-only, spec-checked, scans that honour exclusions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.immich_libraries import glob_regex
from tests.fakes.test_immich_fake import problems
from tests.servers.immich import ImmichAccount, ImmichServer


@pytest.fixture
def admin_api(immich_server: ImmichServer) -> Iterator[tuple[httpx.Client, str]]:
    account = immich_server.fake.add_user(admin=True)
    headers = {"x-api-key": account.api_key}
    with httpx.Client(base_url=f"{immich_server.url}/api", headers=headers) as client:
        yield client, account.user_id
    assert not immich_server.fake.spec_errors


def test_only_an_admin_may_use_libraries(immich_account: ImmichAccount) -> None:
    headers = {"x-api-key": immich_account.api_key}
    with httpx.Client(base_url=f"{immich_account.url}/api", headers=headers) as client:
        assert client.get("/libraries").status_code == 403
        me = client.get("/users/me").json()
        assert (me["id"], me["isAdmin"]) == (immich_account.user_id, False)


def test_off_spec_library_requests_are_refused(admin_api: tuple[httpx.Client, str]) -> None:
    api, user_id = admin_api
    assert problems(api.post("/libraries", json={"name": "x"})) == [("ownerId", "invalid_type")]
    misspelt = api.post("/libraries", json={"ownerId": user_id, "importPath": "/x"})
    assert problems(misspelt) == [("", "unrecognized_keys")]
    assert problems(api.post("/libraries", json={"ownerId": "not-a-uuid"}))
    assert problems(api.put("/libraries/not-a-uuid", json={"importPaths": []}))
    assert api.get("/librarys").status_code == 404


def test_create_update_scan_and_statistics(
    admin_api: tuple[httpx.Client, str], immich_server: ImmichServer, tmp_path: Path
) -> None:
    api, user_id = admin_api
    for rel in ("originals/2024/01/02/a.jpg", "originals/2024/01/02/a.xmp", "originals/b.mov",
                "@eaDir/a.jpg/SYNOFILE_THUMB_M.jpg", "views/by-date/a.jpg"):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x" * 10)
    immich_server.fake.mounts["/mnt/lib"] = tmp_path
    created = api.post("/libraries", json={"ownerId": user_id, "name": "picpipe"})
    assert created.status_code == 201
    lib = created.json()
    assert (lib["importPaths"], lib["refreshedAt"]) == ([], None)

    body = {"importPaths": ["/mnt/lib"], "exclusionPatterns": ["**/\\@eaDir/**"]}
    assert api.put(f"/libraries/{lib['id']}", json=body).json()["importPaths"] == ["/mnt/lib"]
    assert api.post(f"/libraries/{lib['id']}/scan").status_code == 204
    stats = api.get(f"/libraries/{lib['id']}/statistics").json()
    assert (stats["photos"], stats["videos"], stats["total"]) == (2, 1, 3), "views not excluded"

    body["exclusionPatterns"].append("/mnt/lib/views/**")
    api.put(f"/libraries/{lib['id']}", json=body)
    api.post(f"/libraries/{lib['id']}/scan")
    assert api.get(f"/libraries/{lib['id']}/statistics").json()["total"] == 2
    assert [x["id"] for x in api.get("/libraries").json()] == [lib["id"]]
    assert api.delete(f"/libraries/{lib['id']}").status_code == 204
    assert api.get(f"/libraries/{lib['id']}").status_code == 400


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("**/\\@eaDir/**", "/mnt/lib/originals/@eaDir/x.jpg", True),
        ("**/\\@eaDir/**", "/mnt/lib/originals/eaDir/x.jpg", False),
        ("**/.thumbnails/**", "/mnt/lib/.thumbnails/normal/x.png", True),
        ("/mnt/lib/views/**", "/mnt/lib/views/by-date/2024/x.jpg", True),
        ("/mnt/lib/views/**", "/mnt/lib/originals/views/x.jpg", False),
        ("**/.picpipe-tmp-*", "/mnt/lib/originals/2024/.picpipe-tmp-ab.jpg", True),
    ],
)
def test_exclusion_globs(pattern: str, path: str, matches: bool) -> None:
    assert bool(glob_regex(pattern).match(path)) is matches
