"""The components a configured service runs: metrics, and the MQTT publisher when ``mqtt:``
is set.

Each one is optional at install time: a module that is not there (a build without the MQTT
publisher) is no component, and a component whose factory fails is logged and left out, so
the pipeline runs without it.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from picpipe.config import Settings
    from picpipe.service.component import ServiceComponent

log = logging.getLogger(__name__)

# (settings attribute that enables it, None: always; module, factory): the factory takes the
# settings. The metrics component feeds the service's runs into its own `/metrics`.
KNOWN: tuple[tuple[str | None, str, str], ...] = (
    (None, "picpipe.integrations.metrics", "metrics_component"),
    ("mqtt", "picpipe.service.mqtt", "mqtt_component"),
)


def configured_components(settings: Settings) -> list[ServiceComponent]:
    """The components the config asks for, built; never raises."""
    found: list[ServiceComponent] = []
    for attribute, module_name, factory_name in KNOWN:
        if attribute is not None and getattr(settings, attribute, None) is None:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            log.warning("%s is configured but this picpipe has no %s", attribute, module_name)
            continue
        factory: Any = getattr(module, factory_name)
        try:
            found.append(factory(settings))
        except Exception:
            log.exception("%s could not be set up; the service runs without it", attribute)
    return found
