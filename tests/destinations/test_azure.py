"""The azure kind against Azurite, plus what only Azure Blob Storage can get wrong."""

from __future__ import annotations

import base64
import io
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from azure.storage.blob import (
    ContainerClient,
    ContainerSasPermissions,
    generate_container_sas,
)

from picpipe.destinations.azure import AzureDestination, AzureOptions
from picpipe.destinations.base import Destination, Digests, open_destination
from picpipe.errors import (
    ConfigError,
    DestinationAuthFailed,
    DestinationError,
    DestinationMisconfigured,
    DestinationRejected,
    DestinationUnavailable,
    IntegrityMismatch,
)
from tests.destinations.contract import DestinationContract, asset_for, photo, store
from tests.servers.azurite import AzuriteServer

MIB = 1 << 20
WRONG_KEY = base64.b64encode(bytes(range(64))).decode()  # well-formed, but not the key


def azure_config(server: AzuriteServer, container: str, **changes: Any) -> dict[str, Any]:
    """A small-block configuration: blocks of 1 MiB above 2 MiB, so tests stay fast."""
    config: dict[str, Any] = {
        "kind": "azure",
        "connection_string": server.connection_string,
        "container": container,
        "prefix": "photos",
        "block_size_mb": 1,
        "single_put_threshold_mb": 2,
    }
    config.update(changes)
    return {k: v for k, v in config.items() if v is not None}


def key_config(server: AzuriteServer, container: str, key: str, **changes: Any) -> dict[str, Any]:
    changes = {"connection_string": None, "account_url": server.account_url, **changes}
    return azure_config(server, container, account_key=key, **changes)


def sas_for(server: AzuriteServer, container: str, **permissions: bool) -> str:
    allowed = permissions or dict(read=True, write=True, create=True, add=True, list=True)
    return generate_container_sas(
        server.account_name,
        container,
        account_key=server.account_key,
        permission=ContainerSasPermissions(**allowed),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )


def raw_container(server: AzuriteServer, container: str) -> ContainerClient:
    return ContainerClient.from_connection_string(server.connection_string, container)


@pytest.fixture
def destination(azurite: AzuriteServer, azure_container: str) -> Iterator[Destination]:
    dest = open_destination("cloud", azure_config(azurite, azure_container))
    yield dest
    dest.close()


@pytest.fixture
def tamper(azurite: AzuriteServer, azure_container: str):
    """Other bytes under the key, the stored Content-MD5 and metadata kept as they were.

    Re-uploading with ``upload_blob(..., content_settings=old)`` does not work on Azurite: it
    checks x-ms-blob-content-md5 on Put Blob against the body (InvalidOperation). Put Block List
    stores whatever Content-MD5 it is given, on Azurite as on Azure, so a commit keeps it.
    """

    def write(dest: Destination, key: str, data: bytes) -> None:
        with raw_container(azurite, azure_container) as container:
            blob = container.get_blob_client(key)
            old = blob.get_blob_properties()
            blob.stage_block("tampered", data)
            blob.commit_block_list(
                ["tampered"], content_settings=old.content_settings, metadata=old.metadata
            )
            now = blob.get_blob_properties()
            assert now.content_settings.content_md5 == old.content_settings.content_md5

    return write


@pytest.fixture
def large_size() -> int:
    return 5 * MIB + 12345  # six 1 MiB blocks, the last one short


@pytest.fixture
def bad_credentials(azurite: AzuriteServer, azure_container: str) -> Iterator[Destination]:
    dest = open_destination("cloud", key_config(azurite, azure_container, WRONG_KEY))
    yield dest
    dest.close()


class TestAzureContract(DestinationContract):
    pass


# -- layout and options --------------------------------------------------------------------


