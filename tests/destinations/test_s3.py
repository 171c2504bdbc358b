"""The s3 kind against a real S3-compatible server (moto, in its own process), plus what only an
object store can get wrong: key layout, Content-MD5, metadata, resumable multipart uploads,
error mapping and a flaky network (the fault proxy)."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
    ResponseStreamingError,
    SSLError,
)
from botocore.parsers import ResponseParserError
from urllib3.exceptions import ProtocolError

from picpipe.destinations.base import Destination, Digests, open_destination
from picpipe.destinations.s3 import S3Destination
from picpipe.destinations.s3_errors import map_error
from picpipe.errors import (
    ConfigError,
    DestinationAuthFailed,
    DestinationMisconfigured,
    DestinationRejected,
    DestinationUnavailable,
    IntegrityMismatch,
)
from tests.destinations.contract import DestinationContract, asset_for, photo, store
from tests.servers.faultproxy import FaultProxy
from tests.servers.s3 import S3Server

MIB = 1 << 20
SMALL = {"multipart_threshold_mb": 5, "part_size_mb": 5}  # multipart from 5 MiB, 5 MiB parts


@pytest.fixture
def destination(s3_server: S3Server, s3_bucket: str) -> Iterator[S3Destination]:
    dest = open_destination("cloud", s3_server.destination_config(s3_bucket, **SMALL))
    assert isinstance(dest, S3Destination)
    yield dest
    dest.close()


@pytest.fixture
def tamper(s3_server: S3Server) -> Callable[[S3Destination, str, bytes], None]:
    """Replace an object's bytes with boto3 directly, keeping its metadata (our sha256)."""
    client = s3_server.admin

    def write(dest: S3Destination, key: str, data: bytes) -> None:
        head = client.head_object(Bucket=dest.bucket, Key=key)
        client.put_object(
            Bucket=dest.bucket,
            Key=key,
            Body=data,
            Metadata=head["Metadata"],
            ContentType=head["ContentType"],
        )

    return write


@pytest.fixture
def large_size() -> int:
    return 12 * MIB  # three parts under the fixture's 5 MiB threshold


@pytest.fixture
def bad_credentials(s3_server: S3Server, s3_bucket: str) -> Iterator[Destination]:
    """The server refuses keys it did not issue (moto's IAM authentication is on)."""
    config = s3_server.destination_config(s3_bucket, secret_access_key="not-the-secret-at-all")
    dest = open_destination("cloud", config)
    yield dest
    dest.close()


class TestS3Contract(DestinationContract):
    pass


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- layout, headers, metadata ------------------------------------------------------------


def test_object_store_layout_with_prefix(s3_server: S3Server, s3_bucket: str) -> None:
    dest = open_destination("cloud", s3_server.destination_config(s3_bucket, prefix="/photos/"))
    data = photo(1)
    asset, _ = asset_for(data, "IMG_0001.JPG")
    sha = asset.sha256
    key = store(dest, data)
    assert key == dest.key_for(asset) == f"photos/{sha[:2]}/{sha}/DCIM/100APPLE/IMG_0001.JPG"
    s3_server.admin.put_object(Bucket=s3_bucket, Key="elsewhere/x.jpg", Body=b"not ours")
    assert [o.key for o in dest.list()] == [key]  # list stays under the prefix
    assert [o.key for o in dest.list("elsewhere/")] == ["elsewhere/x.jpg"]


def test_headers_sent_and_metadata_stored(destination: S3Destination, s3_server: S3Server) -> None:
    sent: dict[str, list[dict[str, str]]] = {"PutObject": [], "UploadPart": []}
    for operation, seen in sent.items():
        destination.client.meta.events.register(
            f"before-send.s3.{operation}",
            lambda request, seen=seen, **_: seen.append(
                {k.lower(): _text(v) for k, v in request.headers.items()}
            ),
        )
    small, big = photo(2), photo(3, 11 * MIB)
    store(destination, small, "SMALL.JPG")
    store(destination, big, "BIG.JPG")
    assert len(sent["PutObject"]) == 1
    headers = sent["PutObject"][0]
    assert headers["content-md5"] == base64.b64encode(hashlib.md5(small).digest()).decode()
    sha = hashlib.sha256(small)
    assert headers["x-amz-checksum-sha256"] == base64.b64encode(sha.digest()).decode()
    assert headers["x-amz-meta-picpipe-sha256"] == sha.hexdigest()
    assert headers["content-type"] == "image/jpeg"
    parts = sent["UploadPart"]
    assert len(parts) == 3
    chunks = [big[i : i + 5 * MIB] for i in range(0, len(big), 5 * MIB)]
    assert [p["content-md5"] for p in parts] == [
        base64.b64encode(hashlib.md5(c).digest()).decode() for c in chunks
    ]
    client = s3_server.admin
    for data, name in ((small, "SMALL.JPG"), (big, "BIG.JPG")):
        key = destination.key_for(asset_for(data, name)[0])
        meta = client.head_object(Bucket=destination.bucket, Key=key)["Metadata"]
        assert meta == {"picpipe-sha256": hashlib.sha256(data).hexdigest()}


