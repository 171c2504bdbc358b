"""`picpipe import kitchen` in a subprocess against the fake NAS on loopback: the JSON report
of a pass, and one line with exit code 8 for a refused login."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.destinations.contract import photo
from tests.fakes.synology import FakeSynology, serve_in_thread


def _config(tmp_path: Path, url: str) -> dict[str, str]:
    config = tmp_path / "config.yaml"
    config.write_text(
        "sources:\n"
        "  kitchen:\n"
        "    kind: synology\n"
        f"    url: {url}\n"
        "    username: frame\n"
        "    password_env: SYNO_PASSWORD\n"
        "    albums: [kitchen-dash]\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICPIPE_")}
    return env | {
        "PICPIPE_CONFIG": str(config),
        "PICPIPE_HOME": str(tmp_path / "home"),
        "PICPIPE_LIBRARY": str(tmp_path / "library"),
    }


@pytest.mark.slow
def test_import_kitchen_reports_json_and_a_refused_login_is_one_line(tmp_path: Path) -> None:
    fake = FakeSynology(password="right")
    album = fake.add_album("kitchen-dash")
    for n in range(3):
        fake.add_item(album, f"IMG_{n}.JPG", photo(n, 20_000), 1_700_000_000 + n)
    with serve_in_thread(fake) as url:
        env = _config(tmp_path, url)
        done = run_cli("import", "kitchen", "--json", env=env | {"SYNO_PASSWORD": "right"})
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert json.dumps(report).count('"new": 3') >= 1
        assert fake.calls["SYNO.API.Auth.logout"] == 1  # the session is not left open
        assert not list((tmp_path / "home" / "tmp").glob("synology-*"))  # downloads removed
        refused = run_cli("import", "kitchen", env=env | {"SYNO_PASSWORD": "hunter2-typo"})
    assert refused.returncode == 8
    # stderr: JSON log lines (not a terminal) and the one error line.
    lines = [line for line in refused.stderr.splitlines() if not line.startswith("{")]
    assert lines == [
        "error: source kitchen: login refused: wrong account or password (code 400)"
    ], refused.stderr
    assert "hunter2-typo" not in refused.stdout + refused.stderr
    assert fake.logins == 2  # one per run: a refused login is not retried
