"""Home Assistant MQTT discovery: which entities picpipe has, their topics and config payloads.

Pure functions, no broker: `entities` lists the entities for what the catalog knows (one set
per destination, per source and per card), `single_component_messages` and
`device_messages` turn them into retained (topic, payload) pairs in the two forms Home
Assistant reads (see ``shared/reference/home-assistant-mqtt.md``). No payload carries
``object_id`` (deprecated in Home Assistant 2025.10): the entity id follows from the name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from picpipe import __version__
from picpipe.hashing import sha256_bytes

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

Component = Literal["sensor", "binary_sensor", "button", "image", "event"]
STATUS_WORDS = ("idle", "scanning", "importing", "backing_up", "completed", "failed")
CARD_SAFE_EVENT = "safe_to_format"
ORIGIN = {"name": "picpipe", "sw": __version__, "url": "https://github.com/picpipe/picpipe"}


def slug(name: str) -> str:
    """A topic and id segment for ``name`` (``[a-z0-9_-]``); names that had to change beyond
    lower case get a short digest so that "a b" and "a_b" stay apart."""
    plain = re.sub(r"[^a-z0-9_-]+", "_", name.lower()).strip("_") or "x"
    if plain == name.lower():
        return plain
    return f"{plain}_{sha256_bytes(name.encode())[:6]}"


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic of one picpipe under ``prefix`` (the ``topic_prefix`` setting)."""

    prefix: str
    discovery_prefix: str

    @property
    def availability(self) -> str:
        return f"{self.prefix}/availability"

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"

    def state(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def command(self, name: str) -> str:
        return f"{self.prefix}/command/{name}"

    @property
    def commands(self) -> str:
        return f"{self.prefix}/command/+"


@dataclass(frozen=True, slots=True)
class Entity:
    """One Home Assistant entity: its component, key (unique within the device) and the
    platform fields besides the shared ones (unique_id, device, origin, availability)."""

    component: Component
    key: str
    name: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Device:
    """The one device picpipe is in Home Assistant; ``node`` is its id in topics."""

    node: str
    name: str = "picpipe"
    configuration_url: str | None = None

    def payload(self) -> dict[str, Any]:
        device: dict[str, Any] = {
            "ids": [self.node],
            "name": self.name,
            "mf": "picpipe",
            "mdl": "photo pipeline",
            "sw": __version__,
        }
        if self.configuration_url:
            device["cu"] = self.configuration_url
        return device


def _sensor(topic: str, key: str, name: str, **extra: Any) -> Entity:
    return Entity("sensor", key, name, {"state_topic": topic, **extra})


def _json_sensor(topic: str, key: str, name: str, value: str, **extra: Any) -> Entity:
    return _sensor(topic, key, name, value_template=f"{{{{ value_json.{value} }}}}", **extra)


def core_entities(topics: Topics, image_type: str = "image/jpeg") -> list[Entity]:
    """The entities every picpipe has: run state, library totals, buttons, the photo."""
    files, library = topics.state("files"), topics.state("library")
    return [
        _sensor(
            topics.state("status"),
            "status",
            "Status",
            # No device_class enum + options: Home Assistant 2024.3's MQTT sensor drops
            # ``options``; the words are STATUS_WORDS, documented in the README.
            icon="mdi:image-sync",
        ),
        _sensor(
            topics.state("progress"),
            "progress",
            "Progress",
            unit_of_measurement="%",
            state_class="measurement",
            icon="mdi:progress-upload",
        ),
        _json_sensor(files, "files_done", "Files done", "done", state_class="measurement"),
        _json_sensor(files, "files_total", "Files total", "total", state_class="measurement"),
        _sensor(topics.state("current_file"), "current_file", "Current file", icon="mdi:file"),
        _json_sensor(
            topics.state("last_session"),
            "last_session",
            "Last session",
            "status",
            json_attributes_topic=topics.state("last_session"),
            icon="mdi:history",
        ),
        _json_sensor(library, "assets", "Library assets", "assets", state_class="total"),
        _json_sensor(
            library,
            "library_bytes",
            "Library size",
            "bytes",
            device_class="data_size",
            unit_of_measurement="B",
            state_class="total",
        ),
        _json_sensor(
            library,
            "below_target",
            "Assets below replica target",
            "below_target",
            state_class="measurement",
            icon="mdi:content-copy",
        ),
        Entity(
            "event",
            "card_safe",
            "Card safe to format",
            {"state_topic": topics.state("event/card_safe"), "event_types": [CARD_SAFE_EVENT]},
        ),
        Entity(
            "button",
            "sync_now",
            "Sync now",
            {"command_topic": topics.command("sync_now"), "icon": "mdi:cloud-upload"},
        ),
        Entity(
            "button",
            "rescan",
            "Rescan",
            {"command_topic": topics.command("rescan"), "icon": "mdi:folder-refresh"},
        ),
        Entity(
            "image",
            "photo",
            "Photo",
            {"image_topic": topics.state("image"), "content_type": image_type},
        ),
    ]


def destination_entities(topics: Topics, name: str) -> list[Entity]:
    topic, key = topics.state(f"destination/{slug(name)}"), f"dest_{slug(name)}"
    counts = [
        _json_sensor(topic, f"{key}_{what}", f"{name} {what}", what, state_class="measurement")
        for what in ("verified", "pending", "failed")
    ]
    return [
        *counts,
        _json_sensor(
            topic, f"{key}_last_success", f"{name} last success", "last_success",
            device_class="timestamp",
        ),
    ]  # fmt: skip


def source_entities(topics: Topics, name: str) -> list[Entity]:
    topic, key = topics.state(f"source/{slug(name)}"), f"src_{slug(name)}"
    return [
        _json_sensor(
            topic, f"{key}_last_success", f"{name} last success", "last_success",
            device_class="timestamp",
        ),
        _json_sensor(topic, f"{key}_errors", f"{name} errors", "errors", state_class="measurement"),
        Entity(
            "binary_sensor",
            f"{key}_credentials",
            f"{name} credentials failing",
            {
                "state_topic": topic,
                "value_template": "{{ 'ON' if value_json.credentials_failing else 'OFF' }}",
                "device_class": "problem",
            },
        ),
    ]  # fmt: skip


def card_entities(topics: Topics, card_key: str, label: str) -> list[Entity]:
    topic = topics.state(f"card/{slug(card_key)}")
    return [
        Entity(
            "binary_sensor",
            f"card_{slug(card_key)}_safe",
            f"Card {label} safe to format",
            {
                "state_topic": topic,
                "value_template": "{{ 'ON' if value_json.safe else 'OFF' }}",
                "json_attributes_topic": topic,
                "icon": "mdi:sd",
            },
        )
    ]


def entities(
    topics: Topics,
    *,
    destinations: Iterable[str] = (),
    sources: Iterable[str] = (),
    cards: Iterable[tuple[str, str]] = (),
    image_type: str = "image/jpeg",
) -> list[Entity]:
    """Every entity for these destination and source names and (key, label) cards."""
    out = core_entities(topics, image_type)
    for name in destinations:
        out += destination_entities(topics, name)
    for name in sources:
        out += source_entities(topics, name)
    for key, label in cards:
        out += card_entities(topics, key, label)
    return out


def _availability(topics: Topics) -> list[dict[str, str]]:
    return [
        {
            "topic": topics.availability,
            "payload_available": "online",
            "payload_not_available": "offline",
        }
    ]


def single_component_messages(
    topics: Topics, device: Device, items: Sequence[Entity]
) -> list[tuple[str, bytes]]:
    """``<prefix>/<component>/<node>/<key>/config`` with a full payload per entity."""
    out = []
    for entity in items:
        payload = {
            "name": entity.name,
            "unique_id": f"{device.node}_{entity.key}",
            "device": device.payload(),
            "origin": ORIGIN,
            "availability": _availability(topics),
            **entity.fields,
        }
        topic = f"{topics.discovery_prefix}/{entity.component}/{device.node}/{entity.key}/config"
        out.append((topic, json.dumps(payload, sort_keys=True).encode()))
    return out


def device_messages(
    topics: Topics, device: Device, items: Sequence[Entity]
) -> list[tuple[str, bytes]]:
    """One ``<prefix>/device/<node>/config`` payload: device, origin, availability at the root
    and each entity under ``cmps`` with its platform ``p`` (Home Assistant 2024.11+)."""
    components = {
        entity.key: {
            "p": entity.component,
            "name": entity.name,
            "unique_id": f"{device.node}_{entity.key}",
            **entity.fields,
        }
        for entity in items
    }
    payload = {
        "dev": device.payload(),
        "o": ORIGIN,
        "availability": _availability(topics),
        "cmps": components,
    }
    topic = f"{topics.discovery_prefix}/device/{device.node}/config"
    return [(topic, json.dumps(payload, sort_keys=True).encode())]


def discovery_messages(
    form: Literal["single", "device"], topics: Topics, device: Device, items: Sequence[Entity]
) -> list[tuple[str, bytes]]:
    """The retained discovery messages for ``items`` in the configured ``form``."""
    if form == "device":
        return device_messages(topics, device, items)
    return single_component_messages(topics, device, items)
