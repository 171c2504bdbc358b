"""Azurite, the Azure Blob Storage emulator, on a free loopback port for the test session.

Started from the project's pinned install (``tools/azurite``, ``npm ci`` by scripts/setup) with the
``node`` on PATH (≥ 18). The blob script is run by node directly, so the recorded pid is the
server itself; it gets its own process group, and stopping kills that group.

``--skipApiVersionCheck``: azure-storage-blob 12.31 speaks x-ms-version 2026-10-06, newer than
Azurite 3.35 knows (2025-11-05); the requests themselves are ones it implements.

Use: ``from tests.servers.azurite import azurite, azure_container`` in a test module registers
the session fixture (``azurite`` → `AzuriteServer`) and a fresh container per test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import missing

ROOT = Path(__file__).resolve().parents[2]
AZURITE_BLOB = (
    ROOT / "tools" / "azurite" / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
)
ACCOUNT = "devstoreaccount1"
# Azurite's published development key: public, the same in every emulator, not a secret.
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
START_TIMEOUT = 30.0
MIN_NODE = 18


@dataclass(frozen=True)
class AzuriteServer:
    """Where a running Azurite answers, and the development account's credentials."""

    host: str
    port: int
    pid: int
    account_name: str = ACCOUNT
    account_key: str = ACCOUNT_KEY

    @property
    def account_url(self) -> str:
        return f"http://{self.host}:{self.port}/{self.account_name}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
            f"AccountKey={self.account_key};BlobEndpoint={self.account_url};"
        )


def node_problem() -> str | None:
    """Why Azurite cannot start here, or None."""
    node = shutil.which("node")
    if node is None:
        return "node is not installed (Azurite needs node >= 18)"
    if not AZURITE_BLOB.is_file():
        return f"Azurite is not installed in {AZURITE_BLOB.parents[4]} (run scripts/setup)"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    major = version.stdout.strip().lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < MIN_NODE:
        return f"node {version.stdout.strip() or '?'} is too old for Azurite (needs >= {MIN_NODE})"
    return None


@contextmanager
def running_azurite(*, in_memory: bool = False) -> Iterator[AzuriteServer]:
    """Start Azurite blob on 127.0.0.1:<free port>; stop it (the node process group) on exit.

    Raises RuntimeError with the server's output when it does not answer within 30 s.
    """
    problem = node_problem()
    if problem:
        raise FileNotFoundError(problem)
    with tempfile.TemporaryDirectory(prefix="picpipe-azurite-") as workdir:
        for _attempt in range(3):  # the free port may be taken between probing and binding
            port = _free_port()
            log = Path(workdir, f"azurite-{port}.log")
            process = _start(port, Path(workdir), log, in_memory=in_memory)
            try:
                if _wait_until_answering(process, port, log):
                    yield AzuriteServer("127.0.0.1", port, process.pid)
                    return
            finally:
                _stop(process)
        raise RuntimeError(f"Azurite did not start on a free port: {log.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteServer]:
    """A running Azurite for the whole session (skipped, or failed under CI, when missing)."""
    problem = node_problem()
    if problem:
        missing(problem)
    with running_azurite() as server:
        yield server


@pytest.fixture
def azure_container(azurite: AzuriteServer) -> Iterator[str]:
    """A new, empty container for one test; removed afterwards (the emulator's, not data)."""
    from azure.storage.blob import BlobServiceClient

    name = f"t{uuid.uuid4().hex[:20]}"
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.create_container(name)
        yield name
        with suppress(Exception):  # best effort: the emulator's folder goes at session end
            service.delete_container(name)


def _start(port: int, workdir: Path, log: Path, *, in_memory: bool) -> subprocess.Popen[bytes]:
    node = shutil.which("node")
    assert node is not None
    args = [
        node,
        str(AZURITE_BLOB),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--silent",
        "--skipApiVersionCheck",
        "--disableTelemetry",  # a closed network: no collector to reach
    ]
    # Azurite refuses --location together with --inMemoryPersistence.
    args += ["--inMemoryPersistence"] if in_memory else ["--location", str(workdir)]
    with open(log, "wb") as out:
        return subprocess.Popen(
            args,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as a whole by _stop
        )


def _wait_until_answering(process: subprocess.Popen[bytes], port: int, log: Path) -> bool:
    """True once HTTP answers; False when the process exited (port taken); raises on timeout."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            if "EADDRINUSE" in log.read_text(errors="replace"):
                return False
            raise RuntimeError(f"Azurite exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/{ACCOUNT}?comp=list", timeout=1):
                return True
        except urllib.error.HTTPError as exc:
            exc.close()
            return True  # 403 without a signature: it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(
        f"Azurite did not answer on 127.0.0.1:{port} within {START_TIMEOUT:.0f}s: "
        f"{log.read_text(errors='replace')[-2000:]}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
