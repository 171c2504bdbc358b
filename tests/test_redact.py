"""Secrets never reach output: URL masking, secret-looking names, validation errors without
input values, the config dump (finding 3 and 4 of the security review)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from picpipe.config import load_settings
from picpipe.destinations.base import destination_options
from picpipe.errors import CatalogError, ConfigError
from picpipe.redact import MASK, looks_secret, mask_url, mask_urls_in, mask_values
from tests.conftest import run_cli

CANARY = "Canary7Secret-Zq9"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:p%40ss@h:5432/d", f"postgresql://u:{MASK}@h:5432/d"),
        (
            "postgresql://u@h/d?password=hunter2&sslmode=require",
            f"postgresql://{MASK}@h/d?password={MASK}&sslmode=require",
        ),
        ("postgresql:///d?host=/run&password=x", f"postgresql:///d?host=/run&password={MASK}"),
        ("https://ak:sk@s3.example/", f"https://ak:{MASK}@s3.example/"),
        ("https://apikey@immich.example/api", f"https://{MASK}@immich.example/api"),
        (
            "https://acct.blob.core.windows.net/?sv=2022&sig=abc%2Bdef&se=2030",
            f"https://acct.blob.core.windows.net/?sv={MASK}&sig={MASK}&se={MASK}",
        ),
        ("sqlite:////x/catalog.db", "sqlite:////x/catalog.db"),
        ("https://photos.example.org/api?page=2", "https://photos.example.org/api?page=2"),
    ],
)
def test_urls_lose_their_secrets(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert mask_urls_in(f"cannot reach {url}: refused") == f"cannot reach {shown}: refused"


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "pasword",
        "secret_access_key",
        "secrt",
        "acess_id",
        "access_key_id",
        "api_key",
        "sas_token",
        "connection_string",
        "token",
        "read_token",
        "account_key",
        "privat_key",
    ],
)
def test_names_that_look_secret(name: str) -> None:
    assert looks_secret(name)


@pytest.mark.parametrize(
    "name", ["password_env", "api_key_file", "bucket", "host", "layout", "kind"]
)
def test_names_that_do_not(name: str) -> None:
    assert not looks_secret(name)


def test_mask_values_walks_plain_data() -> None:
    data = {"s3": {"acess_id": CANARY, "endpoint_url": f"http://ak:{CANARY}@h", "port": 9}}
    assert CANARY not in json.dumps(mask_values(data))


def test_validation_errors_name_the_key_not_the_value(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"workers": CANARY, "acess_id": CANARY}))
    with pytest.raises(ConfigError) as caught:
        load_settings(config=config)
    message = caught.value.message
    assert CANARY not in message
    assert "workers:" in message
    assert "acess_id: unknown key" in message
    assert caught.value.__cause__ is None  # no chained pydantic text for a DEBUG traceback
    with pytest.raises(ConfigError) as caught:
        destination_options("nas", {"kind": "smb", "host": "h", "share": "s", "password": CANARY})
    assert CANARY not in caught.value.message
    assert "destinations.nas." in caught.value.message
    assert caught.value.__cause__ is None


def test_error_messages_mask_urls_wherever_they_come_from() -> None:
    error = CatalogError(detail=f"postgresql://u@h/d?password={CANARY}: refused")
    assert CANARY not in error.message
    assert CANARY not in str(error)


def test_picpipe_config_masks_misspelt_and_url_secrets(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "database_url": f"postgresql://postgres@127.0.0.1:1/x?password={CANARY}",
                "destinations": {
                    "s3": {
                        "kind": "s3",
                        "bucket": "b",
                        "secret_access_key": CANARY,
                        "endpoint_url": f"http://ak:{CANARY}@127.0.0.1:1",
                    },
                    "immich": {
                        "kind": "immich",
                        "url": f"https://{CANARY}@immich.example",
                        "api_key_env": "IMMICH_KEY",
                    },
                    "azure": {
                        "kind": "azure",
                        "container": "photos",
                        "account_url": f"https://a.blob.core.windows.net/?sv=1&sig={CANARY}",
                    },
                },
            }
        )
    )
    for args in (("config",), ("config", "--json"), ("-v", "config")):
        result = run_cli("--home", str(home), *args, timeout=60)
        assert result.returncode == 0, result.stderr
        assert CANARY not in result.stdout + result.stderr
        assert MASK in result.stdout
    # a misspelt secret key is an error now, and the error does not show its value either
    config = yaml.safe_load((home / "config.yaml").read_text())
    config["destinations"]["s3"]["acess_id"] = CANARY
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_cli("--home", str(home), "config", timeout=60)
    assert result.returncode == 4, result.stderr
    assert "destinations.s3.acess_id: unknown key" in result.stderr
    assert CANARY not in result.stdout + result.stderr


def test_source_option_errors_name_the_key_not_the_value(tmp_path: Path) -> None:
    import picpipe.cli.app  # noqa: F401 - the CLI root first (it registers the commands)
    from picpipe.cli.imports import build_source

    settings = load_settings(home=tmp_path)
    with pytest.raises(ConfigError) as caught:
        build_source(settings, "phone", {"kind": "folder", "path": {"secret": CANARY}})
    assert CANARY not in caught.value.message
    assert caught.value.message.startswith("configuration error: sources.phone.path: ")
