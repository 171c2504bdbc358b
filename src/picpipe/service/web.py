"""The service's web server: `picpipe serve`'s application and uvicorn settings, in a thread.

The bind checks of `picpipe serve` run first (a reachable address needs a strong token),
and the socket is bound before the service reports ready, so a port in use is one line and
an exit, never a service that says it runs without its web UI.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import uvicorn

from picpipe.cli.serve import bind_listener, check_bind, serve_config

if TYPE_CHECKING:
    import socket

    from picpipe.config import Settings

log = logging.getLogger(__name__)


class _ThreadServer(uvicorn.Server):
    # Signals belong to the service's main thread; uvicorn must not take them over.
    def install_signal_handlers(self) -> None:
        return None


class WebThread:
    """uvicorn on a socket bound at construction; `start` serves, `stop` ends within ~3 s."""

    def __init__(self, settings: Settings, host: str, port: int, *, insecure: bool) -> None:
        check_bind(settings, host, insecure=insecure or settings.serve.insecure)
        self.listener: socket.socket = bind_listener(host, port)
        bound = self.listener.getsockname()
        shown = f"[{host}]" if ":" in host else host
        self.address = f"http://{shown}:{bound[1]}/"
        self.server = _ThreadServer(serve_config(settings, host, int(bound[1])))
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        def serve() -> None:
            try:
                self.server.run(sockets=[self.listener])
            except Exception:  # the web UI failing must not take the pipeline with it
                log.exception("the web server stopped")

        self._thread = threading.Thread(target=serve, name="web", daemon=True)
        self._thread.start()
        log.info("serving on %s", self.address)

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.listener.close()