def test_a_wrong_md5_never_verifies(destination: S3Destination) -> None:
    """moto does not check Content-MD5 (S3 answers BadDigest); the ETag check catches it."""
    data = photo(4)
    asset, digests = asset_for(data, "WRONG_MD5.JPG")
    wrong = Digests(digests.size, digests.sha256, md5=hashlib.md5(b"other bytes").hexdigest())
    key = destination.key_for(asset)
    with pytest.raises(IntegrityMismatch, match="ETag"):
        destination.put(key, io.BytesIO(data), digests=wrong, asset=asset)
    assert not destination.verify(key, wrong).ok
    assert destination.verify(key, digests).ok  # the bytes themselves are the asset's


def test_cheap_verify_needs_our_sha256_metadata(
    destination: S3Destination, s3_server: S3Server
) -> None:
    data = photo(5)
    asset, digests = asset_for(data, "BY_ANOTHER_TOOL.JPG")
    key = destination.key_for(asset)
    s3_server.admin.put_object(Bucket=destination.bucket, Key=key, Body=data)
    outcome = destination.verify(key, digests)
    assert not outcome.ok
    assert "metadata" in outcome.detail
    assert destination.verify(key, digests, deep=True).ok


def test_bytes_that_are_not_the_asset_are_never_sent(destination: S3Destination) -> None:
    claimed = photo(6, 7 * MIB)
    sent = bytearray(claimed)
    sent[-1] ^= 1  # the last part differs: found only after every part went up
    asset, digests = asset_for(claimed, "CHANGED.JPG")
    key = destination.key_for(asset)
    with pytest.raises(IntegrityMismatch, match="not the asset"):
        destination.put(key, io.BytesIO(bytes(sent)), digests=digests, asset=asset)
    assert destination.stat(key) is None
    with pytest.raises(IntegrityMismatch, match="not the asset"):
        destination.put(key, io.BytesIO(claimed + b"tail"), digests=digests, asset=asset)
    parts = _count_calls(destination, "UploadPart")
    with pytest.raises(IntegrityMismatch, match="not the asset"):
        destination.put(key, io.BytesIO(claimed[: 6 * MIB]), digests=digests, asset=asset)
    assert parts == [1]  # stopped where the stream ended, not after empty parts
    assert destination.stat(key) is None


def test_check_removes_its_probe(destination: S3Destination, s3_server: S3Server) -> None:
    assert destination.check().ok
    assert s3_server.admin.list_objects_v2(Bucket=destination.bucket).get("Contents", []) == []


# -- resumable multipart ------------------------------------------------------------------


class Interrupted(Exception):
    pass


class BreakingStream(io.BytesIO):
    """Raises once the reader reaches ``fail_at`` (a cable pulled, a process stopped)."""

    def __init__(self, data: bytes, fail_at: int) -> None:
        super().__init__(data)
        self.fail_at = fail_at

    def read(self, size: int | None = -1) -> bytes:
        wanted = len(self.getvalue()) - self.tell() if size is None or size < 0 else size
        if self.tell() + wanted > self.fail_at:
            raise Interrupted
        return super().read(size)


def _count_calls(dest: S3Destination, operation: str) -> list[int]:
    calls: list[int] = []
    dest.client.meta.events.register(
        f"before-parameter-build.s3.{operation}",
        lambda params, **_: calls.append(params.get("PartNumber", 0)),
    )
    return calls


def _uploads(s3_server: S3Server, bucket: str) -> list[dict[str, Any]]:
    uploads: list[dict[str, Any]] = s3_server.admin.list_multipart_uploads(Bucket=bucket).get(
        "Uploads", []
    )
    return uploads


