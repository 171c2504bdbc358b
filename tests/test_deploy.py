"""The docker-compose example in deploy/ runs icloudpd beside `picpipe watch` and stays valid."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from picpipe.sources.base import load_source_kind
from picpipe.sources.watched import WatchedOptions

ROOT = Path(__file__).resolve().parents[1]


def test_the_compose_example_shares_the_download_folder_with_picpipe_watch() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"icloudpd", "picpipe"} <= services.keys()
    icloudpd, picpipe = services["icloudpd"], services["picpipe"]
    assert picpipe["command"][:2] == ["picpipe", "watch"]
    downloads = next(v.split(":")[1] for v in icloudpd["volumes"] if v.startswith("icloud-photos:"))
    assert f"--directory {downloads}" in icloudpd["command"]
    mounted = next(v for v in picpipe["volumes"] if v.startswith("icloud-photos:"))
    assert mounted.endswith(":ro")  # picpipe never writes to a source
    sources = json.loads(picpipe["environment"]["PICPIPE_SOURCES"])
    [name] = picpipe["command"][2:]
    source = sources[name]
    assert source["kind"] == "icloudpd"
    assert load_source_kind(source["kind"]).kind == "icloudpd"
    options = WatchedOptions(**{k: v for k, v in source.items() if k != "kind"})
    assert str(options.path) == mounted.split(":")[1]
    assert set(compose["volumes"]) >= {"icloud-photos", "picpipe-home"}
