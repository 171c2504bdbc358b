"""Home Assistant over MQTT against the local Mosquitto: discovery, retained states, status
words through a run's events, buttons, re-publishing when Home Assistant comes online."""

from __future__ import annotations

import json
import time
from pathlib import Path

from picpipe.catalog.cards import begin_card_session, update_card_session
from picpipe.events import ItemDone, Progress, RunFinished, RunStarted
from picpipe.jobs.report import RunReport
from picpipe.jobs.workflows import thumbnails_run
from picpipe.service.mqtt_discovery import slug
from picpipe.sources.card_detect import CardIdentity
from tests.conftest import LibraryFixture
from tests.destinations.contract import photo
from tests.service.conftest import record

PHOTOS = 3


def photo_folder(tmp_path: Path, count: int = PHOTOS) -> Path:
    folder = tmp_path / "camera"
    folder.mkdir()
    for i in range(count):
        (folder / f"IMG_{i:04d}.JPG").write_bytes(photo(i + 1, 20_000))
    return folder


def test_discovery_availability_and_states_are_retained(
    sqlite_library: LibraryFixture, tmp_path: Path, make_publisher, broker, prefixes
) -> None:
    dp, tp = prefixes
    sqlite_library.import_folder(photo_folder(tmp_path), workers=2)
    thumbnails_run(sqlite_library.settings, sqlite_library.catalog, "pending", workers=1)
    publisher, _control = make_publisher(sqlite_library.settings)
    assert publisher.link.wait_connected(5)
    node = publisher.device.node
    # A subscriber that comes later gets everything from the broker's retained store.
    first = record(*broker, f"{tp}/#")
    first.wait_for(lambda: first.latest(f"{tp}/library") is not None)
    first.stop()
    rec = record(*broker, f"{dp}/#", f"{tp}/#")
    rec.wait_for(lambda: rec.latest(f"{tp}/image") is not None)

    assert rec.latest(f"{tp}/availability") == b"online"
    assert rec.latest(f"{tp}/status") == b"idle"  # a plain word, not JSON
    library = json.loads(rec.latest(f"{tp}/library") or b"{}")
    assert library["assets"] == PHOTOS
    assert library["bytes"] > 0
    assert library["below_target"] == PHOTOS  # no destination yet: one copy each
    assert (rec.latest(f"{tp}/image") or b"")[:2] == b"\xff\xd8"  # a JPEG

    status = json.loads(rec.latest(f"{dp}/sensor/{node}/status/config") or b"{}")
    assert status["unique_id"] == f"{node}_status"
    assert status["state_topic"] == f"{tp}/status"
    assert status["device"]["ids"] == [node]
    assert status["origin"]["name"] == "picpipe"
    assert status["availability"][0]["topic"] == f"{tp}/availability"
    configs = [m for m in rec.messages if m.topic.endswith("/config")]
    components = {m.topic.split("/")[1] for m in configs}
    assert components == {"sensor", "binary_sensor", "button", "image", "event"}
    for msg in configs:
        assert msg.retain, msg.topic
        payload = json.loads(msg.payload)
        assert "object_id" not in payload
        assert payload["unique_id"].startswith(f"{node}_")
    retained_states = [m for m in rec.messages if m.topic.startswith(f"{tp}/")]
    assert all(m.retain for m in retained_states)
    rec.stop()


def test_a_runs_events_move_the_status_to_completed_with_counts(
    sqlite_library: LibraryFixture, make_publisher, broker, prefixes
) -> None:
    _dp, tp = prefixes
    publisher, _ = make_publisher(sqlite_library.settings, progress_interval=0.05)
    assert publisher.link.wait_connected(5)
    rec = record(*broker, f"{tp}/status", f"{tp}/files", f"{tp}/progress", f"{tp}/current_file")
    rec.wait_for(lambda: rec.latest(f"{tp}/status") == b"idle")

    sink = publisher.sink
    sink(RunStarted(7, "import", "camera"))
    sink(Progress(7, "scan", 5))
    rec.wait_for(lambda: rec.latest(f"{tp}/status") == b"scanning")
    for i in range(5):
        sink(ItemDone(7, f"DCIM/IMG_{i}.JPG", "new", 1000))
    sink(Progress(7, "import", 5))
    rec.wait_for(lambda: rec.latest(f"{tp}/status") == b"importing")
    rec.wait_for(lambda: rec.latest(f"{tp}/current_file") == b"DCIM/IMG_4.JPG")
    report = RunReport("import", 7, "completed", {"seen": 5, "new": 5})
    sink(RunFinished(7, "import", "completed", report))
    rec.wait_for(lambda: rec.latest(f"{tp}/status") == b"completed")
    rec.wait_for(lambda: rec.latest(f"{tp}/progress") == b"100")

    words = [m.payload for m in rec.of(f"{tp}/status")]
    assert words.index(b"scanning") < words.index(b"importing") < words.index(b"completed")
    assert json.loads(rec.latest(f"{tp}/files") or b"") == {"done": 5, "total": 5}
    rec.stop()


