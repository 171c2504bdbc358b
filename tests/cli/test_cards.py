"""`picpipe cards [--json]`: what each card session says about "safe to format"."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from picpipe.cli.app import app
from picpipe.config import load_settings
from picpipe.jobs.cards import CardService
from picpipe.sources.removable import RemovableOptions
from tests.destinations.contract import photo


def test_cards_lists_sessions_with_what_blocks_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exiftool_available: None
) -> None:
    home, library = tmp_path / "home", tmp_path / "library"
    monkeypatch.setenv("PICPIPE_HOME", str(home))
    monkeypatch.setenv("PICPIPE_LIBRARY", str(library))
    runner = CliRunner()
    empty = runner.invoke(app, ["cards", "--json"], catch_exceptions=False)
    assert (empty.exit_code, json.loads(empty.stdout)) == (0, [])
    root = tmp_path / "media"
    staging = tmp_path / "staging" / "EOS_DIGITAL"
    (staging / "DCIM" / "100CANON").mkdir(parents=True)
    (staging / "DCIM" / "100CANON" / "IMG_0001.JPG").write_bytes(photo(3, 10_000))
    root.mkdir()
    os.rename(staging, root / "EOS_DIGITAL")
    settings = load_settings(home=home, library=library, **{"import": {"fsync": False}})
    options = RemovableOptions(mount_roots=[root], udev=False, safe_replicas=2)
    service = CardService(settings, "cards", options)
    try:
        for _ in range(2):
            service.tick(threading.Event())
    finally:
        service.close()
    result = runner.invoke(app, ["cards", "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    [card] = json.loads(result.stdout)
    assert {k: card[k] for k in ("label", "state", "files", "safe_to_format")} == {
        "label": "EOS_DIGITAL",
        "state": "not_safe",
        "files": 1,
        "safe_to_format": False,
    }
    assert card["uuid"].startswith("folder-")
    assert card["blocking"] == [
        {
            "path": "DCIM/100CANON/IMG_0001.JPG",
            "reason": "1 verified copies of 2 needed (library counted)",
        }
    ]
    text = runner.invoke(app, ["cards"], catch_exceptions=False)
    assert text.exit_code == 0
    assert "EOS_DIGITAL" in text.stdout
    assert "1 verified copies of 2 needed" in text.stdout


def test_test_connection_checks_a_removable_sources_mount_roots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "media").mkdir()
    (tmp_path / "nas").mkdir()
    (home / "config.yaml").write_text(
        "sources:\n"
        f"  cards: {{kind: removable, mount_roots: [{tmp_path / 'media'}]}}\n"
        f"  gone: {{kind: removable, mount_roots: [{tmp_path / 'nope'}]}}\n"
        "destinations:\n"
        f"  nas: {{kind: filesystem, path: {tmp_path / 'nas'}}}\n"
    )
    monkeypatch.setenv("PICPIPE_HOME", str(home))
    monkeypatch.setenv("PICPIPE_LIBRARY", str(tmp_path / "library"))
    runner = CliRunner()
    result = runner.invoke(app, ["test-connection", "--json"], catch_exceptions=False)
    assert result.exit_code == 11  # one source cannot see its cards
    by_name = {r["name"]: r for r in json.loads(result.stdout)["results"]}
    assert by_name["cards"]["ok"]
    assert not by_name["gone"]["ok"]
    assert by_name["gone"]["detail"] == f"no mount root can be read ({tmp_path / 'nope'})"
    # a plain import leaves cards to `picpipe watch`; naming one says so
    named = runner.invoke(app, ["import", "cards"], catch_exceptions=False)
    assert named.exit_code == 4
    assert "picpipe watch" in named.stderr