def test_an_interrupted_multipart_upload_resumes_with_the_missing_parts(
    destination: S3Destination, s3_server: S3Server
) -> None:
    data = photo(7, 23 * MIB)  # parts of 5, 5, 5, 5 and 3 MiB
    asset, digests = asset_for(data, "RESUMED.MOV")
    key = destination.key_for(asset)
    parts = _count_calls(destination, "UploadPart")
    states: list[dict[str, Any]] = []
    with pytest.raises(Interrupted):
        destination.put(
            key, BreakingStream(data, 12 * MIB), digests=digests, asset=asset,
            checkpoint=states.append,
        )  # fmt: skip
    assert parts == [1, 2]
    assert len(states) == 1
    assert states[0]["key"] == key
    assert states[0]["part_size"] == 5 * MIB
    assert destination.stat(key) is None  # nothing visible before Complete

    parts.clear()
    destination.put(
        key, io.BytesIO(data), digests=digests, asset=asset,
        resume=states[0], checkpoint=states.append,
    )  # fmt: skip
    assert parts == [3, 4, 5]
    assert len(states) == 1  # the same upload went on
    assert destination.verify(key, digests).ok
    assert destination.verify(key, digests, deep=True).ok
    assert _uploads(s3_server, destination.bucket) == []


def test_a_part_the_server_holds_wrongly_is_sent_again(
    destination: S3Destination, s3_server: S3Server
) -> None:
    data = photo(8, 12 * MIB)
    asset, digests = asset_for(data, "REPAIRED.MOV")
    key = destination.key_for(asset)
    states: list[dict[str, Any]] = []
    with pytest.raises(Interrupted):
        destination.put(
            key, BreakingStream(data, 11 * MIB), digests=digests, asset=asset,
            checkpoint=states.append,
        )  # fmt: skip
    s3_server.admin.upload_part(  # part 2 replaced by other bytes behind our back
        Bucket=destination.bucket, Key=key, UploadId=states[0]["upload_id"], PartNumber=2,
        Body=b"\0" * 5 * MIB,
    )  # fmt: skip
    parts = _count_calls(destination, "UploadPart")
    destination.put(key, io.BytesIO(data), digests=digests, asset=asset, resume=states[0])
    assert parts == [2, 3]
    assert destination.verify(key, digests, deep=True).ok


def test_an_upload_that_is_gone_starts_over(
    destination: S3Destination, s3_server: S3Server
) -> None:
    data = photo(9, 11 * MIB)
    asset, digests = asset_for(data, "EXPIRED.MOV")
    key = destination.key_for(asset)
    states: list[dict[str, Any]] = []
    with pytest.raises(Interrupted):
        destination.put(
            key, BreakingStream(data, 6 * MIB), digests=digests, asset=asset,
            checkpoint=states.append,
        )  # fmt: skip
    s3_server.admin.abort_multipart_upload(  # a lifecycle rule expired it
        Bucket=destination.bucket, Key=key, UploadId=states[0]["upload_id"]
    )
    parts = _count_calls(destination, "UploadPart")
    destination.put(
        key, io.BytesIO(data), digests=digests, asset=asset,
        resume=states[0], checkpoint=states.append,
    )  # fmt: skip
    assert parts == [1, 2, 3]
    assert len(states) == 2
    assert states[1]["upload_id"] != states[0]["upload_id"]
    assert destination.verify(key, digests, deep=True).ok


def test_a_completed_upload_whose_answer_was_lost_is_not_sent_again(
    destination: S3Destination,
) -> None:
    data = photo(10, 6 * MIB)
    asset, digests = asset_for(data, "LOST_ANSWER.MOV")
    key = destination.key_for(asset)
    states: list[dict[str, Any]] = []
    destination.put(key, io.BytesIO(data), digests=digests, asset=asset, checkpoint=states.append)
    parts = _count_calls(destination, "UploadPart")
    again = destination.put(key, io.BytesIO(data), digests=digests, asset=asset, resume=states[0])
    assert parts == []
    assert again.sha256 == digests.sha256


def test_a_permanent_failure_aborts_our_own_upload(
    destination: S3Destination, s3_server: S3Server
) -> None:
    def refuse(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:  # botocore's canned-answer seam
        error = {"Code": "InvalidPart", "Message": "One or more parts could not be found."}
        answer = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}
        return AWSResponse("", 400, {}, None), answer

    destination.client.meta.events.register("before-call.s3.CompleteMultipartUpload", refuse)
    data = photo(11, 6 * MIB)
    asset, digests = asset_for(data, "REFUSED.MOV")
    with pytest.raises(DestinationRejected, match="InvalidPart"):
        destination.put(destination.key_for(asset), io.BytesIO(data), digests=digests, asset=asset)
    assert _uploads(s3_server, destination.bucket) == []


# -- credentials, configuration, connection report -----------------------------------------