def test_a_failed_sync_shows_failed_and_a_new_run_backing_up(
    sqlite_library: LibraryFixture, make_publisher, broker, prefixes
) -> None:
    _dp, tp = prefixes
    publisher, _ = make_publisher(sqlite_library.settings)
    assert publisher.link.wait_connected(5)
    rec = record(*broker, f"{tp}/status")
    publisher.sink(RunStarted(3, "sync", "nas"))
    rec.wait_for(lambda: rec.latest(f"{tp}/status") == b"backing_up")
    publisher.sink(RunFinished(3, "sync", "failed"))
    rec.wait_for(lambda: rec.latest(f"{tp}/status") == b"failed")
    rec.stop()


def test_a_real_import_publishes_its_files_and_the_new_totals(
    sqlite_library: LibraryFixture, tmp_path: Path, make_publisher, broker, prefixes
) -> None:
    _dp, tp = prefixes
    publisher, _ = make_publisher(sqlite_library.settings)
    assert publisher.link.wait_connected(5)
    rec = record(*broker, f"{tp}/#")
    rec.wait_for(lambda: rec.latest(f"{tp}/status") == b"idle")
    sqlite_library.run(sqlite_library.folder(photo_folder(tmp_path, 4)), sinks=[publisher.sink])
    rec.wait_for(lambda: rec.latest(f"{tp}/status") == b"completed")
    rec.wait_for(lambda: json.loads(rec.latest(f"{tp}/library") or b"{}").get("assets") == 4)
    assert json.loads(rec.latest(f"{tp}/files") or b"") == {"done": 4, "total": 4}
    last = json.loads(rec.latest(f"{tp}/last_session") or b"{}")
    assert (last["kind"], last["status"], last["new"]) == ("import", "completed", 4)
    rec.stop()


def test_buttons_arrive_as_service_requests(
    sqlite_library: LibraryFixture, make_publisher, broker, prefixes
) -> None:
    _dp, tp = prefixes
    publisher, control = make_publisher(sqlite_library.settings)
    assert publisher.link.wait_connected(5)
    rec = record(*broker, f"{tp}/status")
    rec.wait_for(lambda: rec.latest(f"{tp}/status") is not None)
    rec.publish(f"{tp}/command/sync_now", b"PRESS")
    rec.publish(f"{tp}/command/rescan", b"PRESS")
    rec.publish(f"{tp}/command/format_everything", b"PRESS")  # not a command: ignored
    rec.wait_for(lambda: len(control.requests) >= 2)
    time.sleep(0.2)
    assert control.requests == ["sync_now", "rescan"]
    rec.stop()


def test_home_assistant_coming_online_gets_discovery_and_states_again(
    sqlite_library: LibraryFixture, make_publisher, broker, prefixes
) -> None:
    dp, tp = prefixes
    publisher, _ = make_publisher(sqlite_library.settings)
    assert publisher.link.wait_connected(5)
    node = publisher.device.node
    config = f"{dp}/sensor/{node}/status/config"
    rec = record(*broker, f"{dp}/#", f"{tp}/#")
    rec.wait_for(lambda: rec.latest(f"{tp}/library") is not None)
    time.sleep(0.3)
    before = len(rec.of(config)), len(rec.of(f"{tp}/status"))
    rec.publish(f"{dp}/status", b"online")  # Home Assistant's birth message
    rec.wait_for(lambda: len(rec.of(config)) > before[0])
    rec.wait_for(lambda: len(rec.of(f"{tp}/status")) > before[1])
    again = rec.of(config)[-1]
    # Discovery first, then the states (Home Assistant subscribes to them after the config).
    assert again.at <= rec.of(f"{tp}/status")[-1].at
    rec.publish(f"{dp}/status", b"offline")
    time.sleep(0.3)
    assert len(rec.of(config)) == before[0] + 1
    rec.stop()


def test_progress_is_rate_limited_but_the_end_is_not(
    sqlite_library: LibraryFixture, make_publisher, broker, prefixes
) -> None:
    _dp, tp = prefixes
    publisher, _ = make_publisher(sqlite_library.settings, progress_interval=0.5)
    assert publisher.link.wait_connected(5)
    rec = record(*broker, f"{tp}/progress", f"{tp}/status")
    rec.wait_for(lambda: rec.latest(f"{tp}/status") == b"idle")
    publisher.sink(RunStarted(9, "import", "camera"))
    publisher.sink(Progress(9, "import", 400))
    started = time.monotonic()
    for i in range(400):
        publisher.sink(ItemDone(9, f"f{i}", "new", 1))
        time.sleep(0.003)
    elapsed = time.monotonic() - started
    publisher.sink(RunFinished(9, "import", "completed"))
    rec.wait_for(lambda: rec.latest(f"{tp}/progress") == b"100")
    changes = len(rec.of(f"{tp}/progress"))
    assert changes <= elapsed / 0.5 + 3, (changes, elapsed)
    assert changes >= 2
    rec.stop()


