"""A broker that is down never slows the pipeline, and gets the latest state when it is back.

The test runs its own ``mosquitto`` on a free port, so it can stop and start it."""

from __future__ import annotations

import gc
import json
import threading
import time
import warnings

from picpipe.events import ItemDone, Progress, RunFinished, RunStarted
from picpipe.jobs.report import RunReport
from picpipe.service.mqtt import MqttPublisher
from tests.conftest import LibraryFixture
from tests.service.conftest import OwnBroker, ScriptedControl, mqtt_settings, record

EVENTS = 20_000
# Per event, what sink() may cost at most on a loaded 2-core machine (it measures ~5 µs).
SINK_BUDGET = 100e-6


def feed(publisher: MqttPublisher, run_id: int, files: int) -> float:
    """A run's events through the sink; the seconds sink() took in all."""
    started = time.perf_counter()
    publisher.sink(RunStarted(run_id, "import", "camera"))
    publisher.sink(Progress(run_id, "scan", files))
    for i in range(files):
        publisher.sink(ItemDone(run_id, f"DCIM/IMG_{i:05d}.JPG", "new", 4096))
    publisher.sink(Progress(run_id, "import", files))
    report = RunReport("import", run_id, "completed", {"seen": files, "new": files})
    publisher.sink(RunFinished(run_id, "import", "completed", report))
    return time.perf_counter() - started


def test_events_flow_at_full_speed_while_the_broker_is_down_and_the_state_follows(
    sqlite_library: LibraryFixture, own_broker: OwnBroker, prefixes
) -> None:
    _dp, tp = prefixes
    settings = mqtt_settings(sqlite_library.settings, "127.0.0.1", own_broker.port, prefixes)
    assert settings.mqtt is not None
    publisher = MqttPublisher(settings, settings.mqtt, reconnect_min=1.0)
    publisher.start(ScriptedControl(), threading.Event())
    try:
        assert publisher.link.wait_connected(5)
        up = feed(publisher, 1, EVENTS)  # broker up: the baseline
        own_broker.stop()
        time.sleep(0.3)
        assert not publisher.link.connected
        down = feed(publisher, 2, EVENTS)
        assert down / EVENTS < SINK_BUDGET, f"{down / EVENTS * 1e6:.1f} µs per event"
        assert down < 3 * up + 0.5, (up, down)  # no slower than with the broker up

        own_broker.start()
        assert publisher.link.wait_connected(10), "no reconnect within 10 s"
        rec = record("127.0.0.1", own_broker.port, f"{tp}/#")
        # The broker restarted without persistence: everything retained comes from picpipe.
        rec.wait_for(lambda: rec.latest(f"{tp}/status") == b"completed")
        rec.wait_for(lambda: rec.latest(f"{tp}/availability") == b"online")
        files = json.loads(rec.latest(f"{tp}/files") or b"{}")
        assert files == {"done": EVENTS, "total": EVENTS}
        rec.stop()
    finally:
        publisher.close()
        # paho drops the socket of a connection the broker closed without closing it; the
        # collector closes it here (a ResourceWarning) rather than during a later test.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def test_a_broker_that_never_answers_does_not_delay_start_or_close(
    sqlite_library: LibraryFixture, prefixes
) -> None:
    from tests.service.conftest import free_port

    settings = mqtt_settings(sqlite_library.settings, "127.0.0.1", free_port(), prefixes)
    assert settings.mqtt is not None
    publisher = MqttPublisher(settings, settings.mqtt)
    started = time.monotonic()
    publisher.start(ScriptedControl(), threading.Event())
    assert time.monotonic() - started < 1.0
    assert feed(publisher, 1, 1000) < 0.5
    started = time.monotonic()
    publisher.close()
    assert time.monotonic() - started < 2.0
