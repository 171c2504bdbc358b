"""The MQTT connection: paho-mqtt 2 behind a few calls that never block the caller.

paho's own network thread connects, reconnects with backoff (1 s doubling to 60 s) and keeps
the last will (``offline``, retained, on the availability topic). `MqttLink` says whether it
is connected, publishes only while it is (a message for a broker that is down is dropped: the
publisher re-sends the whole retained state on every connect) and hands connects and incoming
messages to callbacks on paho's thread. The password is handed to paho only; it is never in a
log line or an error.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

RECONNECT_MIN = 1.0
RECONNECT_MAX = 60.0
KEEPALIVE = 30


class MqttLink:
    """One broker connection for one picpipe process.

    ``on_connected`` runs on paho's thread after each (re)connect, once the subscriptions are
    sent; ``on_message`` gets (topic, payload) of the ``subscriptions``. Neither may block.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        will_topic: str,
        username: str | None = None,
        password: str | None = None,
        subscriptions: Sequence[str] = (),
        on_connected: Callable[[], None] = lambda: None,
        on_message: Callable[[str, bytes], None] = lambda _t, _p: None,
        reconnect_min: float = RECONNECT_MIN,
        reconnect_max: float = RECONNECT_MAX,
    ) -> None:
        self.host, self.port = host, port
        self.will_topic = will_topic
        self.subscriptions = tuple(subscriptions)
        self._on_connected = on_connected
        self._on_message = on_message
        self._connected = threading.Event()
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv311,
            reconnect_on_failure=True,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.will_set(will_topic, b"offline", qos=1, retain=True)
        self._client.reconnect_delay_set(int(reconnect_min), int(reconnect_max))
        self._client.on_connect = self._connect_done
        self._client.on_disconnect = self._disconnected
        self._client.on_message = self._message
        self._started = False
        self._closing = False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def start(self) -> None:
        """Connect in the background (an unreachable broker is retried, never raised)."""
        self._client.connect_async(self.host, self.port, keepalive=KEEPALIVE)
        self._client.loop_start()
        self._started = True

    def publish(self, topic: str, payload: bytes, *, retain: bool = True, qos: int = 0) -> bool:
        """Queue one message on paho's socket; False (dropped) when not connected."""
        if not self._connected.is_set():
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def close(self, *, last: Sequence[tuple[str, bytes]] = (), timeout: float = 1.0) -> None:
        """Publish ``last`` (retained, QoS 1) when connected, then disconnect cleanly.

        A clean disconnect suppresses the will, so ``last`` should say ``offline`` itself."""
        if not self._started:
            return
        if self._connected.is_set():
            infos = [self._client.publish(t, p, qos=1, retain=True) for t, p in last]
            deadline = time.monotonic() + timeout  # for all of them: close stays quick
            for info in infos:
                try:
                    info.wait_for_publish(timeout=max(deadline - time.monotonic(), 0.01))
                except (RuntimeError, ValueError):
                    break  # the connection went away meanwhile: the will says offline
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()
        self._started = False

    # -- paho's thread -------------------------------------------------------------------------

    def _connect_done(
        self,
        client: paho.Client,
        _userdata: object,
        _flags: paho.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning(
                "MQTT broker %s:%d refused the connection: %s", self.host, self.port, reason
            )
            return
        log.info("connected to the MQTT broker %s:%d", self.host, self.port)
        for topic in self.subscriptions:
            client.subscribe(topic, qos=0)
        self._connected.set()
        self._on_connected()

    def _disconnected(
        self,
        _client: paho.Client,
        _userdata: object,
        _flags: paho.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if self._connected.is_set() and not self._closing:
            log.warning(
                "lost the MQTT broker %s:%d (%s); reconnecting", self.host, self.port, reason
            )
        self._connected.clear()

    def _message(self, _client: paho.Client, _userdata: object, message: paho.MQTTMessage) -> None:
        self._on_message(message.topic, bytes(message.payload))


def client_id(node: str) -> str:
    """Unique per process: two picpipe processes must not take each other's session."""
    return f"picpipe-{node}-{os.getpid()}"[:64]
