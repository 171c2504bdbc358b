"""Layouts, collision names, secrets and the kind registry shared by every destination."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from picpipe.config_template import render_template
from picpipe.destinations.base import (
    DATE_LAYOUT,
    OBJECT_STORE_LAYOUT,
    AssetRef,
    collision_key,
    destination_kind,
    destination_kind_names,
    destination_options,
    render_layout,
    resolve_secret,
)
from picpipe.errors import ConfigError, DestinationMisconfigured

ASSET = AssetRef(
    sha256="ab" + "0" * 62,
    size=10,
    ext="heic",
    kind="photo",
    taken_local=datetime(2024, 2, 29, 23, 59, 1),
    taken_offset_min=-300,
    original_name="IMG_4242.HEIC",
    source_path="DCIM/100APPLE/IMG_4242.HEIC",
)


def test_object_store_layout() -> None:
    assert render_layout(OBJECT_STORE_LAYOUT, ASSET, "backup/") == (
        f"backup/ab/{ASSET.sha256}/DCIM/100APPLE/IMG_4242.HEIC"
    )
    assert render_layout(OBJECT_STORE_LAYOUT, ASSET).startswith("ab/")  # no prefix: no empty part


def test_date_layout_uses_the_local_capture_date() -> None:
    assert render_layout(DATE_LAYOUT, ASSET) == "2024/02/29/IMG_4242.HEIC"


def test_layouts_cannot_escape_or_use_unsafe_characters() -> None:
    odd = AssetRef(
        **{**_fields(ASSET), "original_name": '../../etc/pa:ss*wd?"<>|', "source_path": "/abs/../x"}
    )
    key = render_layout("{YYYY}/{name}", odd)
    assert ".." not in key.split("/")
    assert not any(c in key for c in ':*?"<>|\\')
    assert not key.startswith("/")
    assert render_layout("{path}", odd) == "abs/x"


def test_unknown_layout_field_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown field"):
        render_layout("{year}/{name}", ASSET)


def test_collision_key_keeps_the_extension() -> None:
    assert collision_key("2024/02/29/IMG_4242.HEIC", ASSET.sha256) == (
        f"2024/02/29/IMG_4242~{ASSET.sha256[:12]}.HEIC"
    )
    assert collision_key("README", "f" * 64) == "README~ffffffffffff"


def test_secrets_from_value_env_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_secret("d", "key", SecretStr("v")) == "v"
    monkeypatch.setenv("PICPIPE_TEST_SECRET", "from-env")
    assert resolve_secret("d", "key", None, env="PICPIPE_TEST_SECRET") == "from-env"
    (tmp_path / "secret").write_text("from-file\n")
    assert resolve_secret("d", "key", None, file=tmp_path / "secret") == "from-file"
    assert resolve_secret("d", "key", None) is None
    with pytest.raises(DestinationMisconfigured, match="NOT_SET_ANYWHERE") as err:
        resolve_secret("d", "key", None, env="NOT_SET_ANYWHERE")
    assert "from-env" not in str(err.value)
    with pytest.raises(DestinationMisconfigured, match="cannot read secret file"):
        resolve_secret("d", "key", None, file=tmp_path / "missing")


def test_every_kind_loads_and_documents_its_options() -> None:
    kinds = destination_kind_names()
    assert {"filesystem", "smb", "s3", "azure", "immich"} <= set(kinds)
    template = render_template()
    for kind in kinds:
        options = destination_kind(kind).Options
        for name, field in options.model_fields.items():
            if name == "kind":
                continue
            assert field.description, f"{kind}.{name} has no description"
            assert f"#     {name}:" in template, f"{kind}.{name} missing from the template"
        assert f"kind: {kind}" in template


def test_config_errors_name_the_destination_and_option() -> None:
    with pytest.raises(ConfigError, match=r"destinations\.nas\.kind must be one of"):
        destination_options("nas", {"kind": "ftp"})
    with pytest.raises(ConfigError, match=r"destinations\.nas\.path"):
        destination_options("nas", {"kind": "filesystem"})
    with pytest.raises(ConfigError, match=r"destinations\.nas\.colour"):
        destination_options("nas", {"kind": "filesystem", "path": "/x", "colour": "red"})


def _fields(asset: AssetRef) -> dict[str, object]:
    return {name: getattr(asset, name) for name in asset.__dataclass_fields__}
