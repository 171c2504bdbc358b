"""`serve`: the HTTP API, photo serving and the pages, with uvicorn."""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import socket

import typer
import uvicorn

from picpipe.config import Settings
from picpipe.errors import ServeRefused

log = logging.getLogger(__name__)
MIN_TOKEN_CHARS = 16  # below this a token is guessable enough to warn about


def register(app: typer.Typer) -> None:
    # Imported here, not at the top: tests import this module without the CLI root first.
    from picpipe.cli.app import reports_errors

    app.command("serve")(reports_errors(serve))


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(
        None, "--host", help="Address to listen on (default serve.host, 127.0.0.1)."
    ),
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="Port (default serve.port, 8080)."
    ),
    insecure_open: bool = typer.Option(
        False,
        "--insecure-open",
        "--insecure",
        help="Allow listening beyond this machine without a strong token (trusted networks "
        "only; --insecure is the older name).",
    ),
) -> None:
    """Serve the library over HTTP: random photos for dashboards, the JSON API and the pages.

    Refuses (exit 4) to listen on an address other machines can reach unless a token of at
    least 16 characters guards it (serve.token / serve.read_token) or --insecure-open is given.
    An open server on loopback starts with one warning line.
    """
    from picpipe.cli.app import console, state

    settings = state(ctx).settings
    bind_host = host or settings.serve.host
    bind_port = port or settings.serve.port
    check_bind(settings, bind_host, insecure=insecure_open or settings.serve.insecure)
    refuse_unmounted_library(settings)
    # Bound first, before any warning or "serving": a port in use is one line and exit 4.
    listener = bind_listener(bind_host, bind_port)
    for name, secret in (
        ("token", settings.serve.token),
        ("read_token", settings.serve.read_token),
    ):
        if secret is not None and len(secret.get_secret_value()) < MIN_TOKEN_CHARS:
            log.warning(
                "serve.%s is shorter than %d characters; a random one is safer "
                "(e.g. `openssl rand -hex 32`)",
                name,
                MIN_TOKEN_CHARS,
            )
    if is_open(settings) and is_loopback(bind_host):
        from picpipe.web.auth import OPEN_WARNING  # the web stack loads only to serve

        log.warning(OPEN_WARNING)
    config = serve_config(settings, bind_host, bind_port)
    shown = f"[{bind_host}]" if ":" in bind_host else bind_host
    console.print(f"picpipe serving on http://{shown}:{bind_port}/  (Ctrl+C to stop)")
    try:
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        listener.close()


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or ServeRefused naming why it cannot be had."""
    try:
        infos = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ServeRefused(detail=f"cannot resolve {host}: {exc.strerror}") from None
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        hint = (
            "; another program (or picpipe serve) uses it: stop it or choose --port"
            if exc.errno == errno.EADDRINUSE
            else ""
        )
        raise ServeRefused(detail=f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    sock.set_inheritable(True)
    return sock


def refuse_unmounted_library(settings: Settings) -> None:
    """Exit 6 with one line when the catalog knows a library that is not there (a NAS not
    mounted: the folder missing, or an empty mount point), as import and sync do. Reads only.

    Once serving, ``/health`` says the same (503) if the library goes away.
    """
    from picpipe.catalog.db import open_catalog
    from picpipe.library.marker import refuse_missing_library

    catalog = open_catalog(settings.catalog_url)
    try:
        refuse_missing_library(settings.library_root, catalog)
    finally:
        catalog.close()


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything: treat it as reachable


def is_open(settings: Settings) -> bool:
    """True when neither token is configured (blank tokens are no tokens, see config)."""
    return settings.serve.token is None and settings.serve.read_token is None


def weak_tokens(settings: Settings) -> list[str]:
    """The configured token settings shorter than `MIN_TOKEN_CHARS`."""
    return [
        f"serve.{name}"
        for name, secret in (
            ("token", settings.serve.token),
            ("read_token", settings.serve.read_token),
        )
        if secret is not None and len(secret.get_secret_value()) < MIN_TOKEN_CHARS
    ]


def check_bind(settings: Settings, host: str, *, insecure: bool) -> None:
    """Raise ServeRefused when ``host`` is reachable from other machines and no strong token
    guards it: none configured, or one shorter than 16 characters (guessable online).

    Either token counts: with only a read token configured every request still needs one.
    ``insecure`` (``--insecure-open`` / ``serve.insecure``) allows it with one warning.
    """
    if is_loopback(host):
        return
    weak = weak_tokens(settings)
    if not is_open(settings) and not weak:
        return
    if insecure:
        log.warning(
            "serving on %s without a strong token: anyone who can reach it may read the "
            "library (--insecure-open)",
            host,
        )
        return
    if weak:
        verb = "is" if len(weak) == 1 else "are"
        reason = f"{' and '.join(weak)} {verb} shorter than {MIN_TOKEN_CHARS} characters"
    else:
        reason = "no token is configured"
    raise ServeRefused(
        detail=(
            f"{host} can be reached from other machines and {reason}; set serve.token "
            "(PICPIPE_SERVE__TOKEN, e.g. `openssl rand -hex 32`), "
            "or pass --insecure-open on a trusted network"
        )
    )


def serve_config(settings: Settings, host: str, port: int) -> uvicorn.Config:
    """The uvicorn configuration for ``picpipe serve`` (the one place its options live).

    The application is built by uvicorn on start (``factory``), so its catalog and media
    server belong to the serving process. uvicorn keeps its hands off logging: picpipe's
    own setup already routes records to stderr.
    """
    from picpipe.web.app import create_app
    from picpipe.web.server import LimitedHttpProtocol

    return uvicorn.Config(
        functools.partial(create_app, settings),
        factory=True,
        http=LimitedHttpProtocol,  # request heads beyond 16 KB a field / 64 KB get 431
        host=host,
        port=port,
        log_config=None,
        access_log=logging.getLogger().isEnabledFor(logging.DEBUG),
        server_header=False,
        proxy_headers=True,  # X-Forwarded-Proto from a local front (nginx) marks HTTPS cookies
        forwarded_allow_ips="127.0.0.1",
        # Open dashboards hold server-sent-event streams; without a limit a stop would wait
        # for each of them to end on its own (minutes).
        timeout_graceful_shutdown=3,
    )
