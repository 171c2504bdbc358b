"""Settings come from YAML < PICPIPE_* environment < flags, and secrets never show."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from picpipe.config import Settings, load_settings
from picpipe.config_template import render_template
from picpipe.errors import ConfigError
from picpipe.redact import mask_url


def write_config(path: Path, data: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_defaults_put_everything_under_the_local_root(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    assert settings.library_root == tmp_path / "library"
    assert settings.catalog_url == f"sqlite:///{tmp_path / 'catalog.db'}"
    assert settings.config_file == tmp_path / "config.yaml"


def test_home_defaults_to_xdg_data_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert load_settings().home_root == tmp_path / "picpipe"


def test_yaml_then_environment_then_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_config(
        tmp_path / "config.yaml", {"workers": 3, "library": "/from/yaml", "log_level": "DEBUG"}
    )
    assert load_settings(home=tmp_path).workers == 3
    monkeypatch.setenv("PICPIPE_WORKERS", "5")
    monkeypatch.setenv("PICPIPE_LIBRARY", "/from/env")
    settings = load_settings(home=tmp_path)
    assert (settings.workers, settings.library_root, settings.log_level) == (
        5,
        Path("/from/env"),
        "DEBUG",
    )
    flagged = load_settings(home=tmp_path, library=Path("/from/flag"), workers=7)
    assert (flagged.workers, flagged.library_root) == (7, Path("/from/flag"))


def test_config_file_named_by_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    other = write_config(tmp_path / "elsewhere.yaml", {"workers": 2})
    monkeypatch.setenv("PICPIPE_CONFIG", str(other))
    assert load_settings(home=tmp_path / "home").workers == 2


def test_home_from_environment_finds_its_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_config(tmp_path / "config.yaml", {"workers": 6})
    monkeypatch.setenv("PICPIPE_HOME", str(tmp_path))
    assert load_settings().workers == 6


def test_nested_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PICPIPE_SCAN__SKIP_HIDDEN", "false")
    monkeypatch.setenv("PICPIPE_IMPORT__FSYNC", "false")
    settings = load_settings(home=tmp_path)
    assert settings.scan.skip_hidden is False
    assert settings.imports.fsync is False


def test_named_sources_from_yaml(tmp_path: Path) -> None:
    write_config(tmp_path / "config.yaml", {"sources": {"phone": {"kind": "folder", "path": "/p"}}})
    assert load_settings(home=tmp_path).sources == {"phone": {"kind": "folder", "path": "/p"}}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("workers: [1, 2", "not valid YAML"), ("- a\n- b\n", "mapping"), ("bogus: 1\n", "bogus")],
)
def test_broken_config_is_a_clear_error(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "config.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=fragment):
        load_settings(home=tmp_path)


def test_secrets_are_masked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PICPIPE_DATABASE_URL", "postgresql+psycopg://pic:hunter2@db/pp")
    write_config(
        tmp_path / "config.yaml",
        {"destinations": {"cloud": {"kind": "s3", "secret_access_key": "hunter2", "bucket": "b"}}},
    )
    settings = load_settings(home=tmp_path)
    assert settings.catalog_url.endswith("pic:hunter2@db/pp")
    dumped = str(settings.masked_dump())
    assert "hunter2" not in dumped
    assert "pic:********@db/pp" in dumped
    assert "'bucket': 'b'" in dumped
    assert "hunter2" not in repr(settings)


def test_mask_url_leaves_urls_without_password_alone() -> None:
    assert mask_url("sqlite:////x/catalog.db") == "sqlite:////x/catalog.db"
    assert mask_url("postgresql://u:p@h:5432/d") == "postgresql://u:********@h:5432/d"


def test_template_is_valid_yaml_that_loads_as_settings(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(render_template(), encoding="utf-8")
    settings = load_settings(home=tmp_path)
    assert settings.scan.skip_hidden is True


def test_template_documents_every_setting() -> None:
    text = render_template()
    for name, field in Settings.model_fields.items():
        key = field.serialization_alias or name
        if key == "config" or key == "home":
            continue  # chosen before the file is read: flags and environment only
        assert f"{key}:" in text, key
    for nested in (
        "photo_extensions",
        "ignored_patterns",
        "skip_hidden",
        "fsync",
        "default_timezone",
    ):
        assert nested in text