def test_a_card_that_becomes_safe_turns_its_sensor_on_and_fires_the_event(
    sqlite_library: LibraryFixture, make_publisher, broker, prefixes
) -> None:
    dp, tp = prefixes
    card = CardIdentity("EOS_DIGITAL", "1234-ABCD", 64 << 30, "folder", "vfat", "/media/EOS")
    with sqlite_library.catalog.write() as db:
        session_id, _ = begin_card_session(db, "cards", card)
        update_card_session(db, session_id, state="checking", files=412)
    publisher, _ = make_publisher(sqlite_library.settings)
    assert publisher.link.wait_connected(5)
    node, key = publisher.device.node, slug("EOS_DIGITAL_1234-ABCD")
    rec = record(*broker, f"{dp}/#", f"{tp}/#")
    rec.wait_for(lambda: rec.latest(f"{tp}/card/{key}") is not None)
    assert json.loads(rec.latest(f"{tp}/card/{key}") or b"")["safe"] is False
    sensor = json.loads(rec.latest(f"{dp}/binary_sensor/{node}/card_{key}_safe/config") or b"")
    assert sensor["state_topic"] == f"{tp}/card/{key}"

    with sqlite_library.catalog.write() as db:
        update_card_session(db, session_id, state="safe")
    publisher.refresh()
    rec.wait_for(lambda: rec.latest(f"{tp}/event/card_safe") is not None)
    state = json.loads(rec.latest(f"{tp}/card/{key}") or b"")
    assert (state["safe"], state["files"], state["label"]) == (True, 412, "EOS_DIGITAL")
    event = json.loads(rec.latest(f"{tp}/event/card_safe") or b"")
    assert event == {
        "event_type": "safe_to_format",
        "card": "EOS_DIGITAL",
        "uuid": "1234-ABCD",
        "files": 412,
    }
    assert not rec.of(f"{tp}/event/card_safe")[-1].retain  # an event is not a state
    publisher.refresh()
    time.sleep(0.3)
    assert len(rec.of(f"{tp}/event/card_safe")) == 1  # fired once, not on every refresh
    rec.stop()


def test_the_device_form_is_one_payload_with_every_component(
    sqlite_library: LibraryFixture, make_publisher, broker, prefixes
) -> None:
    dp, tp = prefixes
    publisher, _ = make_publisher(sqlite_library.settings.model_copy())
    assert publisher.link.wait_connected(5)
    publisher.close()
    settings = sqlite_library.settings.model_copy(
        update={"mqtt": publisher.options.model_copy(update={"discovery": "device"})}
    )
    from picpipe.service.mqtt import MqttPublisher
    from tests.service.conftest import ScriptedControl

    rec = record(*broker, f"{dp}/device/#")
    device = MqttPublisher(settings, settings.mqtt)  # type: ignore[arg-type]
    device.start(ScriptedControl(), __import__("threading").Event())
    try:
        topic = f"{dp}/device/{device.device.node}/config"
        rec.wait_for(lambda: rec.latest(topic) is not None)
        payload = json.loads(rec.latest(topic) or b"")
        assert set(payload) == {"dev", "o", "availability", "cmps"}
        assert payload["cmps"]["status"]["p"] == "sensor"
        assert payload["cmps"]["sync_now"]["command_topic"] == f"{tp}/command/sync_now"
        assert "object_id" not in json.dumps(payload)
    finally:
        device.close()
        rec.stop()


def test_close_leaves_offline_and_the_last_state_retained(
    sqlite_library: LibraryFixture, make_publisher, broker, prefixes
) -> None:
    _dp, tp = prefixes
    publisher, _ = make_publisher(sqlite_library.settings)
    assert publisher.link.wait_connected(5)
    publisher.sink(RunStarted(5, "sync", "nas"))
    started = time.monotonic()
    publisher.close()
    assert time.monotonic() - started < 2.5
    rec = record(*broker, f"{tp}/availability", f"{tp}/status")
    rec.wait_for(lambda: rec.latest(f"{tp}/availability") == b"offline")
    rec.wait_for(lambda: rec.latest(f"{tp}/status") == b"backing_up")
    assert all(m.retain for m in rec.messages)
    rec.stop()
