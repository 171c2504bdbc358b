"""Samba ``smbd`` on a free loopback port with two temporary shares, for the test session.

Everything smbd keeps (config, passdb, locks, logs, pid file) lives in one temp folder, so the
machine's own Samba setup is never read or changed. Two shares:
- ``photos``: guest access (``map to guest = Bad User``), files owned by root (``force user``);
- ``private``: only the user ``picpipe`` with a random password. smbd needs a Unix account behind
  every SMB user, so a ``username map`` maps ``picpipe`` to ``root`` (the tests run as root) and
  the password lives in the temp folder's own passdb (``smbpasswd -c <conf>``), not the system's.

smbd runs in the foreground in its own process group (``-F --no-process-group`` under
``start_new_session``): stopping sends SIGTERM to that group (the pid-file pid and every child
it forked per connection; the Popen pid is the one smbd writes to its pid file), then SIGKILL to
anything left.

Use: ``from tests.servers.samba import samba`` in a test module registers the session fixture
(``samba`` → `SambaServer`, with ``destination()`` for a picpipe config entry and
``rclone_env()`` for rclone); `running_samba` gives a private instance that tests may stop,
pause and restart on the same port (`SambaProcess`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing

GUEST_SHARE = "photos"
AUTH_SHARE = "private"
USERNAME = "picpipe"
GUEST_USER = "guest"  # not a Unix account here: "map to guest = Bad User" makes it the guest
START_TIMEOUT = 20.0

_CONFIG = """\
[global]
  smb ports = {port}
  interfaces = 127.0.0.1
  bind interfaces only = yes
  server role = standalone server
  workgroup = PICPIPE
  private dir = {state}
  lock directory = {state}
  state directory = {state}
  cache directory = {state}
  pid directory = {state}
  ncalrpc dir = {state}/ncalrpc
  passdb backend = tdbsam:{state}/passdb.tdb
  username map = {root}/users.map
  log file = {logs}/log.%m
  max log size = 1000
  map to guest = Bad User
  rpc start on demand helpers = no
  disable spoolss = yes
  load printers = no
  printcap name = /dev/null
  disable netbios = yes
[{guest_share}]
  path = {guest_root}
  read only = no
  guest ok = yes
  force user = root
[{auth_share}]
  path = {auth_root}
  read only = no
  guest ok = no
  valid users = root