def test_object_store_layout_under_the_prefix(destination: Destination) -> None:
    asset, digests = asset_for(photo(1), "IMG_0001.JPG")
    sha = digests.sha256
    assert destination.key_for(asset) == f"photos/{sha[:2]}/{sha}/DCIM/100APPLE/IMG_0001.JPG"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sas_token": "sv=x", "account_key": "k"}, "at most one"),
        (
            {"connection_string": None, "account_key_env": "K", "sas_token_file": "/x"},
            "at most one",
        ),
        ({"connection_string": None, "sas_token": "sv=x"}, "account_url is required"),
        ({"connection_string": None, "account_url": "http://127.0.0.1:1/a"}, "https"),
        ({"container": "Bad_Name"}, "container"),
        ({"block_size_mb": 0}, "block_size_mb"),
        ({"access_tier": "Frozen"}, "access_tier"),
    ],
)
def test_options_are_checked(changes: dict[str, Any], message: str) -> None:
    config = {
        "kind": "azure",
        "connection_string": "UseDevelopmentStorage=true",
        "container": "ok1",
    }
    config.update(changes)
    config = {k: v for k, v in config.items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        open_destination("cloud", config)


def test_default_credential_is_imported_only_when_used() -> None:
    script = """
import sys
from picpipe.destinations.base import open_destination
dest = open_destination("cloud", {"kind": "azure", "container": "photos",
                                  "account_url": "https://acct.blob.core.windows.net"})
assert "azure.identity" not in sys.modules, "imported when opened"
dest._connect()
assert "azure.identity" in sys.modules
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_without_any_credential_the_report_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    url = f"https://127.0.0.1:{_closed_port()}/devstoreaccount1"
    dest = open_destination("cloud", {"kind": "azure", "account_url": url, "container": "cont"})
    report = dest.check()  # no token here (or, with `az login`, no server): never an exception
    assert not report.ok
    assert not report.writable
    assert report.detail
    dest.close()


# -- authentication ------------------------------------------------------------------------


def test_account_key_auth(azurite: AzuriteServer, azure_container: str) -> None:
    dest = open_destination("cloud", key_config(azurite, azure_container, azurite.account_key))
    data = photo(60)
    key = store(dest, data)
    assert dest.verify(key, Digests.of_bytes(data)).ok
    assert dest.check().ok
    dest.close()


def test_sas_token_auth(azurite: AzuriteServer, azure_container: str) -> None:
    sas = sas_for(azurite, azure_container)
    config = azure_config(
        azurite, azure_container, connection_string=None, account_url=azurite.account_url
    )
    dest = open_destination("cloud", {**config, "sas_token": "?" + sas})
    data = photo(61, 3 * MIB)  # the block path too
    key = store(dest, data)
    assert dest.verify(key, Digests.of_bytes(data), deep=True).ok
    assert [o.key for o in dest.list()] == [key]
    assert dest.check().ok
    dest.close()


def test_secret_from_env_and_file(
    azurite: AzuriteServer,
    azure_container: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path,
) -> None:
    monkeypatch.setenv("AZ_KEY", azurite.account_key)
    from_env = key_config(azurite, azure_container, None, account_key_env="AZ_KEY")
    (tmp_path / "sas").write_text(sas_for(azurite, azure_container) + "\n")
    from_file = azure_config(
        azurite,
        azure_container,
        connection_string=None,
        account_url=azurite.account_url,
        sas_token_file=str(tmp_path / "sas"),
    )
    for config in (from_env, from_file):
        dest = open_destination("cloud", config)
        assert dest.check().ok, dest.check().detail
        dest.close()


def test_sas_without_write_is_not_writable(azurite: AzuriteServer, azure_container: str) -> None:
    sas = sas_for(azurite, azure_container, read=True, list=True)
    config = azure_config(
        azurite, azure_container, connection_string=None, account_url=azurite.account_url
    )
    report = open_destination("cloud", {**config, "sas_token": sas}).check()
    assert (report.reachable, report.authenticated, report.writable) == (True, True, False)


def test_no_secret_in_errors_or_logs(
    azurite: AzuriteServer,
    azure_container: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    good_sas = sas_for(azurite, azure_container)
    bad_sas = good_sas.replace("sig=", "sig=AAAA")
    sas_config = azure_config(
        azurite, azure_container, connection_string=None, account_url=azurite.account_url
    )
    closed = azurite.account_url.replace(str(azurite.port), str(_closed_port()))
    cases: list[tuple[dict[str, Any], type[DestinationError], str]] = [
        (key_config(azurite, azure_container, WRONG_KEY), DestinationAuthFailed, WRONG_KEY),
        ({**sas_config, "sas_token": bad_sas}, DestinationAuthFailed, bad_sas.split("sig=")[1]),
        (
            {**sas_config, "account_url": closed, "sas_token": good_sas},
            DestinationUnavailable,
            good_sas.split("sig=")[1],
        ),
    ]
    data = photo(62)
    asset, digests = asset_for(data)
    for config, expected, secret in cases:
        dest = open_destination("cloud", config)
        with pytest.raises(expected) as caught:
            dest.put(dest.key_for(asset), io.BytesIO(data), digests=digests, asset=asset)
        report = dest.check()
        assert not report.ok
        texts = [report.detail, *_chain(caught.value)]
        texts += [r.getMessage() for r in caplog.records]
        for text in texts:
            assert secret not in text
            assert secret.replace("%2B", "+").replace("%3D", "=") not in text
        dest.close()


# -- uploads -------------------------------------------------------------------------------


def test_checksums_are_stored_with_the_blob(
    destination: Destination,
    azurite: AzuriteServer,
    azure_container: str,
) -> None:
    small, big = photo(70), photo(71, 3 * MIB + 1)
    with raw_container(azurite, azure_container) as raw:
        for data, blocks in ((small, 0), (big, 4)):
            key = store(destination, data, f"CHECKSUM_{blocks}.JPG")
            digests = Digests.of_bytes(data)
            props = raw.get_blob_client(key).get_blob_properties()
            assert props.blob_type == "BlockBlob"
            assert bytes(props.content_settings.content_md5).hex() == digests.md5
            assert props.content_settings.content_type == "image/jpeg"
            assert props.metadata == {"picpipe_sha256": digests.sha256}
            committed, _ = raw.get_blob_client(key).get_block_list("committed")
            assert len(committed) == blocks


def test_the_service_refuses_bytes_that_are_not_the_assets(destination: Destination) -> None:
    for size in (0, 3 * MIB):  # one Put Blob, then blocks
        claimed_data = photo(72, size)
        sent_data = bytearray(claimed_data)
        sent_data[-100] ^= 0x01
        asset, digests = asset_for(claimed_data, f"LIE_{size}.JPG")
        key = destination.key_for(asset)
        with pytest.raises(IntegrityMismatch):
            destination.put(key, io.BytesIO(bytes(sent_data)), digests=digests, asset=asset)
        assert destination.stat(key) is None


def test_cheap_verification_trusts_the_stored_md5_deep_reads(
    destination: Destination, tamper
) -> None:
    data = photo(73)
    key = store(destination, data, "SILENT_ROT.JPG")
    digests = Digests.of_bytes(data)
    rotten = bytearray(data)
    rotten[-10] ^= 0xFF
    tamper(destination, key, bytes(rotten))
    assert destination.verify(key, digests).ok  # size, Content-MD5 and metadata all unchanged
    deep = destination.verify(key, digests, deep=True)
    assert not deep.ok
    assert deep.detail == "sha256 differs"


def test_verify_without_md5_reads_the_blob(destination: Destination) -> None:
    data = photo(74)
    key = store(destination, data, "NO_MD5.JPG")
    found = Digests.of_bytes(data)
    outcome = destination.verify(key, Digests(found.size, found.sha256))
    assert outcome.ok
    assert outcome.method == "sha256 re-read"


class FailingStream(io.BytesIO):
    """Raises once ``fail_at`` bytes have been read, like a source disk going away."""

    def __init__(self, data: bytes, fail_at: int) -> None:
        super().__init__(data)
        self.fail_at = fail_at

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() >= self.fail_at:
            raise OSError("source went away")
        return super().read(size)


@pytest.mark.parametrize("block_concurrency", [1, 4])
def test_an_interrupted_block_upload_resumes(
    azurite: AzuriteServer, azure_container: str, block_concurrency: int
) -> None:
    staged: list[str] = []

    def count_put_block(request: Any) -> None:
        if request.http_request.method == "PUT" and "comp=block&" in request.http_request.url:
            staged.append(request.http_request.url)

    config = azure_config(azurite, azure_container, block_concurrency=block_concurrency)
    options = AzureOptions.model_validate(config)
    client = ContainerClient.from_connection_string(
        azurite.connection_string, azure_container, raw_request_hook=count_put_block
    )
    dest = AzureDestination("cloud", options, client=client)
    data = photo(80, 6 * MIB + 5)  # seven blocks
    asset, digests = asset_for(data, "VIDEO.MOV")
    key = dest.key_for(asset)
    checkpoints: list[dict[str, Any]] = []

    with pytest.raises(OSError, match="went away"):
        dest.put(
            key,
            FailingStream(data, 3 * MIB),
            digests=digests,
            asset=asset,
            checkpoint=checkpoints.append,
        )
    # Blocks read before the source failed; one queued but not started may be cancelled.
    first = len(staged)
    assert 1 <= first <= 3
    for saved in checkpoints:  # JSON-able progress; the service's block list is what counts
        assert saved.keys() == {"block_size", "blocks", "staged"}
        assert saved["staged"] <= first
    assert dest.stat(key) is None  # nothing visible before the commit
    assert key not in [o.key for o in dest.list()]
    assert not dest.verify(key, digests).ok

    staged.clear()
    resume = checkpoints[-1] if checkpoints else None
    stored = dest.put(key, io.BytesIO(data), digests=digests, asset=asset, resume=resume)
    assert len(staged) == 7 - first  # only the missing blocks
    assert stored.md5 == digests.md5
    assert dest.verify(key, digests).ok
    assert dest.verify(key, digests, deep=True).ok
    dest.close()


def test_access_tier(azurite: AzuriteServer, azure_container: str) -> None:
    dest = open_destination("cloud", azure_config(azurite, azure_container, access_tier="Cool"))
    key = store(dest, photo(81))
    with raw_container(azurite, azure_container) as raw:
        assert raw.get_blob_client(key).get_blob_properties().blob_tier == "Cool"
    dest.close()


def test_a_missing_container_is_a_configuration_error(azurite: AzuriteServer) -> None:
    dest = open_destination("cloud", azure_config(azurite, "never-created"))
    data = photo(82)
    asset, digests = asset_for(data)
    with pytest.raises(DestinationMisconfigured, match="never-created does not exist"):
        dest.put(dest.key_for(asset), io.BytesIO(data), digests=digests, asset=asset)
    with pytest.raises(DestinationMisconfigured):
        dest.stat("x")
    report = dest.check()
    assert (report.reachable, report.authenticated, report.writable) == (True, True, False)
    assert "does not exist" in report.detail


# -- error mapping -------------------------------------------------------------------------


class ScriptedStorage(BaseHTTPRequestHandler):
    """Answers every request with one status and x-ms-error-code, like the service would."""

    answer: tuple[int, str] = (503, "ServerBusy")

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, code = self.server.answer  # type: ignore[attr-defined]
        body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>m</Message></Error>"
        self.send_response(status)
        if code:
            self.send_header("x-ms-error-code", code)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (503, "ServerBusy", DestinationUnavailable),
        (429, "TooManyRequests", DestinationUnavailable),
        (500, "InternalError", DestinationUnavailable),
        (400, "Md5Mismatch", IntegrityMismatch),
        (403, "AuthenticationFailed", DestinationAuthFailed),
        (404, "ContainerNotFound", DestinationMisconfigured),
        (404, "", DestinationMisconfigured),  # not the blob service (a proxy, a wrong URL)
        (409, "BlobArchived", DestinationRejected),
        (400, "InvalidBlobOrBlock", DestinationRejected),
    ],
)
def test_service_answers_are_mapped(status: int, code: str, expected: type) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedStorage)
    server.answer = (status, code)  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/devstoreaccount1"
        dest = open_destination(
            "cloud",
            {"kind": "azure", "account_url": url, "account_key": WRONG_KEY, "container": "cont"},
        )
        data = photo(90)
        asset, digests = asset_for(data)
        with pytest.raises(expected) as caught:
            dest.put(dest.key_for(asset), io.BytesIO(data), digests=digests, asset=asset)
        assert caught.value.retryable == (expected in {DestinationUnavailable, IntegrityMismatch})
        dest.close()
    finally:
        server.shutdown()
        server.server_close()


def test_a_key_that_cannot_sign_is_an_auth_failure() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/devstoreaccount1"
    config = {
        "kind": "azure",
        "account_url": url,
        "account_key": "not base64!",
        "container": "cont",
    }
    dest = open_destination("cloud", config)
    with pytest.raises(DestinationAuthFailed, match="base64"):
        dest.stat("photos/x")
    assert not dest.check().authenticated


def test_an_unreachable_account_is_retryable(azurite: AzuriteServer) -> None:
    url = azurite.account_url.replace(str(azurite.port), str(_closed_port()))
    dest = open_destination(
        "cloud", key_config(azurite, "cont", azurite.account_key, account_url=url)
    )
    with pytest.raises(DestinationUnavailable) as caught:
        dest.stat("photos/x")
    assert caught.value.retryable
    report = dest.check()
    assert not report.reachable


# -- helpers -------------------------------------------------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _chain(exc: BaseException | None) -> list[str]:
    texts = []
    while exc is not None:
        texts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return texts
