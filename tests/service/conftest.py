"""MQTT test helpers: the local Mosquitto, a broker of the test's own, a recording subscriber,
a scripted service control, and Home Assistant's venv for its schemas."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from picpipe.config import MqttOptions, Settings
from picpipe.service.component import Command
from picpipe.service.mqtt import MqttPublisher
from tests.conftest import missing

ROOT = Path(__file__).resolve().parents[2]
LOCAL_BROKER = ("127.0.0.1", 1883)
# Read at import, before the autouse fixture points HOME into a temp folder: Home Assistant's
# venv is cached under the real ~/.cache (or PICPIPE_HA_VENV) across test sessions.
REAL_HOME = os.environ.get("HOME", str(Path("~").expanduser()))
HA_VENV = os.environ.get("PICPIPE_HA_VENV")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def broker() -> tuple[str, int]:
    """The machine's Mosquitto on 127.0.0.1:1883."""
    if not port_open(*LOCAL_BROKER):
        missing("no MQTT broker on 127.0.0.1:1883")
    return LOCAL_BROKER


@pytest.fixture
def prefixes() -> tuple[str, str]:
    """A (discovery_prefix, topic_prefix) pair no other test uses on the shared broker."""
    unique = uuid.uuid4().hex[:10]
    return f"hatest_{unique}", f"pp_{unique}"


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    at: float


@dataclass
class Recorder:
    """A subscriber that keeps every message it gets."""

    host: str
    port: int
    topics: tuple[str, ...]
    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"rec-{uuid.uuid4().hex}")
        self._subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: [c.subscribe(t) for t in self.topics]
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_message(self, _c: object, _u: object, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(
                Message(msg.topic, bytes(msg.payload), msg.retain, time.monotonic())
            )

    def start(self) -> Recorder:
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "subscriber got no SUBACK"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def latest(self, topic: str) -> bytes | None:
        with self.lock:
            for msg in reversed(self.messages):
                if msg.topic == topic:
                    return msg.payload
        return None

    def of(self, topic: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, check: Callable[[], object], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.02)
        raise AssertionError(f"condition not met within {timeout}s")

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, retain=retain).wait_for_publish(5)


def record(host: str, port: int, *topics: str) -> Recorder:
    return Recorder(host, port, topics).start()


def clear_retained(host: str, port: int, *prefixes: str) -> None:
    """Remove what a test left retained under ``prefixes`` on the shared broker."""
    seen = Recorder(host, port, tuple(f"{p}/#" for p in prefixes)).start()
    time.sleep(0.3)
    for topic in {m.topic for m in seen.messages if m.retain}:
        seen.publish(topic, b"", retain=True)
    seen.stop()


@dataclass
class ScriptedControl:
    """A ServiceControl that records what was asked of it."""

    word: str = "idle"
    requests: list[Command] = field(default_factory=list)

    def request(self, command: Command) -> None:
        self.requests.append(command)

    def status_word(self) -> str:
        return self.word


def mqtt_settings(
    settings: Settings, host: str, port: int, prefixes: tuple[str, str], **extra: object
) -> Settings:
    options = MqttOptions(
        host=host,
        port=port,
        discovery_prefix=prefixes[0],
        topic_prefix=prefixes[1],
        **extra,  # type: ignore[arg-type]
    )
    return settings.model_copy(update={"mqtt": options})


@pytest.fixture
def make_publisher(
    broker: tuple[str, int], prefixes: tuple[str, str]
) -> Iterator[Callable[..., tuple[MqttPublisher, ScriptedControl]]]:
    """Starts publishers on the local broker (fast intervals) and closes them afterwards."""
    started: list[MqttPublisher] = []

    def make(settings: Settings, **kwargs: object) -> tuple[MqttPublisher, ScriptedControl]:
        settings = mqtt_settings(settings, *broker, prefixes)
        assert settings.mqtt is not None
        kwargs.setdefault("republish_jitter", (0.05, 0.1))
        publisher = MqttPublisher(settings, settings.mqtt, **kwargs)  # type: ignore[arg-type]
        control = ScriptedControl()
        publisher.start(control, threading.Event())
        started.append(publisher)
        return publisher, control

    yield make
    for publisher in started:
        publisher.close()
    clear_retained(*broker, *prefixes)


# -- a broker of the test's own ------------------------------------------------------------


# As root, mosquitto drops to its own user, who cannot read the test's private temp folder.
BROKER_COMMON = "persistence false\n" + ("user root\n" if os.geteuid() == 0 else "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OwnBroker:
    """``mosquitto -p PORT`` that the test starts and stops."""

    port: int
    config: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while not port_open("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise AssertionError("mosquitto did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
            self.process.wait(timeout=5)
            self.process = None


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[OwnBroker]:
    if shutil.which("mosquitto") is None:
        missing("mosquitto is not installed")
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n{BROKER_COMMON}")
    own = OwnBroker(port, config)
    own.start()
    yield own
    own.stop()


# -- Home Assistant's schemas ------------------------------------------------------------------


@pytest.fixture(scope="session")
def ha_python() -> str:
    """The python of a venv with homeassistant==2024.3.3 (made once by scripts/ha-venv)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICPIPE_")}
    env["HOME"] = REAL_HOME
    if HA_VENV:
        env["PICPIPE_HA_VENV"] = HA_VENV
    try:
        made = subprocess.run(
            ["bash", str(ROOT / "scripts" / "ha-venv")],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
        )
    except subprocess.TimeoutExpired:
        missing("Home Assistant's venv could not be made in 15 minutes")
    if made.returncode != 0:
        missing(f"Home Assistant's venv could not be made: {made.stderr[-500:]}")
    return made.stdout.strip().splitlines()[-1]


def ha_check(
    python: str, discovery_prefix: str, messages: list[tuple[str, bytes]]
) -> dict[str, str]:
    """topic → "ok" or Home Assistant's complaint, for every discovery message."""
    data = json.dumps([[t, p.decode()] for t, p in messages])
    done = subprocess.run(
        [python, str(Path(__file__).with_name("ha_schema_check.py")), discovery_prefix],
        input=data,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, str] = json.loads(done.stdout)
    return result