"""


@dataclass(frozen=True)
class SambaServer:
    """Where a running smbd answers, its shares (name and folder on disk) and its user."""

    host: str
    port: int
    guest_share: str
    guest_root: Path
    auth_share: str
    auth_root: Path
    username: str
    password: str

    def destination(self, *, guest: bool = False, **options: Any) -> dict[str, Any]:
        """A ``destinations.<name>`` config entry for the authenticated (or guest) share."""
        config: dict[str, Any] = {"kind": "smb", "server": self.host, "port": self.port}
        if guest:
            config["share"] = self.guest_share
        else:
            config.update(share=self.auth_share, username=self.username, password=self.password)
        config.update(options)
        return config

    def share_root(self, share: str) -> Path:
        return self.guest_root if share == self.guest_share else self.auth_root

    def rclone_env(self, remote: str = "picpipe_smb", *, guest: bool = False) -> dict[str, str]:
        """Environment that defines the rclone remote ``<remote>:`` (``<remote>:<share>/<path>``)
        for this server: no config file, nothing on the command line.

        rclone wants the password obscured (``rclone obscure``, which needs rclone itself).
        """
        values = {"TYPE": "smb", "HOST": self.host, "PORT": str(self.port), "USER": GUEST_USER}
        if not guest:
            obscured = subprocess.run(
                ["rclone", "obscure", "-"],
                input=self.password,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            values.update(USER=self.username, PASS=obscured)
        prefix = f"RCLONE_CONFIG_{remote.upper()}_"
        return {prefix + k: v for k, v in values.items()}


class SambaProcess:
    """One smbd with its folder; `stop`, `start` (same port and shares), `pause`, `resume`."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.password = secrets.token_urlsafe(12)
        self.process: subprocess.Popen[bytes] | None = None
        self.server = SambaServer(
            "127.0.0.1",
            port,
            GUEST_SHARE,
            root / "shares" / GUEST_SHARE,
            AUTH_SHARE,
            root / "shares" / AUTH_SHARE,
            USERNAME,
            self.password,
        )
        self._configure()

    @property
    def conf(self) -> Path:
        return self.root / "smb.conf"

    def start(self) -> bool:
        """Start smbd; True once it negotiates SMB, False when it exited (port taken)."""
        log = self.root / "logs" / "smbd.out"
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                ["smbd", "-F", "--no-process-group", "-s", str(self.conf), "-l", str(log.parent)],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() reaches every child
            )
        return self._wait_until_answering()

    def stop(self) -> None:
        """SIGTERM smbd's process group (the pid file's pid and its children), then SIGKILL."""
        process, self.process = self.process, None
        if process is None:
            return
        self._signal(process.pid, signal.SIGCONT)  # a paused group cannot act on SIGTERM
        self._signal(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._signal(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        # Connection children finish closing their files (delete-on-close) after the parent
        # is gone; give them that time, then kill what is left.
        deadline = time.monotonic() + 5
        while _group_members(process.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        self._signal(process.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the whole group at once: a server that dies without closing anything."""
        if self.process is not None:
            self._signal(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None

    def pause(self) -> None:
        """SIGSTOP every smbd process: connections stay open, nothing answers (a stall)."""
        assert self.process is not None
        self._signal(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self._signal(self.process.pid, signal.SIGCONT)

    def log_tail(self) -> str:
        logs = sorted((self.root / "logs").glob("*"))
        return "\n".join(p.read_text(errors="replace")[-1500:] for p in logs if p.is_file())

    def _configure(self) -> None:
        state, logs = self.root / "state", self.root / "logs"
        for folder in (state, logs, self.server.guest_root, self.server.auth_root):
            folder.mkdir(parents=True, exist_ok=True)
        (self.root / "users.map").write_text(f"root = {USERNAME}\n")
        self.conf.write_text(
            _CONFIG.format(
                port=self.port,
                root=self.root,
                state=state,
                logs=logs,
                guest_share=GUEST_SHARE,
                guest_root=self.server.guest_root,
                auth_share=AUTH_SHARE,
                auth_root=self.server.auth_root,
            )
        )
        # The password goes through stdin (-s), never the command line.
        done = subprocess.run(
            ["smbpasswd", "-c", str(self.conf), "-s", "-a", "root"],
            input=f"{self.password}\n{self.password}\n".encode(),
            capture_output=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"smbpasswd failed: {done.stderr.decode(errors='replace')}")

    def _wait_until_answering(self) -> bool:
        from smbprotocol.connection import Connection

        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                return False
            connection = Connection(uuid.uuid4(), "127.0.0.1", self.port, require_signing=False)
            try:
                connection.connect(timeout=2)  # a real SMB2/3 negotiate, not only a TCP accept
            except Exception:
                time.sleep(0.1)
                continue
            with suppress(Exception):
                connection.disconnect(close=False)
            return True
        self.stop()
        raise RuntimeError(
            f"smbd did not answer on 127.0.0.1:{self.port} within {START_TIMEOUT:.0f}s: "
            f"{self.log_tail()}"
        )

    @staticmethod
    def _signal(group: int, sig: signal.Signals) -> None:
        with suppress(ProcessLookupError):
            os.killpg(group, sig)


def samba_problem() -> str | None:
    """Why smbd cannot run here, or None."""
    for tool in ("smbd", "smbpasswd"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install samba)"
    if os.geteuid() != 0:
        return "smbd needs root to switch to the share's user (the tests run it as root)"
    return None


@contextmanager
def running_samba(root: Path | None = None) -> Iterator[SambaProcess]:
    """smbd on 127.0.0.1:<free port> with fresh shares; stopped (its whole group) on exit.

    Its files go under ``root`` (kept) or a temp folder (removed). Raises RuntimeError with
    smbd's log when it does not answer within 20 s.
    """
    problem = samba_problem()
    if problem:
        raise FileNotFoundError(problem)
    with ExitStack() as stack:
        base = root or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="picpipe-samba-"))
        )
        for attempt in range(3):  # the free port may be taken between probing and binding
            samba = SambaProcess(base / f"run{attempt}", _free_port())
            try:
                if samba.start():
                    yield samba
                    return
            finally:
                samba.stop()
        raise RuntimeError(f"smbd did not start on a free port: {samba.log_tail()}")


@pytest.fixture(scope="session")
def samba() -> Iterator[SambaServer]:
    """A running smbd for the whole session (skipped, or failed under CI, when missing)."""
    problem = samba_problem()
    if problem:
        missing(problem)
    with running_samba() as process:
        yield process.server


def _group_members(group: int) -> list[int]:
    """Live (not zombie) processes in a process group, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # exited while listing
        if fields[0] != "Z" and int(fields[2]) == group:
            found.append(int(stat.parent.name))
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
