"""The small guard rails of the CLI: ports in use, looking without creating, names listed."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from picpipe.cli.app import app


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PICPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PICPIPE_LIBRARY", str(tmp_path / "library"))
    monkeypatch.delenv("PICPIPE_CONFIG", raising=False)
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return invoke


def _config(tmp_path: Path, data: dict[str, object]) -> None:
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")


def test_serve_on_a_port_in_use_is_one_line_and_exit_4(cli) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, out, err = cli("serve", "--port", str(port))
    assert code == 4
    assert "serving" not in out
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "choose --port" in err
    assert len(err.strip().splitlines()) == 1


def test_status_on_a_missing_home_creates_nothing(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = cli("status", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["initialised"] is False
    assert "picpipe init" in result["library_problem"]
    assert not (tmp_path / "home").exists()
    assert not (tmp_path / "library").exists()
    code, out, _ = cli("status")
    assert code == 0
    assert "not initialised" in out
    assert not (tmp_path / "home").exists()


def test_a_missing_config_file_named_by_flag_is_an_error(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = cli("--config", str(tmp_path / "typo.yaml"), "status")
    assert code == 4
    assert "typo.yaml does not exist" in err


def test_config_typos_are_reported_by_picpipe_config(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _config(tmp_path, {"serve": {"tokn": "x" * 20}})
    code, out, err = cli("config")
    assert code == 4
    assert "serve.tokn: unknown key (did you mean token?)" in err
    assert out == ""


def test_sync_with_an_unknown_destination_lists_the_names(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    backup = tmp_path / "backup"
    backup.mkdir()
    _config(tmp_path, {"destinations": {"nas": {"kind": "filesystem", "path": str(backup)}}})
    code, _, err = cli("sync", "-d", "nsa")
    assert code == 4
    assert "no destination named nsa; known: nas" in err


def test_move_is_refused_for_folders_that_are_not_inboxes(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "camera"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"\xff\xd8\xff")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _config(
        tmp_path,
        {
            "sources": {
                "camera": {"kind": "folder", "path": str(folder)},
                "inbox": {"kind": "folder", "path": str(inbox), "move": True},
            }
        },
    )
    for target in (str(folder), "camera"):
        code, _, err = cli("import", "--move", target)
        assert code == 4, err
        assert "allowed only for inbox sources" in err
        assert "inboxes: inbox" in err
    code, _, err = cli("import", "--move")  # every source: camera is not an inbox
    assert code == 4
    assert (folder / "a.jpg").exists()


@pytest.mark.parametrize("command", [[], ["import"], ["sync"], ["serve"]])
def test_help_shows_flags_without_python_types(cli, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = cli(*command, "--help")
    assert code == 0
    assert "<bool>" not in out
    assert "<list[str]>" not in out
    assert "--help" in out


def _odd_folder(tmp_path: Path) -> Path:
    from picpipe.samples import make_jpeg

    source = tmp_path / "src"
    make_jpeg(source / "good.jpg")
    for folder in ("smile:thumbs_up:", "[bold]x"):
        (source / folder).mkdir(parents=True)
        (source / folder / "it's empty.jpg").write_bytes(b"")
    (source / "sub").mkdir()
    (source / "sub" / "loop").symlink_to(source)
    return source


def test_failures_print_names_as_they_are_and_paste_into_a_shell(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exiftool_available: None
) -> None:
    import shlex

    monkeypatch.setenv("PICPIPE_IMPORT__FSYNC", "false")
    source = _odd_folder(tmp_path)
    assert cli("init")[0] == 0
    for _run in range(2):  # an unchanged folder still reports its failed files, exit 3
        code, out, _ = cli("import", "--no-thumbs", str(source))
        assert code == 3
        failed = [line for line in out.splitlines() if line.startswith("  failed  ")]
        assert len(failed) == 2, out  # the two empty files; the symlink loop is a skip
        for line in failed:
            pasted = shlex.split(line.removeprefix("  failed  "))[0]
            assert Path(pasted).is_file(), line
            assert Path(pasted).parent.name in ("smile:thumbs_up:", "[bold]x")
        assert "👍" not in out
    code, out, _ = cli("sessions", "2", "--skipped")
    assert code == 0
    assert "failures" in out  # the status column, never cut
    assert "[bold]x" in out
    assert "smile:thumbs_up:" in out
    assert "symbolic link loop" in out
    assert "skipped" in out
    table = out.split("\nsession ")[0]  # failure lines hold whole paths, to be pasted
    for line in table.splitlines():
        assert len(line) <= 80, line


def test_sessions_table_fits_80_columns(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exiftool_available: None
) -> None:
    monkeypatch.setenv("PICPIPE_IMPORT__FSYNC", "false")
    source = _odd_folder(tmp_path)
    assert cli("init")[0] == 0
    cli("import", "--no-thumbs", str(source))
    code, out, _ = cli("sessions")
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split() == [
        "id", "kind", "status", "started", "UTC", "seen", "new", "dup", "unch", "fail", "skip",
        "bytes",
    ]  # fmt: skip
    assert "failures" in row.split()
    assert all(len(line) <= 80 for line in out.splitlines())


def test_import_takes_single_files_without_touching_their_folder(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exiftool_available: None
) -> None:
    from datetime import datetime

    from picpipe.samples import make_jpeg

    monkeypatch.setenv("PICPIPE_IMPORT__FSYNC", "false")
    folder = tmp_path / "dump"
    one = make_jpeg(folder / "one.jpg", taken=datetime(2021, 1, 1)).path
    make_jpeg(folder / "two.jpg", taken=datetime(2021, 1, 2))
    assert cli("init")[0] == 0
    code, out, err = cli("import", "--no-thumbs", "--json", str(one))
    assert code == 0, err
    assert (json.loads(out)["seen"], json.loads(out)["new"]) == (1, 1)
    code, out, _ = cli("import", "--no-thumbs", "--json", str(folder))
    assert (json.loads(out)["new"], json.loads(out)["duplicate"]) == (1, 1)


def test_import_dry_run_lists_what_it_would_read_and_writes_nothing(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exiftool_available: None
) -> None:
    monkeypatch.setenv("PICPIPE_IMPORT__FSYNC", "false")
    source = _odd_folder(tmp_path)
    (source / "notes.xmp").write_text("<x/>")
    code, out, _ = cli("import", "--dry-run", "--json", str(source))
    assert code == 0
    plan = json.loads(out)
    assert plan["dry_run"] is True
    assert sorted(Path(i["ref"]).name for i in plan["would_read"]) == [
        "good.jpg", "it's empty.jpg", "it's empty.jpg",
    ]  # fmt: skip
    reasons = {Path(s["ref"]).name: s["reason"] for s in plan["skipped"]}
    assert "loop" in reasons["loop"]
    assert "sidecar" in reasons["notes.xmp"]
    assert not (tmp_path / "home").exists()  # no catalog, no home
    assert not (tmp_path / "library").exists()
    assert cli("init")[0] == 0
    cli("import", "--no-thumbs", str(source))
    code, out, _ = cli("import", "--dry-run", str(source))
    assert code == 0
    assert "1 unchanged" in out  # good.jpg; the failed ones would be read again
    assert "nothing was written" in out


def test_init_on_a_home_that_cannot_be_created_is_one_line(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, exiftool_available: None
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = cli("--home", str(blocker / "home"), "init")
    assert code == 4
    assert "Not a directory" in err  # one line naming the path, whichever step meets it
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
