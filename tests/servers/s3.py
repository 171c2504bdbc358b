"""An S3-compatible server on a free loopback port for the test session: moto, in its own process.

Why moto: no more faithful S3 server installs from the registries this project uses (MinIO,
Garage, SeaweedFS and versitygw publish their binaries elsewhere; npm's ``s3rver`` is
unmaintained and older than the checksum API). moto runs as a separate process so picpipe
subprocesses, the fault proxy and a ``kill -9`` of a client all talk to a server that outlives
them; it exits by itself when the test process goes away (its stdin closes).

After a user and its access key are made through moto's IAM, authentication is switched on
(``/moto-api/reset-auth``): requests signed with any other key or secret are refused with
InvalidAccessKeyId / SignatureDoesNotMatch, as a real server does.

What moto does NOT do (measured with moto 5.2): it does not check Content-MD5 nor
x-amz-checksum-sha256 against the body (it stores what it gets and echoes the checksum sent),
and a body cut short may still be stored. Tests therefore check stored bytes themselves.

Use: ``from tests.servers.s3 import s3_bucket, s3_server`` in a test module registers the session
fixture (``s3_server`` → `S3Server`) and a fresh bucket per test (``s3_bucket``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing

REGION = "us-east-1"
START_TIMEOUT = 30.0
# Runs in the server process: quiet request logs, the port to a file, stop when stdin closes.
_LAUNCHER = """
import logging, os, sys
logging.getLogger("werkzeug").setLevel(logging.WARNING)
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
port_file = sys.argv[1]
with open(port_file + ".tmp", "w") as out:
    out.write(str(server.get_host_and_port()[1]))
os.replace(port_file + ".tmp", port_file)
sys.stdin.read()
server.stop()
"""
_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


@dataclass(frozen=True)
class S3Server:
    """Where the server answers and the only credentials it accepts."""

    host: str
    port: int
    pid: int
    access_key_id: str
    secret_access_key: str
    region: str = REGION

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @cached_property
    def admin(self) -> Any:
        """One shared client for arranging and inspecting tests (boto3 clients are
        thread-safe; building one costs ~0.3 s of model loading)."""
        return self.client()

    def client(self, endpoint_url: str | None = None) -> Any:
        """A new plain boto3 client (path-style); the caller closes it."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url or self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": 1},
            ),
        )

    def destination_config(self, bucket: str, **options: Any) -> dict[str, Any]:
        """The ``destinations.<name>`` entry of an ``s3`` destination for this server."""
        return {
            "kind": "s3",
            "bucket": bucket,
            "endpoint_url": self.endpoint_url,
            "region": self.region,
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "addressing_style": "path",
            **options,
        }

    def rclone_env(self, remote: str = "picpipe_s3") -> dict[str, str]:
        """Environment that defines the rclone remote ``<remote>:`` for this server (no config
        file, nothing on the command line)."""
        prefix = f"RCLONE_CONFIG_{remote.upper()}_"
        values = {
            "TYPE": "s3",
            "PROVIDER": "Other",
            "ENDPOINT": self.endpoint_url,
            "REGION": self.region,
            "ACCESS_KEY_ID": self.access_key_id,
            "SECRET_ACCESS_KEY": self.secret_access_key,
            "FORCE_PATH_STYLE": "true",
        }
        return {prefix + k: v for k, v in values.items()}


def moto_problem() -> str | None:
    """Why the server cannot start here, or None."""
    try:
        import boto3  # noqa: F401
        import moto.moto_server.threaded_moto_server  # noqa: F401
        import werkzeug  # noqa: F401
    except ImportError as exc:
        return f"moto[server] is not installed ({exc.name}); run scripts/setup"
    return None


@contextmanager
def running_s3_server() -> Iterator[S3Server]:
    """Start moto on 127.0.0.1:<free port>, make a user and key, switch authentication on;
    stop the process on exit. Raises RuntimeError with the server's output when it does not
    answer within 30 s."""
    problem = moto_problem()
    if problem:
        raise FileNotFoundError(problem)
    with tempfile.TemporaryDirectory(prefix="picpipe-s3-") as workdir:
        port_file = Path(workdir, "port")
        log = Path(workdir, "moto.log")
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, str(port_file)],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
        try:
            port = _wait_for_port(process, port_file, log)
            key_id, secret = _make_user(f"http://127.0.0.1:{port}")
            server = S3Server("127.0.0.1", port, process.pid, key_id, secret)
            yield server
            if "admin" in server.__dict__:
                server.admin.close()
        finally:
            _stop(process)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A running S3 server for the whole session (skipped, or failed under CI, when missing)."""
    problem = moto_problem()
    if problem:
        missing(problem)
    with running_s3_server() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[str]:
    """A new, empty bucket for one test; emptied and removed afterwards (the emulator's data)."""
    name = f"picpipe-{uuid.uuid4().hex[:16]}"
    s3_server.admin.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        with suppress(Exception):  # best effort: the server goes at session end anyway
            _remove_bucket(s3_server.admin, name)


def _wait_for_port(process: subprocess.Popen[bytes], port_file: Path, log: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if port_file.exists():
            return int(port_file.read_text())
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"the S3 server (moto) did not start: {log.read_text()[-2000:]}")


def _make_user(url: str) -> tuple[str, str]:
    """Create an IAM user with a key allowed everything, then make every request authenticate."""
    import boto3

    iam = boto3.session.Session().client(
        "iam",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="setup",  # anything is accepted until authentication is switched on
        aws_secret_access_key="setup",
    )
    iam.create_user(UserName="picpipe")
    key = iam.create_access_key(UserName="picpipe")["AccessKey"]
    iam.put_user_policy(UserName="picpipe", PolicyName="all", PolicyDocument=json.dumps(_POLICY))
    iam.close()
    request = urllib.request.Request(
        f"{url}/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        json.loads(answer.read())
    return key["AccessKeyId"], key["SecretAccessKey"]


def _remove_bucket(client: Any, bucket: str) -> None:
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
    client.delete_bucket(Bucket=bucket)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Close stdin (the server stops itself), then TERM and KILL its process group if needed."""
    with suppress(OSError):
        assert process.stdin is not None
        process.stdin.close()
    try:
        process.wait(timeout=5)
        return
    except subprocess.TimeoutExpired:
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue
