"""The CLI through Typer's runner: exit codes and --json output of every reporting command."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from picpipe.cli.app import app
from picpipe.samples import make_jpeg, make_sample_set


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exiftool_available: None):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PICPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PICPIPE_LIBRARY", str(tmp_path / "library"))
    monkeypatch.setenv("PICPIPE_IMPORT__FSYNC", "false")
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return invoke


def test_init_creates_config_and_catalog(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = cli("init", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["config_created"] is True
    assert (tmp_path / "home" / "config.yaml").is_file()
    assert (tmp_path / "home" / "catalog.db").is_file()
    assert result["library"] == str(tmp_path / "library")
    code, out, _ = cli("init", "--json")
    assert json.loads(out)["config_created"] is False


def test_import_json_summary_then_reports(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    photos = make_sample_set(tmp_path / "dump", count=6)
    code, out, _ = cli("import", str(tmp_path / "dump"), "--json")
    summary = json.loads(out)
    assert code == 3, "the sample set holds one empty file"
    keys = ("seen", "new", "duplicate", "unchanged", "failed", "skipped")
    assert {k: summary[k] for k in keys} == {
        "seen": 10,
        "new": 6,
        "duplicate": 1,
        "unchanged": 0,
        "failed": 1,
        "skipped": 2,  # .DS_Store and a .part download, each with its reason
    }
    assert summary["bytes"] == sum(p.path.stat().st_size for p in photos)
    assert summary["failures"] == [
        {
            "path": f"{tmp_path / 'dump'}:empty.jpg",
            "reason": "file is empty (0 bytes); nothing to import",
        }
    ]
    assert isinstance(summary["session_id"], int)

    # The empty file is tried again and stays a failure (exit 3) until it imports.
    code, out, _ = cli("import", str(tmp_path / "dump"), "--json")
    again = json.loads(out)
    assert (code, again["unchanged"], again["failed"]) == (3, 7, 1)
    assert again["kind"] == "import"
    assert again["run_id"] == again["session_id"]
    assert again["counts"]["unchanged"] == 7

    code, out, _ = cli("status", "--json")
    status = json.loads(out)
    assert (code, status["assets"], status["by_kind"]["photo"]["count"]) == (0, 6, 6)
    assert status["last_session"]["status"] == "completed_with_failures"
    assert (status["runs"], status["import_running"]) == ([], False)

    code, out, _ = cli("sessions", "--json")
    sessions = json.loads(out)
    assert [s["status"] for s in sessions] == ["completed_with_failures"] * 2
    assert sessions[1]["failures"][0]["path"].endswith(":empty.jpg")

    code, out, _ = cli("sources", "--json")
    (source,) = json.loads(out)
    assert (
        source["files"],
        source["imported"],
        source["duplicate"],
        source["failed"],
        source["skipped"],
    ) == (10, 6, 1, 1, 2)

    code, out, _ = cli("stats", "--json")
    stats = json.loads(out)
    assert (stats["photos"], stats["videos"], stats["originals"]["count"]) == (6, 0, 6)
    thumbnails = stats["thumbnails"]  # the import made tiny, small and medium for each photo
    assert {size: n["count"] for size, n in thumbnails["by_size"].items()} == {
        "tiny": 6,
        "small": 6,
        "medium": 6,
    }
    assert thumbnails["count"] == 18
    assert thumbnails["bytes"] == sum(n["bytes"] for n in thumbnails["by_size"].values()) > 0
    assert stats["sources"][0]["files"] == 10  # the two skipped files are accounted for too

    code, out, _ = cli("verify", "--json")
    assert code == 0
    assert json.loads(out)["checked"] == 6


def test_human_output_names_failures(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_sample_set(tmp_path / "dump", count=2)
    code, out, err = cli("import", str(tmp_path / "dump"))
    assert code == 3
    assert "2 new" in out
    assert "empty.jpg  file is empty" in out  # the path, pasteable, then the reason
    assert "completed with 1 failed item(s)" in err


def test_configured_sources_are_imported_by_name(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_jpeg(tmp_path / "phone" / "a.jpg", taken=datetime(2020, 1, 1))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "config.yaml").write_text(
        f"sources:\n  phone: {{kind: folder, path: {tmp_path / 'phone'}}}\n", encoding="utf-8"
    )
    code, out, _ = cli("import", "--json")
    assert (code, json.loads(out)["new"]) == (0, 1)
    code, out, _ = cli("sources", "--json")
    assert json.loads(out)[0]["name"] == "phone"


def test_import_without_anything_to_import_is_a_config_error(cli) -> None:  # type: ignore[no-untyped-def]
    code, _, err = cli("import")
    assert code == 4
    assert "no folder given" in err


def test_config_shows_masked_values_and_template(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PICPIPE_DATABASE_URL", "postgresql+psycopg://u:topsecret@127.0.0.1:1/x")
    code, out, _ = cli("config", "--json")
    assert code == 0
    assert "topsecret" not in out
    assert json.loads(out)["database_url"] == "postgresql+psycopg://u:********@127.0.0.1:1/x"
    code, out, _ = cli("config", "--template")
    assert code == 0
    assert out.startswith("# picpipe configuration")
    code, out, _ = cli("config")
    assert "topsecret" not in out


def test_unreachable_catalog_does_not_leak_its_password(
    cli, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PICPIPE_DATABASE_URL", "postgresql+psycopg://u:topsecret@127.0.0.1:1/x")
    code, out, err = cli("status")
    assert code == 5
    assert "topsecret" not in out + err


def test_verify_reports_damage_with_its_exit_code(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_sample_set(tmp_path / "dump", count=3)
    cli("import", str(tmp_path / "dump"))
    originals = sorted((tmp_path / "library" / "originals").rglob("*.jpg"))
    originals[0].write_bytes(b"bit rot")
    originals[1].unlink()
    code, out, _ = cli("verify", "--json")
    report = json.loads(out)
    assert code == 9
    assert len(report["corrupt"]) == 1
    assert len(report["missing"]) == 1
    assert report["clean"] is False
    code, out, _ = cli("verify")
    assert code == 9
    # Named as people know the photos: their source path and a short hash.
    dump = str(tmp_path / "dump")
    lines = [line for line in out.splitlines() if line.lstrip().startswith(("missing", "corrupt"))]
    assert len(lines) == 2
    assert all(dump in line and "originals/" not in line for line in lines)
    assert "next: picpipe repair" in out
    code, out, _ = cli("verify", "--sample", "0", "--json")
    assert (code, json.loads(out)["checked"]) == (0, 0)


def test_version(cli) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = cli("--version")
    assert (code, out.strip()) == (0, "picpipe 0.1.0")


def test_sigterm_ends_the_session_as_interrupted(tmp_path: Path, exiftool_available: None) -> None:
    import os
    import signal
    import subprocess
    import time

    from tests.conftest import run_cli

    for i in range(40):
        make_jpeg(
            tmp_path / "many" / f"{i}.jpg", size=(1600, 1200), taken=datetime(2020, 1, 1), seed=i
        )
    exe = Path(os.sys.executable).with_name("picpipe")
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [str(exe), "--home", str(home), "import", str(tmp_path / "many"), "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list((home / "library").rglob("*.jpg")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    sessions = json.loads(run_cli("--home", str(home), "sessions", "--json").stdout)
    assert sessions[0]["status"] == "interrupted"
    again = json.loads(
        run_cli("--home", str(home), "import", str(tmp_path / "many"), "--json").stdout
    )
    assert again["new"] + again["unchanged"] == 40


def test_import_writes_sidecars_and_the_next_import_reads_edits_back(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    from sqlalchemy import create_engine, text

    make_jpeg(tmp_path / "dump" / "IMG_1.jpg", taken=datetime(2022, 5, 6, 7, 8, 9), offset="+02:00")
    code, out, _ = cli("import", str(tmp_path / "dump"), "--json")
    assert code == 0
    (original,) = [p for p in (tmp_path / "library" / "originals").rglob("*.jpg")]
    sidecar = original.with_suffix(".xmp")
    assert sidecar.is_file()
    read = subprocess.run(
        ["exiftool", "-s3", "-XMP-exif:DateTimeOriginal", str(sidecar)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert read.stdout.strip() == "2022:05:06 07:08:09+02:00"

    subprocess.run(
        [
            "exiftool",
            "-overwrite_original",
            "-XMP-dc:Subject+=Holiday",
            "-XMP-xmp:Rating=4",
            str(sidecar),
        ],
        capture_output=True,
        check=True,
    )
    code, out, _ = cli("import", str(tmp_path / "dump"), "--json")
    summary = json.loads(out)
    assert (code, summary["unchanged"]) == (0, 1)
    engine = create_engine(f"sqlite:///{tmp_path / 'home' / 'catalog.db'}")
    with engine.connect() as conn:
        keywords, rating = conn.execute(text("select keywords, rating from asset")).one()
    engine.dispose()
    assert (json.loads(keywords), rating) == (["Holiday"], 4)


def test_the_command_table_names_every_command_and_its_module() -> None:
    """`main` loads one command's module by the table: a command missing from it would load
    everything (slow), a wrong module would not find the command."""
    import importlib

    from picpipe.cli.app import COMMAND_MODULES

    found: dict[str, str] = {}
    for module in dict.fromkeys(COMMAND_MODULES.values()):
        probe = typer.Typer()
        importlib.import_module(f"picpipe.cli.{module}").register(probe)
        names = [c.name or "" for c in probe.registered_commands]
        names += [g.name or "" for g in probe.registered_groups]
        found |= dict.fromkeys(names, module)
    assert found == COMMAND_MODULES
    registered = [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups]
    assert sorted(registered) == sorted(COMMAND_MODULES)


def test_a_command_line_loads_only_its_command() -> None:
    """`picpipe --version` imports no command; `picpipe status` only the status module's."""
    script = (
        "import sys; from picpipe.cli import app as a; sys.argv = ['picpipe', *sys.argv[1:]]\n"
        "try:\n    a.main()\nexcept SystemExit:\n    pass\n"
        "print('LOADED', sorted(a._REGISTERED), 'sqlalchemy' in sys.modules, file=sys.stderr)"
    )
    import subprocess
    import sys

    def loaded(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", script, *args], capture_output=True, text=True, check=False
        )
        return next(line for line in done.stderr.splitlines() if line.startswith("LOADED"))

    assert loaded("--version") == "LOADED [] False"
    assert (
        loaded("--home", "/nonexistent-picpipe-home", "status", "--help") == "LOADED ['info'] True"
    )
    assert "'watch'" in loaded("--help")
