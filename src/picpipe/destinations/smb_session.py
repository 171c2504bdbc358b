"""SMB connections for one ``smb`` destination: a pool of lanes, login, timeouts, error mapping.

A lane is one SMB connection with its session and share (tree) connected, used by one thread at
a time; each lane hands smbclient a connection cache that holds only itself. Why not smbclient's
own pool: it is keyed by server and port and picks a session by user name alone, so two
destinations on one server would share sessions (a guest destination could ride on another's
login), and smbprotocol's credit accounting fails when several threads send on one connection
("requires N credits but only M are available"). A lane that broke is dropped; the next call
connects afresh, so a restarted server is picked up without restarting picpipe.
"""

from __future__ import annotations

import threading
import uuid
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from smbprotocol.connection import Connection
from smbprotocol.exceptions import (
    SMBAuthenticationError,
    SMBException,
    SMBOSError,
    SMBResponseException,
)
from smbprotocol.header import NtStatus
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

from picpipe.destinations.base import resolve_secret
from picpipe.errors import (
    DestinationAuthFailed,
    DestinationError,
    DestinationMisconfigured,
    DestinationRejected,
    DestinationUnavailable,
    PicpipeError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from picpipe.destinations.smb import SmbOptions

GUEST = "guest"  # Samba maps it to its guest account; Windows and NAS boxes call it "Guest"

# NTSTATUS codes by what they mean here (smbprotocol names only some of them).
MISSING = {0xC0000034, 0xC000003A, 0xC0000225, 0xC000000F}  # name/path not found, no such file
_LOGIN_REFUSED = {
    0xC000006D: "STATUS_LOGON_FAILURE",
    0xC000006A: "STATUS_WRONG_PASSWORD",
    0xC0000071: "STATUS_PASSWORD_EXPIRED",
    0xC0000224: "STATUS_PASSWORD_MUST_CHANGE",
    0xC0000072: "STATUS_ACCOUNT_DISABLED",
    0xC0000193: "STATUS_ACCOUNT_EXPIRED",
    0xC0000234: "STATUS_ACCOUNT_LOCKED_OUT",
    0xC000006E: "STATUS_ACCOUNT_RESTRICTION",
}
_FULL = {0xC000007F: "STATUS_DISK_FULL", 0xC0000044: "STATUS_QUOTA_EXCEEDED"}
_BAD_NAME = {
    0xC0000033: "STATUS_OBJECT_NAME_INVALID",
    0xC0000039: "STATUS_OBJECT_PATH_INVALID",
    0xC000003B: "STATUS_OBJECT_PATH_SYNTAX_BAD",
    0xC0000106: "STATUS_NAME_TOO_LONG",
}
_DENIED = {
    0xC0000022: "STATUS_ACCESS_DENIED",
    0xC00000A2: "STATUS_MEDIA_WRITE_PROTECTED",
    0xC00000BA: "STATUS_FILE_IS_A_DIRECTORY",
    0xC0000103: "STATUS_NOT_A_DIRECTORY",
}
# Network name deleted, user session deleted, session expired: the lane's login is gone.
_SESSION_GONE = {0xC00000C9, 0xC0000203, 0xC000035C}


@dataclass
class _Lane:
    connection: Any  # smbprotocol Connection
    kwargs: dict[str, Any]  # for smbclient calls: this lane's own cache, port and login

    @property
    def healthy(self) -> bool:
        return bool(self.connection.transport.connected)


class LanePool:
    """The SMB connections of one destination; `using` lends one to a call.

    Every SMB, socket and connect error leaving `using` is a picpipe `DestinationError`.
    """

    def __init__(self, destination: str, options: SmbOptions) -> None:
        self.destination = destination
        self.options = options
        self.unc = rf"\\{options.server}\{options.share}"
        self._where = f"{options.server}:{options.port}"
        self._idle: list[_Lane] = []
        self._lock = threading.Lock()
        self._credentials: tuple[str, str] | None = None

    @contextmanager
    def using(self, key: str | None) -> Iterator[dict[str, Any]]:
        """Keyword arguments for smbclient calls on a lane this thread has to itself.

        SMB errors become picpipe errors (naming ``key``); a lane that broke is dropped.
        """
        lane = self._acquire()
        try:
            yield lane.kwargs
        except (PicpipeError, GeneratorExit):
            self._release(lane)
            raise
        except (SMBException, OSError, ValueError) as exc:
            status = status_of(exc)
            self._release(lane, broken=status is None or status in _SESSION_GONE)
            raise self.error(exc, key) from exc
        except BaseException:
            self._release(lane, broken=True)
            raise
        self._release(lane)

    def login(self) -> tuple[str, str]:
        """(user, password) for sessions, resolved once (config, env or file); guest if unset."""
        if self._credentials is None:
            opts = self.options
            if opts.username is None:
                self._credentials = (GUEST, "")
            else:
                secret = resolve_secret(
                    self.destination,
                    "password",
                    opts.password,
                    opts.password_env,
                    opts.password_file,
                )
                user = f"{opts.domain}\\{opts.username}" if opts.domain else opts.username
                self._credentials = (user, secret or "")
        return self._credentials

    def close(self) -> None:
        """Log off and close the idle lanes; lanes in use close when they come back broken."""
        with self._lock:
            lanes, self._idle = self._idle, []
        for lane in lanes:
            _disconnect(lane.connection, polite=True)

    def error(
        self, exc: BaseException, key: str | None, *, connecting: bool = False
    ) -> DestinationError:
        """The picpipe error for an smbprotocol, socket or connect error (never a secret)."""
        name, where = self.destination, self._where
        status = status_of(exc)
        if status is None:
            text = str(exc)
            if isinstance(exc, SMBAuthenticationError):
                return DestinationAuthFailed(
                    destination=name, detail="the server refused the login"
                )
            if "authenticated as a guest" in text:
                return DestinationAuthFailed(
                    destination=name,
                    detail=f"the server takes {self.login()[0]!r} for a guest (unknown user?)",
                )
            if "encryption is required" in text:
                return DestinationMisconfigured(
                    destination=name, detail=f"{where} does not offer SMB3 encryption (encrypt)"
                )
            reason = getattr(exc, "strerror", None) or text or type(exc).__name__
            return DestinationUnavailable(destination=name, detail=f"{where}: {reason}")
        status_name = _status_name(status)
        if status in _LOGIN_REFUSED:
            user = self.login()[0]
            return DestinationAuthFailed(destination=name, detail=f"{status_name} for {user!r}")
        if status == NtStatus.STATUS_BAD_NETWORK_NAME:
            detail = f"share {self.options.share!r} does not exist on {where}"
            return DestinationMisconfigured(destination=name, detail=detail)
        if connecting and status in _DENIED:
            detail = f"{self.login()[0]!r} may not use share {self.options.share!r} ({status_name})"
            return DestinationAuthFailed(destination=name, detail=detail)
        what = key or self.options.share
        for table, reason in (
            (_FULL, "no space left"),
            (_DENIED, "not writable"),
            (_BAD_NAME, "name not accepted"),
        ):
            if status in table:
                return DestinationRejected(
                    destination=name, key=what, detail=f"{reason} ({status_name})"
                )
        return DestinationUnavailable(destination=name, detail=f"{where}: {status_name}")

    # -- helpers ---------------------------------------------------------------------------

    def _acquire(self) -> _Lane:
        stale: list[_Lane] = []
        lane = None
        with self._lock:
            while self._idle and lane is None:
                candidate = self._idle.pop()
                if candidate.healthy:
                    lane = candidate
                else:  # the server closed it while idle (restart, idle timeout)
                    stale.append(candidate)
        for old in stale:
            _disconnect(old.connection, polite=False)
        return lane or self._connect()

    def _release(self, lane: _Lane, *, broken: bool = False) -> None:
        if broken or not lane.healthy:
            _disconnect(lane.connection, polite=False)
            return
        with self._lock:
            self._idle.append(lane)

    def _connect(self) -> _Lane:
        """A new lane: TCP connect, negotiate, log in, connect the share."""
        user, password = self.login()
        opts = self.options
        guest = user == GUEST
        connection = Connection(uuid.uuid4(), opts.server, opts.port, require_signing=not guest)
        # smbprotocol's receive thread sends an echo after this much silence and drops the
        # connection when that echo goes unanswered too: a stall fails calls after `timeout`.
        connection._receive_timeout = max(1.0, opts.timeout / 2)
        try:
            connection.connect(timeout=opts.connection_timeout)
            # Sends block without a timeout otherwise: a server that stopped reading would hang
            # the sender (and the receive thread, which needs the socket lock to close).
            connection.transport._sock.settimeout(opts.timeout)
            session = Session(connection, user, password, require_encryption=opts.encrypt)
            session.connect()
            # A guest session has no key to check the negotiation with; users' sessions do.
            TreeConnect(session, self.unc).connect(require_secure_negotiate=not guest)
        except BaseException as exc:
            _disconnect(connection, polite=False)
            if isinstance(exc, Exception):
                raise self.error(exc, None, connecting=True) from exc
            raise
        kwargs = {
            "port": opts.port,
            "username": user,
            "password": password,  # only if smbclient reconnects a lane by itself
            "require_signing": not guest,
            "connection_cache": {f"{opts.server.lower()}:{opts.port}": connection},
        }
        return _Lane(connection, kwargs)


def status_of(exc: BaseException) -> int | None:
    """The NTSTATUS a server answered with, or None (socket, protocol or client errors)."""
    if isinstance(exc, SMBOSError):
        return int(exc.ntstatus)
    if isinstance(exc, SMBResponseException):
        return int(exc.status)
    return None


def _status_name(status: int) -> str:
    for table in (_LOGIN_REFUSED, _FULL, _BAD_NAME, _DENIED):
        if status in table:
            return table[status]
    for name, value in vars(NtStatus).items():
        if value == status and name.startswith("STATUS_"):
            return str(name)
    return f"NTSTATUS 0x{status:08x}"


def _disconnect(connection: Any, *, polite: bool) -> None:
    """Close a connection; ``polite`` logs off first (bounded), otherwise only the socket."""
    with suppress(Exception):
        connection.disconnect(close=polite, timeout=5)
