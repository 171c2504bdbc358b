"""Docs stay honest: every command, setting and module is documented."""

from __future__ import annotations

from pathlib import Path

from typer.main import get_command

from picpipe.cli.app import app
from picpipe.config import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_starts_with_the_two_commands() -> None:
    block = README.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert [line.split("#")[0].split()[:2] for line in block] == [
        ["bash", "scripts/demo"],
        ["bash", "scripts/test"],
    ]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/test" in ci


def test_every_command_is_documented() -> None:
    commands = get_command(app).commands  # type: ignore[attr-defined]
    for name in commands:
        assert f"| `{name}" in README, name


def test_every_setting_is_documented() -> None:
    for name, field in Settings.model_fields.items():
        key = field.serialization_alias or name
        assert f"`{key}" in README, key


def test_every_module_is_in_the_module_map() -> None:
    contributing = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    src = ROOT / "src" / "picpipe"
    for path in src.rglob("*.py"):
        rel = path.relative_to(src).as_posix()
        if "/migrations/" in f"/{rel}" or path.name in {"__main__.py"}:
            continue
        if path.name == "__init__.py" and rel != "__init__.py":
            continue
        assert f"`{rel}`" in contributing, rel


def test_every_mqtt_entity_is_documented() -> None:
    from picpipe.service.mqtt_discovery import STATUS_WORDS, Topics, entities

    topics = Topics("picpipe", "homeassistant")
    for entity in entities(topics, destinations=["NAME"], sources=["NAME"]):
        key = entity.key.replace("dest_name", "dest_NAME").replace("src_name", "src_NAME")
        assert f"`{key}`" in README, entity.key
    section = README.split("### Home Assistant over MQTT", 1)[1].split("\n### ", 1)[0]
    assert "`card_LABEL_UUID_safe`" in section
    for word in STATUS_WORDS:
        assert f"`{word}`" in section, word
