"""Every discovery payload passes Home Assistant's own MQTT schemas (homeassistant==2024.3.3,
in its own venv made by scripts/ha-venv), including the keys it would silently drop."""

from __future__ import annotations

import json

import pytest

from picpipe.service.mqtt_discovery import (
    Device,
    Topics,
    device_messages,
    entities,
    single_component_messages,
)
from tests.service.conftest import ha_check

TOPICS = Topics("picpipe", "homeassistant")
DEVICE = Device(node="picpipe", configuration_url="http://nas.local:8080/")


def every_entity() -> list:
    return entities(
        TOPICS,
        destinations=["nas", "Backblaze B2"],
        sources=["iphone", "synology photos"],
        cards=[("EOS_DIGITAL_1234-ABCD", "EOS_DIGITAL")],
    )


def test_every_single_component_payload_passes_home_assistants_schema(ha_python: str) -> None:
    messages = single_component_messages(TOPICS, DEVICE, every_entity())
    assert len(messages) == 13 + 2 * 4 + 2 * 3 + 1
    results = ha_check(ha_python, "homeassistant", messages)
    problems = {topic: result for topic, result in results.items() if result != "ok"}
    assert problems == {}
    assert len(results) == len(messages)


def test_the_device_payload_follows_the_device_based_rules(ha_python: str) -> None:
    messages = device_messages(TOPICS, DEVICE, every_entity())
    assert [topic for topic, _ in messages] == ["homeassistant/device/picpipe/config"]
    assert ha_check(ha_python, "homeassistant", messages) == {messages[0][0]: "ok"}


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"state_class": "counter"}, "state_class"),
        ({"object_id": "picpipe_status"}, "object_id"),
        ({"unit_of_measurment": "%"}, "dropped"),
        ({"device": {"name": "no ids"}}, "identifier"),
    ],
)
def test_the_check_rejects_off_spec_payloads(ha_python: str, change: dict, complaint: str) -> None:
    topic, payload = single_component_messages(TOPICS, DEVICE, every_entity()[:1])[0]
    broken = json.loads(payload) | change
    result = ha_check(ha_python, "homeassistant", [(topic, json.dumps(broken).encode())])
    assert complaint in result[topic], result[topic]


def test_a_device_payload_with_a_root_tilde_is_rejected(ha_python: str) -> None:
    topic, payload = device_messages(TOPICS, DEVICE, every_entity()[:2])[0]
    broken = json.loads(payload) | {"~": "picpipe"}
    result = ha_check(ha_python, "homeassistant", [(topic, json.dumps(broken).encode())])
    assert "root keys" in result[topic]
