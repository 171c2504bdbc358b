"""Immich's external library of picpipe's library, against the spec-built fake Immich.

The fake maps the import path (as Immich's container sees it) to the real library folder and
scans it as Immich does: every image or video file there, minus the exclusion patterns.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from picpipe.cli.app import app
from picpipe.config import load_settings
from picpipe.integrations.immich_library import ALWAYS_EXCLUDED, exclusion_patterns
from picpipe.samples import make_jpeg
from tests.servers.immich import ImmichServer

MOUNT = "/mnt/picpipe"
Cli = Callable[..., tuple[int, dict[str, object], str]]


@pytest.fixture
def admin(immich_server: ImmichServer) -> Iterator[tuple[str, str]]:
    """An admin's key on the fake (external libraries are admin-only); its libraries go after."""
    fake = immich_server.fake
    account = fake.add_user(admin=True)
    yield account.user_id, account.api_key
    with fake.lock:
        for lib_id in [k for k, v in fake.libraries.items() if v.owner_id == account.user_id]:
            del fake.libraries[lib_id]
    fake.mounts.pop(MOUNT, None)
    drift, fake.spec_errors[:] = list(fake.spec_errors), []
    assert not drift, f"the fake Immich answered off-spec: {drift}"


def make_cli(tmp_path: Path, immich_server: ImmichServer, api_key: str) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    config = {
        "import": {"fsync": False},
        "thumbs": {"on_import": False},
        "views": {"layouts": ["by-date"]},
        "consumers": {
            "immich": {"url": immich_server.url, "api_key": api_key, "import_path": MOUNT}
        },
    }
    (home / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {"PICPIPE_HOME": str(home), "PICPIPE_LIBRARY": str(tmp_path / "library")}

    def invoke(*args: str) -> tuple[int, dict[str, object], str]:
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        try:
            result = CliRunner().invoke(app, [*args, "--json"], env=env)
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
        out = json.loads(result.stdout) if result.stdout.strip() else {}
        return result.exit_code, out, result.stderr

    return invoke


def test_library_created_once_scanned_after_new_assets_only(
    tmp_path: Path, immich_server: ImmichServer, admin: tuple[str, str], exiftool_available: None
) -> None:
    fake = immich_server.fake
    user_id, key = admin
    cli = make_cli(tmp_path, immich_server, key)
    fake.mounts[MOUNT] = tmp_path / "library"
    dump = tmp_path / "dump"
    for i in range(2):
        make_jpeg(dump / f"IMG_{i}.JPG", taken=datetime(2023, 1, 2, 3, 4, i), seed=i)

    code, summary, _ = cli("import", str(dump))

    assert code == 0, summary
    assert summary["consumers"]["immich"]["scanned"] is True  # type: ignore[index]
    libraries = [lib for lib in fake.libraries.values() if lib.owner_id == user_id]
    assert len(libraries) == 1
    library = libraries[0]
    assert library.import_paths == [MOUNT]
    assert set(ALWAYS_EXCLUDED) <= set(library.exclusion_patterns)
    assert f"{MOUNT}/views/**" in library.exclusion_patterns, "the views are the same files again"
    assert fake.scans[library.id] == 1
    assert (library.photos, library.videos) == (2, 0), library.files
    assert all(path.startswith(f"{MOUNT}/originals/") for path in library.files)
    views = summary["consumers"]["views"]  # type: ignore[index]
    assert views["layouts"]["by-date"]["links"] == 2, "views follow every import"
    assert len(list((tmp_path / "library/views/by-date").rglob("*.JPG"))) == 2

    # Nothing new: no scan, and not a single library call.
    calls = fake.user_calls[user_id].copy()
    code, summary, _ = cli("import", str(dump))
    assert (code, summary["new"]) == (0, 0)
    assert summary["consumers"]["immich"] == {"scanned": False}  # type: ignore[index]
    assert fake.user_calls[user_id] == calls

    make_jpeg(dump / "IMG_9.JPG", taken=datetime(2023, 1, 3, 3, 4, 5), seed=9)
    assert cli("import", str(dump))[0] == 0
    assert [lib.id for lib in fake.libraries.values() if lib.owner_id == user_id] == [library.id]
    assert fake.scans[library.id] == 2

    code, built, _ = cli("views")
    assert (code, built["layouts"]["by-date"]["links"], built["full"]) == (0, 3, False)  # type: ignore[index]

    code, report, _ = cli("consumers", "check")
    assert code == 0
    immich = report["immich"]
    assert isinstance(immich, dict)
    assert (immich["immich"]["total"], immich["picpipe"], immich["in_step"]) == (3, 3, True)


def test_check_says_what_immich_does_not_see(
    tmp_path: Path, immich_server: ImmichServer, admin: tuple[str, str], exiftool_available: None
) -> None:
    """Not mounted where the import path says: Immich finds nothing, and the check says so."""
    cli = make_cli(tmp_path, immich_server, admin[1])
    make_jpeg(tmp_path / "dump" / "IMG_1.JPG", taken=datetime(2023, 1, 2, 3, 4, 5))
    assert cli("import", str(tmp_path / "dump"))[0] == 0

    code, report, _ = cli("consumers", "check")

    immich = report["immich"]
    assert isinstance(immich, dict)
    assert (code, immich["immich"]["total"], immich["picpipe"]) == (0, 0, 1)
    assert "1 fewer" in immich["note"]


def test_a_key_that_is_not_an_admins_is_refused_and_the_import_still_succeeds(
    tmp_path: Path, immich_server: ImmichServer, exiftool_available: None
) -> None:
    account = immich_server.fake.add_user()
    cli = make_cli(tmp_path, immich_server, account.api_key)
    make_jpeg(tmp_path / "dump" / "IMG_1.JPG", taken=datetime(2023, 1, 2, 3, 4, 5))

    code, summary, _ = cli("import", str(tmp_path / "dump"))
    assert (code, summary["new"]) == (0, 1), "a consumer never fails the import"
    assert "authentication failed" in summary["consumers"]["immich"]["error"]  # type: ignore[index]

    code, _report, err = cli("consumers", "check")
    assert code == 11
    assert "authentication failed" in err
    assert account.api_key not in err


def test_exclusions_cover_views_and_thumbnails_inside_the_library(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "lib" / ".picpipe", library=tmp_path / "lib")
    patterns = exclusion_patterns(settings, "/photos/")
    assert patterns[: len(ALWAYS_EXCLUDED)] == list(ALWAYS_EXCLUDED)
    assert patterns[len(ALWAYS_EXCLUDED) :] == ["/photos/views/**", "/photos/.picpipe/thumbs/**"]
    outside = load_settings(home=tmp_path / "home", library=tmp_path / "lib")
    assert exclusion_patterns(outside, "/photos")[len(ALWAYS_EXCLUDED) :] == ["/photos/views/**"]


def test_views_and_consumers_need_their_settings(tmp_path: Path) -> None:
    env = {"PICPIPE_HOME": str(tmp_path / "home"), "PICPIPE_LIBRARY": str(tmp_path / "lib")}
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        for args in (["views"], ["consumers", "check"]):
            result = CliRunner().invoke(app, args, env=env)
            assert result.exit_code == 4, result.output
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