def test_credentials_from_environment_and_file(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("S3_KEY_ID", s3_server.access_key_id)
    (tmp_path / "secret").write_text(s3_server.secret_access_key + "\n")
    config = s3_server.destination_config(s3_bucket)
    del config["access_key_id"], config["secret_access_key"]
    config |= {"access_key_id_env": "S3_KEY_ID", "secret_access_key_file": str(tmp_path / "secret")}
    dest = open_destination("cloud", config)
    assert dest.check().ok
    key = store(dest, photo(12))
    assert dest.verify(key, Digests.of_bytes(photo(12))).ok


def test_boto3_default_chain_is_used_without_credential_options(
    s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = s3_server.destination_config(s3_bucket)
    del config["access_key_id"], config["secret_access_key"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    assert open_destination("cloud", config).check().ok
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to look for
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    report = open_destination("cloud", config).check()
    assert not report.authenticated
    assert "no credentials" in report.detail


def test_secrets_never_reach_messages(s3_server: S3Server, s3_bucket: str) -> None:
    secret = "s3cr3t-value-that-must-not-leak"
    config = s3_server.destination_config(s3_bucket, secret_access_key=secret)
    dest = open_destination("cloud", config)
    report = dest.check()
    assert not report.authenticated
    assert secret not in report.detail
    data = photo(13)
    asset, digests = asset_for(data)
    with pytest.raises(DestinationAuthFailed) as caught:
        dest.put(dest.key_for(asset), io.BytesIO(data), digests=digests, asset=asset)
    assert secret not in str(caught.value)
    assert secret not in repr(dest.options)  # type: ignore[attr-defined]


def test_an_unknown_access_key_is_not_authenticated(s3_server: S3Server, s3_bucket: str) -> None:
    config = s3_server.destination_config(s3_bucket, access_key_id="AKIAUNKNOWNKEY000000")
    report = open_destination("cloud", config).check()
    assert (report.reachable, report.authenticated, report.writable) == (True, False, False)
    assert "InvalidAccessKeyId" in report.detail


def test_a_missing_bucket_is_a_configuration_error(s3_server: S3Server) -> None:
    dest = open_destination("cloud", s3_server.destination_config("no-such-bucket-here"))
    report = dest.check()
    assert (report.reachable, report.authenticated, report.writable) == (True, True, False)
    assert "NoSuchBucket" in report.detail
    data = photo(14)
    asset, digests = asset_for(data)
    with pytest.raises(DestinationMisconfigured):
        dest.put(dest.key_for(asset), io.BytesIO(data), digests=digests, asset=asset)


def test_half_given_credentials_and_missing_variables(s3_server: S3Server, s3_bucket: str) -> None:
    config = s3_server.destination_config(s3_bucket)
    del config["secret_access_key"]
    report = open_destination("cloud", config).check()
    assert not report.ok
    assert "both" in report.detail
    config["secret_access_key_env"] = "PICPIPE_TEST_UNSET_VARIABLE"
    with pytest.raises(DestinationMisconfigured, match="PICPIPE_TEST_UNSET_VARIABLE"):
        open_destination("cloud", config).stat("x")


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="part_size_mb"):
        open_destination("cloud", {"kind": "s3", "bucket": "b", "part_size_mb": 1})
    with pytest.raises(ConfigError, match="addressing_style"):
        open_destination("cloud", {"kind": "s3", "bucket": "b", "addressing_style": "dns"})
    with pytest.raises(ConfigError, match="no_such_option"):
        open_destination("cloud", {"kind": "s3", "bucket": "b", "no_such_option": 1})


def test_an_unreachable_server_is_retryable(s3_bucket: str, s3_server: S3Server) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = s3_server.destination_config(s3_bucket, endpoint_url=f"http://127.0.0.1:{port}")
    dest = open_destination("cloud", config)
    report = dest.check()
    assert not report.reachable
    data = photo(15)
    asset, digests = asset_for(data)
    with pytest.raises(DestinationUnavailable) as caught:
        dest.put(dest.key_for(asset), io.BytesIO(data), digests=digests, asset=asset)
    assert caught.value.retryable


# -- error mapping: every exception boto3 can raise becomes a picpipe error ----------------


def _client_error(code: str, status: int) -> ClientError:
    error = {"Code": code, "Message": "key the-secret refused"}
    answer = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(answer, "PutObject")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_client_error("AccessDenied", 403), DestinationAuthFailed),
        (_client_error("InvalidAccessKeyId", 403), DestinationAuthFailed),
        (_client_error("SignatureDoesNotMatch", 403), DestinationAuthFailed),
        (_client_error("403", 403), DestinationAuthFailed),
        (_client_error("NoSuchBucket", 404), DestinationMisconfigured),
        (_client_error("PermanentRedirect", 301), DestinationMisconfigured),
        (_client_error("RequestTimeTooSkewed", 403), DestinationMisconfigured),
        (_client_error("SlowDown", 503), DestinationUnavailable),
        (_client_error("503", 503), DestinationUnavailable),
        (_client_error("InternalError", 500), DestinationUnavailable),
        (_client_error("RequestTimeout", 400), DestinationUnavailable),
        (_client_error("Throttling", 400), DestinationUnavailable),
        (_client_error("429", 429), DestinationUnavailable),
        (_client_error("NoSuchUpload", 404), DestinationUnavailable),
        (_client_error("BadDigest", 400), IntegrityMismatch),
        (_client_error("InvalidDigest", 400), DestinationRejected),
        (_client_error("EntityTooLarge", 400), DestinationRejected),
        (_client_error("KeyTooLongError", 400), DestinationRejected),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), DestinationUnavailable),
        (ConnectionClosedError(endpoint_url="http://127.0.0.1:1"), DestinationUnavailable),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), DestinationUnavailable),
        (ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"), DestinationUnavailable),
        (ResponseStreamingError(error="cut"), DestinationUnavailable),
        (IncompleteReadError(actual_bytes=1, expected_bytes=2), DestinationUnavailable),
        (ProtocolError("Connection broken"), DestinationUnavailable),
        (ConnectionResetError(104, "reset"), DestinationUnavailable),
        (
            SSLError(endpoint_url="https://x", error="CERTIFICATE_VERIFY_FAILED"),
            DestinationMisconfigured,
        ),
        (NoCredentialsError(), DestinationAuthFailed),
        (ParamValidationError(report="bad key"), DestinationRejected),
        (ResponseParserError("truncated XML"), DestinationUnavailable),
        (ValueError('Invalid timestamp "S"'), DestinationUnavailable),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v.__name__,
)
def test_every_sdk_error_is_mapped(exc: BaseException, expected: type) -> None:
    mapped = map_error(exc, destination="cloud", key="k", hide=("the-secret",))
    assert type(mapped) is expected
    assert mapped.retryable == expected.retryable
    assert "the-secret" not in str(mapped)  # hide= values are blanked out


