"""The ``mqtt:`` section: strict, the password only from the environment variable it names,
never in logs or settings dumps; `mqtt_component` is what the service imports."""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from picpipe.config import load_settings
from picpipe.errors import ConfigError
from picpipe.service.mqtt import MqttPublisher, mqtt_component
from tests.conftest import LibraryFixture
from tests.service.conftest import BROKER_COMMON, OwnBroker, ScriptedControl, free_port

SECRET = "broker-secret-0b9c6d"


def test_mqtt_is_off_without_its_section_and_on_with_defaults(tmp_path: Path) -> None:
    assert load_settings(home=tmp_path).mqtt is None
    (tmp_path / "config.yaml").write_text("mqtt:\n  host: broker.lan\n")
    mqtt = load_settings(home=tmp_path).mqtt
    assert mqtt is not None
    assert (mqtt.host, mqtt.port, mqtt.discovery_prefix, mqtt.topic_prefix, mqtt.discovery) == (
        "broker.lan",
        1883,
        "homeassistant",
        "picpipe",
        "single",
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("mqtt:\n  hostname: x\n", "mqtt.hostname"),
        ("mqtt:\n  discovery: both\n", "mqtt.discovery"),
        ("mqtt:\n  password: hunter2\n", "mqtt.password"),  # never in the file
        ("mqtt:\n  topic_prefix: 'pic pipe/#'\n", "mqtt.topic_prefix"),
        ("mqtt:\n  port: 0\n", "mqtt.port"),
    ],
)
def test_a_bad_mqtt_key_is_one_error_naming_it(tmp_path: Path, text: str, key: str) -> None:
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(home=tmp_path)
    assert key in caught.value.message
    assert "hunter2" not in caught.value.message


def test_the_factory_needs_the_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mqtt"):
        mqtt_component(load_settings(home=tmp_path))
    (tmp_path / "config.yaml").write_text("mqtt:\n  host: 127.0.0.1\n")
    component = mqtt_component(load_settings(home=tmp_path))
    assert component.name == "mqtt"
    assert isinstance(component, MqttPublisher)


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[OwnBroker]:
    passwords = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "picpipe", SECRET],
        check=True,
        capture_output=True,
    )
    port = free_port()
    config = tmp_path / "auth.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
        + BROKER_COMMON
    )
    own = OwnBroker(port, config)
    own.start()
    yield own
    own.stop()


def test_the_password_comes_from_its_variable_and_is_never_shown(
    sqlite_library: LibraryFixture,
    password_broker: OwnBroker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("BROKER_PW", SECRET)
    home = tmp_path / "cfg"
    home.mkdir()
    (home / "config.yaml").write_text(
        f"mqtt:\n  host: 127.0.0.1\n  port: {password_broker.port}\n  username: picpipe\n"
        "  password_env: BROKER_PW\n  topic_prefix: authtest\n"
    )
    settings = load_settings(home=home)
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.masked_dump())
    caplog.set_level(logging.DEBUG)
    publisher = mqtt_component(settings)
    publisher.start(ScriptedControl(), threading.Event())
    try:
        assert isinstance(publisher, MqttPublisher)
        assert publisher.link.wait_connected(5), "refused with the right password"
    finally:
        publisher.close()
    # The broker refuses anonymous clients: the password was what let it in.
    monkeypatch.setenv("BROKER_PW", "wrong")
    refused = mqtt_component(load_settings(home=home))
    refused.start(ScriptedControl(), threading.Event())
    try:
        assert isinstance(refused, MqttPublisher)
        assert not refused.link.wait_connected(1.5)
    finally:
        refused.close()
    assert SECRET not in caplog.text
    assert "refused the connection" in caplog.text
