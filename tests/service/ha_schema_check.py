"""Validate MQTT discovery payloads with Home Assistant's own schemas (run in HA's venv).

Usage: python ha_schema_check.py <discovery_prefix>. Reads a JSON list of [topic,
payload-text] on stdin; prints a JSON object topic → "ok" or
the problem. Does what Home Assistant 2024.3's ``mqtt/discovery.py`` does before a payload
reaches its platform (topic match, abbreviation expansion, origin schema), then the
platform's ``DISCOVERY_SCHEMA``. Keys the schema would silently drop (``REMOVE_EXTRA``) are
reported too: an off-spec key must fail here, not vanish. Device-based payloads
(``<prefix>/device/...``, Home Assistant 2024.11+) are checked against the documented rules.
"""

import importlib
import json
import sys

from homeassistant.components.mqtt.abbreviations import (
    ABBREVIATIONS,
    DEVICE_ABBREVIATIONS,
    ORIGIN_ABBREVIATIONS,
)
from homeassistant.components.mqtt.discovery import (
    MQTT_ORIGIN_INFO_SCHEMA,
    SUPPORTED_COMPONENTS,
    TOPIC_MATCHER,
)

DEVICE_ROOT_KEYS = {
    "dev",
    "device",
    "o",
    "origin",
    "cmps",
    "components",
    "state_topic",
    "stat_t",
    "command_topic",
    "cmd_t",
    "qos",
    "encoding",
    "e",
    "availability",
    "avty",
    "availability_topic",
    "avty_t",
    "availability_mode",
    "avty_mode",
    "payload_available",
    "pl_avail",
    "payload_not_available",
    "pl_not_avail",
}


def expand(payload):
    payload = {ABBREVIATIONS.get(k, k): v for k, v in payload.items()}
    if "device" in payload:
        payload["device"] = {
            DEVICE_ABBREVIATIONS.get(k, k): v for k, v in payload["device"].items()
        }
    if "origin" in payload:
        payload["origin"] = {
            ORIGIN_ABBREVIATIONS.get(k, k): v for k, v in payload["origin"].items()
        }
        MQTT_ORIGIN_INFO_SCHEMA(payload["origin"])
    if "availability" in payload:
        payload["availability"] = [
            {ABBREVIATIONS.get(k, k): v for k, v in a.items()} for a in payload["availability"]
        ]
    return payload


def check_platform(component, payload):
    module = importlib.import_module(f"homeassistant.components.mqtt.{component}")
    payload = expand(payload)
    if "object_id" in payload:
        raise ValueError("object_id is deprecated (HA 2025.10) and must not be sent")
    if not payload.get("unique_id"):
        raise ValueError("no unique_id")
    validated = module.DISCOVERY_SCHEMA(dict(payload))
    dropped = sorted(set(payload) - set(validated))
    if dropped:
        raise ValueError(f"keys the schema does not know (dropped): {dropped}")


def check_device(payload):
    extra = sorted(set(payload) - DEVICE_ROOT_KEYS)
    if extra:
        raise ValueError(f"root keys not allowed in a device payload: {extra}")
    dev = payload.get("dev") or payload.get("device") or {}
    if not (dev.get("ids") or dev.get("identifiers") or dev.get("cns")):
        raise ValueError("dev needs ids or cns")
    origin = payload.get("o") or payload.get("origin") or {}
    if not origin.get("name"):
        raise ValueError("o needs name")
    shared = {k: payload[k] for k in payload if k not in ("cmps", "components")}
    for key, cmp in (payload.get("cmps") or payload.get("components") or {}).items():
        cmp = dict(cmp)
        platform = cmp.pop("p", None) or cmp.pop("platform", None)
        if platform not in SUPPORTED_COMPONENTS:
            raise ValueError(f"{key}: platform {platform!r} not supported")
        merged = {**{k: v for k, v in shared.items() if k not in ("dev", "o")}, **cmp}
        merged["device"], merged["origin"] = dev, origin
        try:
            check_platform(platform, merged)
        except Exception as exc:
            raise ValueError(f"{key}: {exc}") from exc


def main():
    prefix = sys.argv[1]
    results = {}
    for topic, text in json.load(sys.stdin):
        try:
            payload = json.loads(text)
            if not topic.startswith(prefix + "/"):
                raise ValueError(f"not under the discovery prefix {prefix}")
            trimmed = topic[len(prefix) + 1 :]
            if trimmed.startswith("device/"):
                check_device(payload)
            else:
                match = TOPIC_MATCHER.match(trimmed)
                if not match:
                    raise ValueError("topic does not match Home Assistant's discovery pattern")
                component = match.group("component")
                if component not in SUPPORTED_COMPONENTS:
                    raise ValueError(f"component {component} not supported")
                check_platform(component, payload)
            results[topic] = "ok"
        except Exception as exc:  # every problem is reported, one line per payload
            results[topic] = f"{type(exc).__name__}: {exc}"
    json.dump(results, sys.stdout)


main()