# -- a flaky network -----------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_through_a_faulty_network_every_put_verifies_or_fails_retryably(
    s3_server: S3Server, s3_bucket: str
) -> None:
    """Drops, resets, stalls and 5xx/429 answers: a put either returns an object that verifies
    (checked straight at the server) or raises a retryable error in bounded time."""
    direct = open_destination("direct", s3_server.destination_config(s3_bucket, **SMALL))
    blobs = [photo(100 + i, (6 * MIB) if i % 4 == 0 else 0) for i in range(12)]
    with FaultProxy(s3_server.host, s3_server.port, seed=11) as proxy:
        flaky = open_destination(
            "flaky",
            s3_server.destination_config(
                s3_bucket, endpoint_url=proxy.url, read_timeout=1.0, **SMALL
            ),
        )
        proxy.faults(
            "drop", "drop", "reset", "status", "status", "stall", "cut",
            probability=0.5, stall=1.5, statuses=(500, 503, 429),
        )  # fmt: skip
        verified: set[int] = set()
        failures: list[DestinationUnavailable | IntegrityMismatch] = []
        states: dict[int, dict[str, Any]] = {}
        for _round in range(4):
            for i, data in enumerate(blobs):
                if i in verified:
                    continue
                asset, digests = asset_for(data, f"FLAKY_{i:02d}.JPG")
                key = flaky.key_for(asset)
                try:
                    flaky.put(
                        key, io.BytesIO(data), digests=digests, asset=asset,
                        resume=states.get(i), checkpoint=partial(states.__setitem__, i),
                    )  # fmt: skip
                except (DestinationUnavailable, IntegrityMismatch) as exc:
                    failures.append(exc)
                    continue
                outcome = direct.verify(key, digests, deep=True)
                assert outcome.ok, outcome.detail
                verified.add(i)
        injected, counts = proxy.injected, proxy.counts()
        proxy.faults()
        for i, data in enumerate(blobs):  # the network heals: the rest go through
            if i not in verified:
                asset, digests = asset_for(data, f"FLAKY_{i:02d}.JPG")
                key = flaky.put(
                    flaky.key_for(asset), io.BytesIO(data), digests=digests, asset=asset,
                    resume=states.get(i),
                ).key  # fmt: skip
                assert direct.verify(key, digests, deep=True).ok
        flaky.close()
    assert injected > 5, str(counts)
    assert failures  # the faults were felt, and each was a retryable error
    assert all(exc.retryable for exc in failures)
    assert len({o.key for o in direct.list()}) == len(blobs)
