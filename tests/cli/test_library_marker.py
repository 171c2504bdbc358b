"""The library knows itself: a marker in its root; a library that is not there (an unmounted
NAS: the folder gone, or an empty mount point) is one line and exit 6, never a fresh library."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from picpipe.library.marker import MARKER
from picpipe.samples import make_jpeg
from tests.conftest import run_cli


@pytest.fixture
def env(tmp_path: Path, catalog_url: str) -> dict[str, str]:
    nas = tmp_path / "backup"
    nas.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(f"destinations:\n  backup:\n    kind: filesystem\n    path: {nas}\n")
    return {
        "PICPIPE_HOME": str(tmp_path / "home"),
        "PICPIPE_LIBRARY": str(tmp_path / "nas" / "photos"),
        "PICPIPE_DATABASE_URL": catalog_url,
        "PICPIPE_CONFIG": str(config),
        "PICPIPE_IMPORT__FSYNC": "false",
    }


def refuses(env: dict[str, str], *args: str) -> str:
    result = run_cli(*args, env=env)
    assert result.returncode == 6, (args, result.returncode, result.stderr)
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def test_an_unmounted_library_is_refused_and_never_recreated(
    env: dict[str, str], tmp_path: Path, exiftool_available: None
) -> None:
    make_jpeg(tmp_path / "phone" / "IMG_1.jpg", taken=datetime(2020, 1, 1))
    init = run_cli("init", "--json", env=env)
    assert init.returncode == 0, init.stderr
    library = tmp_path / "nas" / "photos"
    marker = json.loads((library / MARKER).read_text())
    assert marker["library_id"] == json.loads(init.stdout)["library_id"]
    assert run_cli("import", str(tmp_path / "phone"), env=env).returncode == 0

    shutil.move(library, tmp_path / "elsewhere")  # the NAS is not mounted: no folder at all
    serve = ("serve", "--port", "1")  # refused before it binds: no port is needed
    every = (("import", str(tmp_path / "phone")), ("sync",), ("thumbs", "--all"), serve)
    every += (("repair",),)
    for args in (*every, ("repair", "--dry-run"), ("init",)):
        assert "library not found at" in refuses(env, *args)
        assert "is the NAS mounted?" in refuses(env, *args)
        assert not library.exists(), f"{args} created a library on the local disk"
    status = json.loads(run_cli("status", "--json", env=env).stdout)
    assert "is the NAS mounted?" in status["library_problem"]
    assert status["library_reachable"] is False

    library.mkdir(parents=True)  # an empty mount point
    for args in every:
        assert "library not found at" in refuses(env, *args)
    assert list(library.iterdir()) == [], "nothing written into the empty mount point"

    library.rmdir()
    shutil.move(tmp_path / "elsewhere", library)  # mounted again
    assert run_cli("import", str(tmp_path / "phone"), env=env).returncode == 0
    assert run_cli("sync", env=env).returncode == 0


def test_a_catalog_pointed_at_another_catalogs_library_is_refused(
    env: dict[str, str], tmp_path: Path, exiftool_available: None
) -> None:
    make_jpeg(tmp_path / "phone" / "IMG_1.jpg", taken=datetime(2020, 1, 1))
    assert run_cli("import", str(tmp_path / "phone"), env=env).returncode == 0
    other = {
        **env,
        "PICPIPE_HOME": str(tmp_path / "other-home"),
        "PICPIPE_DATABASE_URL": f"sqlite:///{tmp_path / 'other-home' / 'catalog.db'}",
    }
    make_jpeg(tmp_path / "card" / "IMG_2.jpg", taken=datetime(2021, 1, 1))
    assert run_cli("import", str(tmp_path / "card"), env=other).returncode == 0, (
        "a new catalog adopts an existing library (its marker)"
    )
    (tmp_path / "nas" / "photos" / MARKER).write_text(
        json.dumps({"library_id": "f" * 32, "catalog_id": "0" * 32, "created": "2020"})
    )
    said = refuses(env, "import", str(tmp_path / "phone"))
    assert "but this catalog keeps library" in said


def test_a_library_from_before_markers_is_adopted(
    env: dict[str, str], tmp_path: Path, exiftool_available: None
) -> None:
    make_jpeg(tmp_path / "phone" / "IMG_1.jpg", taken=datetime(2020, 1, 1))
    assert run_cli("import", str(tmp_path / "phone"), env=env).returncode == 0
    library = tmp_path / "nas" / "photos"
    (library / MARKER).unlink()  # as an older picpipe left it
    assert run_cli("import", str(tmp_path / "phone"), env=env).returncode == 0
    assert (library / MARKER).is_file()
