"""picpipe never imports its own folders, and never replicates the library into itself."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from picpipe.samples import make_jpeg
from tests.conftest import run_cli


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    nas = tmp_path / "nas"
    nas.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(f"destinations:\n  nas:\n    kind: filesystem\n    path: {nas}\n")
    return {
        "PICPIPE_HOME": str(tmp_path / "home"),
        "PICPIPE_LIBRARY": str(tmp_path / "photos" / "library"),
        "PICPIPE_CONFIG": str(config),
        "PICPIPE_IMPORT__FSYNC": "false",
    }


def test_own_folders_are_refused_as_import_folders(
    env: dict[str, str], tmp_path: Path, exiftool_available: None
) -> None:
    make_jpeg(tmp_path / "phone" / "IMG_1.jpg", taken=datetime(2020, 1, 1))
    assert run_cli("import", str(tmp_path / "phone"), "--no-thumbs", env=env).returncode == 0
    (tmp_path / "home" / "cache").mkdir(exist_ok=True)
    library = tmp_path / "photos" / "library"
    cases = {
        tmp_path / "home": "is the picpipe home",
        library: "is the library",
        library / "originals": "lies inside the library",
        tmp_path / "photos": "contains the library",
        tmp_path / "home" / "cache": "is the full-resolution cache",
        tmp_path / "nas": "is destination nas",
    }
    for folder, says in cases.items():
        result = run_cli("import", str(folder), "--json", env=env)
        assert result.returncode == 4, (folder, result.stderr)
        assert says in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1, "one line"
    status = json.loads(run_cli("status", "--json", env=env).stdout)
    assert status["assets"] == 1, "nothing of picpipe's own was imported"


def test_a_configured_source_inside_the_library_is_refused(
    env: dict[str, str], tmp_path: Path, exiftool_available: None
) -> None:
    config = Path(env["PICPIPE_CONFIG"])
    inside = tmp_path / "photos" / "library" / "originals"
    inside.mkdir(parents=True)
    config.write_text(config.read_text() + f"sources:\n  oops:\n    path: {inside}\n")
    result = run_cli("import", "--json", env=env)
    assert result.returncode == 4
    assert "sources.oops:" in result.stderr
    assert "lies inside the library" in result.stderr


def test_a_destination_inside_the_library_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    config = Path(env["PICPIPE_CONFIG"])
    inside = tmp_path / "photos" / "library" / "backup"
    inside.mkdir(parents=True)
    config.write_text(f"destinations:\n  loop:\n    kind: filesystem\n    path: {inside}\n")
    result = run_cli("sync", "--json", env=env)
    assert result.returncode == 4, result.stderr
    assert "destinations.loop:" in result.stderr
    assert "overlaps the library" in result.stderr
