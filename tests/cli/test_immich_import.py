"""`picpipe import NAME` of a configured Immich source (the CLI in process, the fake on
loopback): one pass, its JSON report, a bad key as one line and exit code."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from picpipe.cli.app import app
from picpipe.errors import ExitCode
from tests.destinations.contract import photo
from tests.servers.immich import ImmichAccount

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exiftool_available: None) -> Cli:
    monkeypatch.setenv("PICPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PICPIPE_LIBRARY", str(tmp_path / "library"))
    monkeypatch.setenv("PICPIPE_IMPORT__FSYNC", "false")
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return invoke


def configure(tmp_path: Path, account: ImmichAccount) -> None:
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "home" / "config.yaml").write_text(
        f"sources:\n  phone: {{kind: immich, url: '{account.url}', api_key_env: IMMICH_API_KEY}}\n",
        encoding="utf-8",
    )


def test_import_of_a_configured_immich_source(
    cli: Cli, tmp_path: Path, immich_account: ImmichAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(2):
        immich_account.fake.put_asset(immich_account.user_id, f"IMG_{i}.JPG", photo(i, 9000))
    configure(tmp_path, immich_account)
    monkeypatch.setenv("IMMICH_API_KEY", immich_account.api_key)
    code, out, _ = cli("import", "phone", "--json")
    assert code == 0
    report = json.loads(out)
    assert (report["new"], report["failed"]) == (2, 0)
    code, out, _ = cli("import", "phone", "--json")
    assert (code, json.loads(out)["unchanged"]) == (0, 2)
    code, out, _ = cli("sources", "--json")
    (listed,) = json.loads(out)
    assert listed["name"] == "phone"
    assert immich_account.api_key not in out


def test_a_bad_key_is_one_line_and_the_source_exit_code(
    cli: Cli, tmp_path: Path, immich_account: ImmichAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(tmp_path, immich_account)
    monkeypatch.setenv("IMMICH_API_KEY", "not-the-key")
    code, out, err = cli("import", "phone")
    assert code == ExitCode.SOURCE
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: source phone: authentication failed (Immich refused the API key: "
        "Invalid API key); check its credentials"
    ]
    assert "not-the-key" not in out + err
    monkeypatch.delenv("IMMICH_API_KEY")
    code, _, err = cli("import", "phone")
    assert code == ExitCode.CONFIG
    assert "IMMICH_API_KEY is not set" in err
