"""A real Home Assistant core (2024.3.3), started headless against the local Mosquitto, shows
picpipe's entities with the states picpipe published.

Home Assistant's states are read back over MQTT through its ``mqtt_statestream`` (no token
needed). Slow: Home Assistant takes 20-60 s to start (minutes the first time, when
scripts/ha-venv --core installs what it needs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from picpipe.events import ItemDone, Progress, RunFinished, RunStarted
from picpipe.jobs.report import RunReport
from tests.conftest import LibraryFixture, missing
from tests.service.conftest import HA_VENV, REAL_HOME, ROOT, clear_retained, record

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

STARTUP = 240.0  # seconds Home Assistant may take to send its birth message


def config_dir(root: Path, prefix: str) -> Path:
    """A Home Assistant config: the MQTT entry with discovery under ``prefix`` and a state
    stream of every entity to ``<prefix>state/<domain>/<object id>/state``."""
    config = root / "ha"
    (config / ".storage").mkdir(parents=True)
    (config / "configuration.yaml").write_text(
        "homeassistant:\n  name: picpipe test\n  time_zone: UTC\n  unit_system: metric\n"
        "  latitude: 0\n  longitude: 0\n  elevation: 0\n"
        f"mqtt_statestream:\n  base_topic: {prefix}state\n"
        "logger:\n  default: warning\n  logs:\n    homeassistant.components.mqtt: info\n"
    )
    message = {"topic": f"{prefix}/status", "qos": 0, "retain": False}
    entry = {
        "entry_id": uuid.uuid4().hex,
        "version": 1,
        "minor_version": 1,
        "domain": "mqtt",
        "title": "127.0.0.1",
        "data": {
            "broker": "127.0.0.1",
            "port": 1883,
            "discovery": True,
            "discovery_prefix": prefix,
            "birth_message": message | {"payload": "online"},
            "will_message": message | {"payload": "offline"},
        },
        "options": {},
        "pref_disable_new_entities": False,
        "pref_disable_polling": False,
        "source": "user",
        "unique_id": None,
        "disabled_by": None,
    }
    store = {"version": 1, "minor_version": 2, "key": "core.config_entries"}
    store["data"] = {"entries": [entry]}
    (config / ".storage" / "core.config_entries").write_text(json.dumps(store))
    return config


@pytest.fixture
def hass_core(tmp_path: Path, broker, prefixes) -> Iterator[str]:
    """Home Assistant running with discovery under this test's prefix; yields that prefix."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICPIPE_")}
    env["HOME"] = REAL_HOME
    if HA_VENV:
        env["PICPIPE_HA_VENV"] = HA_VENV
    made = subprocess.run(
        ["bash", str(ROOT / "scripts" / "ha-venv"), "--core"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        check=False,
    )
    if made.returncode != 0:
        missing(f"Home Assistant core could not be installed: {made.stderr[-400:]}")
    hass = Path(made.stdout.strip().splitlines()[-1]).with_name("hass")
    dp, _tp = prefixes
    config = config_dir(tmp_path, dp)
    birth = record(*broker, f"{dp}/status")
    env["PIP_CONSTRAINT"] = ""
    log = (tmp_path / "hass.log").open("wb")
    process = subprocess.Popen(
        [str(hass), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    try:
        birth.wait_for(lambda: birth.latest(f"{dp}/status") == b"online", timeout=STARTUP)
        birth.stop()
        yield dp
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        clear_retained(*broker, f"{dp}state")


def test_home_assistant_shows_the_entities_with_the_published_states(
    sqlite_library: LibraryFixture, hass_core: str, make_publisher, broker, prefixes
) -> None:
    dp, _tp = prefixes
    assert hass_core == dp
    states = record(*broker, f"{dp}state/#")
    publisher, _control = make_publisher(sqlite_library.settings)
    assert publisher.link.wait_connected(5)

    def state(entity: str) -> str | None:
        value = states.latest(f"{dp}state/{entity.replace('.', '/')}/state")
        return value.decode() if value is not None else None

    # Discovered, subscribed, and the retained states read: the sensors show them.
    states.wait_for(lambda: state("sensor.picpipe_status") == "idle", timeout=30)
    publisher.sink(RunStarted(1, "import", "camera"))
    publisher.sink(Progress(1, "scan", 412))
    for i in range(412):
        publisher.sink(ItemDone(1, f"DCIM/IMG_{i:04d}.JPG", "new", 1000))
    report = RunReport("import", 1, "completed", {"seen": 412, "new": 412})
    publisher.sink(RunFinished(1, "import", "completed", report))
    states.wait_for(lambda: state("sensor.picpipe_status") == "completed", timeout=30)
    states.wait_for(lambda: state("sensor.picpipe_files_done") == "412", timeout=30)
    assert state("sensor.picpipe_files_total") == "412"
    assert state("sensor.picpipe_progress") == "100"
    assert state("sensor.picpipe_library_assets") == "0"
    for entity in ("button.picpipe_sync_now", "button.picpipe_rescan", "image.picpipe_photo"):
        assert state(entity) is not None, entity  # known to Home Assistant
    assert state("event.picpipe_card_safe_to_format") is not None
    states.stop()
