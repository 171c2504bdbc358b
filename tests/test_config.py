"""Settings come from YAML < PICPIPE_* environment < flags, and secrets never show."""

from __future__ import annotations

import re
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


# -- strictness: typos and bad values at every level, each one line naming the key ----------


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ({"serve": {"tokn": "x" * 20}}, ["serve.tokn: unknown key", "did you mean token?"]),
        ({"import": {"fsycn": False}}, ["import.fsycn: unknown key", "known: default_timezone"]),
        ({"thumbs": {"fromat": "webp"}}, ["thumbs.fromat: unknown key", "did you mean format?"]),
        ({"replicas": {"targt": 3}}, ["replicas.targt: unknown key", "did you mean target?"]),
        ({"scan": {"skip_hiden": True}}, ["scan.skip_hiden: unknown key"]),
        ({"consumers": {"immich": {"url": "u", "api_key": "k", "import_path": "/p", "nmae": 1}}},
         ["consumers.immich.nmae: unknown key", "known: api_key"]),
        ({"wokers": 2}, ["wokers: unknown key", "did you mean workers?"]),
        ({"log_level": "LOUD"}, ["log_level: must be one of DEBUG, INFO", "(got 'LOUD')"]),
        ({"thumbs": {"format": "gif"}}, ["thumbs.format:", "'jpeg' or 'webp'", "(got 'gif')"]),
        ({"thumbs": {"quality": 500}}, ["thumbs.quality:", "less than or equal to 100", "500"]),
        ({"serve": {"port": "http"}}, ["serve.port:", "valid integer", "(got 'http')"]),
        ({"replicas": {"target": 0}}, ["replicas.target:", "greater than or equal to 1"]),
        ({"views": {"layouts": ["by-dat"]}}, ["views.layouts.0:", "'by-date'", "(got 'by-dat')"]),
        ({"sources": {"phone": {"kind": "folder", "pth": "/p"}}},
         ["sources.phone.pth: unknown key", "did you mean path?"]),
        ({"sources": {"phone": {"kind": "folder", "path": "/p", "mvoe": True}}},
         ["sources.phone.mvoe: unknown key", "did you mean move?"]),
        ({"sources": {"phone": {"kind": "floder", "path": "/p"}}},
         ["sources.phone.kind: unknown kind 'floder'; known: folder"]),
        ({"sources": {"phone": {"kind": "folder", "path": "/p", "move": "perhaps"}}},
         ["sources.phone.move:", "valid boolean", "(got 'perhaps')"]),
        ({"destinations": {"nas": {"kind": "filesystem", "path": "/n", "fsnyc": True}}},
         ["destinations.nas.fsnyc: unknown key", "did you mean fsync?"]),
        ({"destinations": {"nas": {"kind": "ftp", "path": "/n"}}},
         ["destinations.nas.kind must be one of", "filesystem"]),
        ({"destinations": {"box": {"kind": "smb", "server": "s", "share": "x", "port": "a"}}},
         ["destinations.box.port:", "valid integer"]),
    ],
)  # fmt: skip
def test_config_typos_and_bad_values_name_the_key(
    tmp_path: Path, data: dict[str, object], fragments: list[str]
) -> None:
    write_config(tmp_path / "config.yaml", data)
    with pytest.raises(ConfigError) as caught:
        load_settings(home=tmp_path)
    message = caught.value.message
    assert "\n" not in message
    assert "pydantic" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_secret_values_are_never_echoed_in_errors(tmp_path: Path) -> None:
    write_config(
        tmp_path / "config.yaml",
        {
            "serve": {"token": ["hunter2-hunter2"]},
            "destinations": {"b": {"kind": "smb", "server": "s", "share": "x", "password": 7}},
        },
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(home=tmp_path)
    assert "serve.token" in caught.value.message
    assert "hunter2" not in caught.value.message
    assert "(got 7)" not in caught.value.message


def test_a_named_config_file_that_does_not_exist_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml does not exist"):
        load_settings(config=missing)
    monkeypatch.setenv("PICPIPE_CONFIG", str(missing))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(home=tmp_path)
    # init creates the file it names; the default file under the home may be missing
    assert load_settings(config=missing, config_may_be_missing=True).config_file == missing
    monkeypatch.delenv("PICPIPE_CONFIG")
    assert load_settings(home=tmp_path / "fresh").workers >= 1


def _sections(text: str) -> list[list[str]]:
    blocks: list[list[str]] = [[]]
    for line in text.splitlines():
        if not line.strip():
            blocks.append([])
        else:
            blocks[-1].append(line)
    return [block for block in blocks if block]


# A commented setting: "# key: value" (indent kept), never a prose line ("# Log level: ...").
_COMMENTED_SETTING = re.compile(r"^(\s*)# (\s*(?:[\w-]+|\"[^\"]+\"):(?:\s|$).*)$")


def test_template_uncommented_section_by_section_loads(tmp_path: Path) -> None:
    sections = _sections(render_template())
    uncommented_any = 0
    for index, block in enumerate(sections):
        changed = [_COMMENTED_SETTING.sub(r"\1\2", line) for line in block]
        if changed == block:
            continue
        uncommented_any += 1
        others = ["\n".join(b) for i, b in enumerate(sections) if i != index]
        text = "\n\n".join([*others, "\n".join(changed)]) + "\n"
        home = tmp_path / f"h{index}"
        home.mkdir()
        (home / "config.yaml").write_text(text, encoding="utf-8")
        try:
            load_settings(home=home)
        except ConfigError as exc:
            pytest.fail(f"section {changed[0]!r} uncommented: {exc.message}")
    assert uncommented_any >= 8


def test_init_creates_config_and_catalog_private(tmp_path: Path) -> None:
    from picpipe.catalog.db import open_catalog
    from picpipe.config_template import write_private_file

    config = tmp_path / "home" / "config.yaml"
    assert write_private_file(config, render_template())
    assert not write_private_file(config, "other")  # an existing file is left alone
    assert config.stat().st_mode & 0o777 == 0o600
    catalog = open_catalog(f"sqlite:///{tmp_path / 'home' / 'catalog.db'}")
    catalog.close()
    assert (tmp_path / "home" / "catalog.db").stat().st_mode & 0o777 == 0o600
