"""Home Assistant over MQTT: the service component that publishes picpipe's state.

``mqtt_component(settings)`` is what the service imports. The component's ``sink`` folds an
event into `LiveState` and wakes its own thread; that thread (never the run's) reads the
catalog after runs, renders the retained state topics and hands changed ones to the
`MqttLink`, progress at most once a second. On every connect, and a moment (with jitter)
after Home Assistant says ``online`` on ``<discovery_prefix>/status``, it sends discovery,
availability and every state again. Buttons come back as `ServiceControl.request` calls.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, get_args

from picpipe.catalog.browse import AssetFilter
from picpipe.catalog.db import open_catalog
from picpipe.catalog.service_status import service_snapshot
from picpipe.catalog.shuffle import Shuffle
from picpipe.errors import CatalogError
from picpipe.library.layout import thumb_path
from picpipe.service.component import Command
from picpipe.service.mqtt_discovery import (
    CARD_SAFE_EVENT,
    STATUS_WORDS,
    Device,
    Topics,
    discovery_messages,
    entities,
    slug,
)
from picpipe.service.mqtt_link import MqttLink, client_id
from picpipe.service.mqtt_state import PROGRESS_TOPICS, LiveState, SentState, render_snapshot

if TYPE_CHECKING:
    from picpipe.catalog.db import Catalog
    from picpipe.catalog.service_status import ServiceSnapshot
    from picpipe.config import MqttOptions, Settings
    from picpipe.events import Event
    from picpipe.service.component import ServiceComponent, ServiceControl

log = logging.getLogger(__name__)

COMMANDS: frozenset[str] = frozenset(get_args(Command))
PROGRESS_INTERVAL = 1.0  # seconds between two progress messages
REFRESH_INTERVAL = 60.0  # seconds between two catalog reads when nothing happens
IMAGE_INTERVAL = 300.0  # seconds between two photos on the image entity
REPUBLISH_JITTER = (0.5, 3.0)  # after Home Assistant's "online": spread many publishers out
ROUND_GAP = 0.1  # seconds: the shortest time between two publishing rounds
_EVENTS_KEPT = 32  # card events waiting for a broker; older ones are dropped


class MqttPublisher:
    """Publishes one picpipe to Home Assistant (a `ServiceComponent`)."""

    name = "mqtt"

    def __init__(
        self,
        settings: Settings,
        options: MqttOptions,
        *,
        catalog: Catalog | None = None,
        progress_interval: float = PROGRESS_INTERVAL,
        refresh_interval: float = REFRESH_INTERVAL,
        image_interval: float = IMAGE_INTERVAL,
        republish_jitter: tuple[float, float] = REPUBLISH_JITTER,
        reconnect_min: float = 1.0,
    ) -> None:
        self.settings = settings
        self.options = options
        self.topics = Topics(options.topic_prefix, options.discovery_prefix)
        self.device = Device(
            node=slug(options.topic_prefix), configuration_url=_dashboard(settings)
        )
        self.progress_interval = progress_interval
        self.refresh_interval = refresh_interval
        self.image_interval = image_interval
        self.republish_jitter = republish_jitter
        self.state = LiveState(on_change=self._wake)
        self._catalog = catalog
        self._own_catalog = catalog is None
        self._control: ServiceControl | None = None
        self._snapshot: ServiceSnapshot | None = None
        self._sent = SentState()
        self._rendered: tuple[ServiceSnapshot | None, dict[str, bytes]] | None = None
        self._events: deque[tuple[str, bytes]] = deque(maxlen=_EVENTS_KEPT)
        self._image: bytes | None = None
        self._image_at = -image_interval
        self._wakeup = threading.Condition()
        self._dirty = True
        self._refresh_wanted = True
        self._resend_all = False
        self._republish_at: float | None = None
        self._stop = threading.Event()
        self._last_round = 0.0
        self._thread: threading.Thread | None = None
        self.link = MqttLink(
            host=options.host,
            port=options.port,
            client_id=client_id(self.device.node),
            will_topic=self.topics.availability,
            username=options.username,
            password=options.password(),
            subscriptions=(self.topics.ha_status, self.topics.commands),
            on_connected=self._connected,
            on_message=self._message,
            reconnect_min=reconnect_min,
        )

    # -- ServiceComponent ----------------------------------------------------------------------

    def start(self, control: ServiceControl, stop: threading.Event) -> None:
        """Open the catalog, start the connection and the publishing thread; returns at once."""
        self._control = control
        word = control.status_word()
        if word in STATUS_WORDS:
            self.state.set_status(word)
        if self._catalog is None:
            self._catalog = open_catalog(self.settings.catalog_url)
        self._thread = threading.Thread(
            target=self._run, args=(stop,), name="mqtt-publisher", daemon=True
        )
        self._thread.start()
        self.link.start()

    def sink(self, event: Event) -> None:
        """Fold ``event`` into the state and wake the publisher; never blocks or raises."""
        try:
            self.state.apply(event)
        except Exception:  # the per-event boundary: a display bug must not stop a run
            log.exception("MQTT state: event %r not applied", type(event).__name__)

    def refresh(self) -> None:
        """Ask for a catalog read on the publisher's thread (returns at once)."""
        self._refresh_wanted = True
        self._wake()

    def close(self) -> None:
        """Send the last state and ``offline`` (retained), disconnect; within about 2 s."""
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        last = list(self.state.render(self.topics).items())
        self.link.close(last=[*last, (self.topics.availability, b"offline")])
        if self._own_catalog and self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    # -- the publisher's thread ----------------------------------------------------------------

    def _wake(self) -> None:
        with self._wakeup:
            self._dirty = True
            self._wakeup.notify()

    def _run(self, stop: threading.Event) -> None:
        wait: float | None = 0.0
        last_refresh = time.monotonic() - self.refresh_interval
        while not (stop.is_set() or self._stop.is_set()):
            try:
                wait, last_refresh = self._round(wait, last_refresh)
            except Exception:  # the component's boundary: a bug must not end the publishing
                log.exception("MQTT publisher: one round failed; going on")
                wait = 1.0

    def _round(self, wait: float | None, last_refresh: float) -> tuple[float | None, float]:
        """Wait for work (or ``wait`` seconds), read the catalog when due, publish."""
        # At most one round per ROUND_GAP: a run finishing 100 files a second wakes this
        # thread once per file, and each round costs the run's threads some GIL time.
        self._stop.wait(max(self._last_round + ROUND_GAP - time.monotonic(), 0.0))
        with self._wakeup:
            if not self._dirty:
                self._wakeup.wait(timeout=self.refresh_interval if wait is None else wait)
            self._dirty = False
        now = time.monotonic()
        if self._republish_at is not None and now >= self._republish_at:
            self._republish_at, self._resend_all = None, True
        if self.state.take_finished() or now - last_refresh >= self.refresh_interval:
            self._refresh_wanted = True
        if self._refresh_wanted:
            self._refresh_wanted, last_refresh = False, now
            self._read_catalog()
        wait = self._publish_due()
        self._last_round = time.monotonic()
        if self._republish_at is not None:
            until = max(self._republish_at - time.monotonic(), 0.0)
            wait = until if wait is None else min(wait, until)
        return wait, last_refresh

    def _read_catalog(self) -> None:
        assert self._catalog is not None
        try:
            with self._catalog.session() as db:
                snapshot = service_snapshot(
                    db, target=self.settings.replicas.target, sources=list(self.settings.sources)
                )
        except CatalogError as exc:
            log.warning("MQTT: catalog not read: %s", exc.message)
            return
        self._card_events(self._snapshot, snapshot)
        self._snapshot = snapshot
        if time.monotonic() - self._image_at >= self.image_interval:
            self._image_at = time.monotonic()
            self._image = self._next_photo() or self._image

    def _card_events(self, before: ServiceSnapshot | None, after: ServiceSnapshot) -> None:
        if before is None:  # at start: cards that were safe already are no news
            return
        was_safe = {card.session_id for card in before.cards if card.safe}
        for card in after.cards:
            if card.safe and card.session_id not in was_safe:
                event = {
                    "event_type": CARD_SAFE_EVENT,
                    "card": card.label,
                    "uuid": card.uuid,
                    "files": card.files,
                }
                self._events.append(
                    (self.topics.state("event/card_safe"), json.dumps(event).encode())
                )

    def _next_photo(self) -> bytes | None:
        """The medium thumbnail of the next photo in Home Assistant's own shuffle (the one
        the kiosk draws from), or None when there is none or it cannot be read."""
        assert self._catalog is not None
        where = AssetFilter(photos_only=True)
        try:
            with self._catalog.session() as db:
                now = datetime.now(UTC).replace(tzinfo=None)
                asset = Shuffle("homeassistant", where).pick(db, now=now)
                sha = asset.sha256 if asset is not None else None
        except CatalogError as exc:
            log.warning("MQTT: no photo picked: %s", exc.message)
            return None
        if sha is None:
            return None
        ext = "webp" if self.settings.thumbs.format == "webp" else "jpg"
        try:
            return (self.settings.home_root / thumb_path(sha, "medium", ext)).read_bytes()
        except OSError as exc:
            log.warning("MQTT: thumbnail of %s not read: %s", sha[:12], exc.strerror)
            return None

    def _wanted(self) -> dict[str, bytes]:
        """Discovery, then availability, then the states: the order Home Assistant needs.

        Discovery and the catalog's states are rendered once per catalog read (they change
        only then); only the few event-driven topics are rendered every round."""
        if self._rendered is None or self._rendered[0] is not self._snapshot:
            self._rendered = (self._snapshot, self._render_catalog_side(self._snapshot))
        wanted = dict(self._rendered[1])
        wanted |= self.state.render(self.topics)
        if self._image is not None:
            wanted[self.topics.state("image")] = self._image
        return wanted

    def _render_catalog_side(self, snap: ServiceSnapshot | None) -> dict[str, bytes]:
        items = entities(
            self.topics,
            destinations=[d.name for d in snap.destinations] if snap else [],
            sources=[s.name for s in snap.sources] if snap else list(self.settings.sources),
            cards=[(c.key, c.label) for c in snap.cards] if snap else [],
            image_type=f"image/{self.settings.thumbs.format}",
        )
        out = dict(discovery_messages(self.options.discovery, self.topics, self.device, items))
        out[self.topics.availability] = b"online"
        if snap is not None:
            out |= render_snapshot(self.topics, snap)
        return out

    def _publish_due(self) -> float | None:
        if not self.link.connected:
            return None
        if self._resend_all:
            self._resend_all = False
            self._sent.clear()
        throttled = frozenset(
            self.topics.state(name) for name in PROGRESS_TOPICS if self.state.busy
        )
        send, wait = self._sent.due(
            self._wanted(), throttled=throttled, interval=self.progress_interval
        )
        published = {t: p for t, p in send.items() if self.link.publish(t, p, retain=True)}
        self._sent.mark(published)
        while self._events and self.link.connected:
            topic, payload = self._events.popleft()
            self.link.publish(topic, payload, retain=False)
        return wait

    # -- paho's thread -------------------------------------------------------------------------

    def _connected(self) -> None:
        # A new broker session may have lost everything (a restarted broker without
        # persistence): send the whole state again.
        self._resend_all = True
        self._wake()

    def _message(self, topic: str, payload: bytes) -> None:
        if topic == self.topics.ha_status:
            if payload.strip().lower() == b"online":
                self._republish_at = time.monotonic() + random.uniform(*self.republish_jitter)
                self._wake()
            return
        command = topic.rpartition("/")[2]
        if command in COMMANDS and self._control is not None:
            log.info("Home Assistant asked for %s", command)
            self._control.request(command)  # type: ignore[arg-type]  # checked in COMMANDS


def _dashboard(settings: Settings) -> str | None:
    host = settings.serve.host
    if host in ("0.0.0.0", "::"):  # a bind address: show this machine's name instead
        host = settings.runs.host
    return f"http://{host}:{settings.serve.port}/"


def mqtt_component(settings: Settings) -> ServiceComponent:
    """The MQTT publisher for ``settings.mqtt``; ConfigError when the section is missing."""
    from picpipe.errors import ConfigError

    if settings.mqtt is None:
        raise ConfigError(detail="mqtt: not configured (add an mqtt: section with its host)")
    return MqttPublisher(settings, settings.mqtt)


__all__ = ["MqttPublisher", "mqtt_component"]
