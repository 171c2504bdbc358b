"""The ``azure`` destination: Azure Blob Storage through the official SDK (azure-storage-blob).

Every replica is a block blob. Up to ``single_put_threshold_mb`` one Put Blob carries the asset's
MD5 as transactional Content-MD5, so the service refuses a body that is not the asset's bytes,
and keeps it as the blob's Content-MD5. Bigger assets are staged as blocks with deterministic ids
(asset, block size, index) and per-block transactional MD5s, ``block_concurrency`` at a time;
nothing is visible until Put Block List commits them, with the whole blob's MD5 as Content-MD5.
The service does not check that MD5 against the blocks, so ``put`` hashes the bytes itself and
never commits ones that are not the asset's. An interrupted upload resumes: blocks already
staged under the right id and size are not sent again (the service keeps uncommitted blocks for
a week). Our SHA-256 goes in the blob's metadata (``picpipe_sha256``).

Cheap ``verify`` compares size, stored Content-MD5 and that metadata (so it confirms what was
committed, not the disks since); deep re-reads and hashes, as does any verify without an MD5.
404s count as "missing" only with the service's BlobNotFound code, never from a stray web server.

Auth: ``connection_string``, ``sas_token`` or ``account_key``, at most one; none means
``DefaultAzureCredential`` (managed identity, workload identity, Azure CLI…), whose package is
imported only then.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path  # noqa: TC003 - pydantic resolves field types at runtime
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Literal, Self
from urllib.parse import urlsplit

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import ContainerClient, ContentSettings, LinearRetry, StandardBlobTier
from pydantic import Field, SecretStr, model_validator

from picpipe.destinations.base import (
    OBJECT_STORE_LAYOUT,
    AssetRef,
    ConnectionReport,
    DestinationCaps,
    DestinationOptions,
    Digests,
    RemoteObject,
    Verification,
    render_layout,
    resolve_secret,
)
from picpipe.errors import (
    DestinationAuthFailed,
    DestinationError,
    DestinationMisconfigured,
    DestinationRejected,
    DestinationUnavailable,
    IntegrityMismatch,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from azure.storage.blob import BlobClient, BlobProperties

MIB = 1 << 20
SHA256_META = "picpipe_sha256"
MAX_BLOCKS = 50_000  # per blob, a service limit
POOL_SIZE = 64  # connections kept per account host
PROBE_NAME = ".picpipe-probe"
PROBE_BLOCK = "picpipe-probe"
SECRETS = ("connection_string", "sas_token", "account_key")
# The SDK logs request headers and URLs at INFO; the SAS and signatures must never reach a log.
QUIET_LOGGERS = (
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.storage",
    "azure.identity",
)
# urllib3 logs each request line, query string included, at DEBUG: with a SAS that is the secret.
SAS_LOGGERS = ("urllib3.connectionpool",)
_CREDENTIAL_TEXT = re.compile(r"(?i)(sig|accountkey|sharedaccesssignature)=[^&;\s'\"]+")
_QUERY = re.compile(r"\?[^\s'\"]*")
_ENV = "name of an environment variable holding {}"
_FILE = "file holding {}"


class AzureOptions(DestinationOptions):
    """A container in an Azure Storage account (or Azurite)."""

    kind: str = "azure"
    account_url: str | None = Field(
        default=None,
        description="blob endpoint, e.g. https://ACCOUNT.blob.core.windows.net "
        "(not needed with connection_string)",
    )
    container: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", description="container name; it must exist"
    )
    prefix: str = Field(
        default="", description="folder in the container ({prefix} in the layout), e.g. photos"
    )
    connection_string: SecretStr | None = Field(
        default=None,
        description="connection string; give at most one of connection_string, sas_token, "
        "account_key (none: DefaultAzureCredential: managed identity, workload identity, az login)",
    )
    connection_string_env: str | None = Field(
        default=None, description=_ENV.format("the connection string")
    )
    connection_string_file: Path | None = Field(
        default=None, description=_FILE.format("the connection string")
    )
    sas_token: SecretStr | None = Field(
        default=None, description="SAS token with read, add, create, write, list on the container"
    )
    sas_token_env: str | None = Field(default=None, description=_ENV.format("the SAS token"))
    sas_token_file: Path | None = Field(default=None, description=_FILE.format("the SAS token"))
    account_key: SecretStr | None = Field(default=None, description="storage account key")
    account_key_env: str | None = Field(default=None, description=_ENV.format("the account key"))
    account_key_file: Path | None = Field(default=None, description=_FILE.format("the account key"))
    account_name: str | None = Field(
        default=None, description="account name for account_key (default: from account_url)"
    )
    block_size_mb: int = Field(
        default=8, ge=1, le=4000, description="block size of uploads above the threshold"
    )
    block_concurrency: int = Field(
        default=4, ge=1, le=32, description="blocks of one upload in flight at once"
    )
    single_put_threshold_mb: int = Field(
        default=64,
        ge=1,
        le=5000,
        description="up to this size one request; above, resumable blocks",
    )
    access_tier: Literal["Hot", "Cool", "Cold", "Archive"] | None = Field(
        default=None, description="tier of new blobs (default: the account's; Archive: no re-read)"
    )

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> Self:
        given = [s for s in SECRETS if any(getattr(self, s + end) for end in ("", "_env", "_file"))]
        if len(given) > 1:
            raise ValueError(
                f"give at most one of {', '.join(SECRETS)} (got {', '.join(given)}); "
                "none means DefaultAzureCredential"
            )
        if self.account_url is None and given != ["connection_string"]:
            raise ValueError("account_url is required unless connection_string is given")
        if not given and self.account_url and not self.account_url.startswith("https://"):
            raise ValueError("DefaultAzureCredential needs an https:// account_url")
        return self


class AzureDestination:
    """Replicas as block blobs in one container; `picpipe.destinations.base` has the contract."""

    kind: ClassVar[str] = "azure"
    caps: ClassVar[DestinationCaps] = DestinationCaps(
        remote_checksum="md5",
        resumable=True,
        needs=frozenset({"md5"}),
        default_layout=OBJECT_STORE_LAYOUT,
    )
    Options: ClassVar[type[DestinationOptions]] = AzureOptions

    def __init__(
        self, name: str, options: DestinationOptions, *, client: ContainerClient | None = None
    ) -> None:
        """``client`` replaces the one built from the options (tests); otherwise the SDK client
        and its credential are made on first use, so opening reads no secret and does no I/O."""
        assert isinstance(options, AzureOptions)
        self.name = name
        self.options = options
        self._layout = options.layout or self.caps.default_layout
        self._tier = StandardBlobTier(options.access_tier) if options.access_tier else None
        self._client = client
        self._credential: Any = None  # DefaultAzureCredential, closed by close()
        self._secrets: list[str] = []  # resolved values, scrubbed from every message
        self._lock = threading.Lock()
        _quiet(QUIET_LOGGERS)

    def key_for(self, asset: AssetRef) -> str:
        return render_layout(self._layout, asset, self.options.prefix)

    def stat(self, key: str) -> RemoteObject | None:
        try:
            props = self._blob(key).get_blob_properties()
        except ResourceNotFoundError as exc:
            if _code(exc) != "BlobNotFound":
                raise self._error(exc, key) from exc
            return None
        except AzureError as exc:
            raise self._error(exc, key) from exc
        return _remote(key, props)

    def put(
        self,
        key: str,
        data: BinaryIO,
        *,
        digests: Digests,
        asset: AssetRef,
        resume: dict[str, Any] | None = None,
        checkpoint: Callable[[dict[str, Any]], None] | None = None,
    ) -> RemoteObject:
        # ``resume`` is not needed: the service's list of uncommitted blocks is the truth, and
        # is asked on every block upload (also after a crash before the first checkpoint).
        settings = ContentSettings(content_type=asset.mime_type or "application/octet-stream")
        if digests.size <= self.options.single_put_threshold_mb * MIB:
            md5, etag = self._put_single(key, data, digests, settings)
        else:
            md5, etag = self._put_blocks(key, data, digests, settings, checkpoint)
        return RemoteObject(key=key, size=digests.size, sha256=digests.sha256, md5=md5, etag=etag)

    def verify(self, key: str, digests: Digests, *, deep: bool = False) -> Verification:
        if deep or digests.md5 is None:
            return self._verify_deep(key, digests)
        method = "size + content-md5"
        remote = self.stat(key)
        if remote is None:
            return Verification(False, key, method, "missing")
        if remote.size != digests.size:
            return Verification(False, key, method, f"size {remote.size} != {digests.size}", remote)
        if remote.md5 is None:
            return Verification(False, key, method, "no Content-MD5 stored", remote)
        if remote.md5 != digests.md5:
            return Verification(False, key, method, "content-md5 differs", remote)
        if remote.sha256 != digests.sha256:
            return Verification(False, key, method, f"metadata {SHA256_META} differs", remote)
        return Verification(True, key, method, remote=remote)

    def read(self, key: str) -> Iterator[bytes]:
        try:
            downloader = self._blob(key).download_blob(max_concurrency=1)
            yield from downloader.chunks()
        except ResourceNotFoundError as exc:
            if _code(exc) != "BlobNotFound":
                raise self._error(exc, key) from exc
            raise self._mismatch(key, "missing") from exc
        except AzureError as exc:
            raise self._error(exc, key) from exc

    def list(self, prefix: str = "") -> Iterator[RemoteObject]:
        own = self.options.prefix.strip("/")
        if not prefix and own and "{prefix}" in self._layout:
            prefix = own + "/"  # only this destination's part of a shared container
        try:
            for props in self._container().list_blobs(
                name_starts_with=prefix or None, include=["metadata"]
            ):
                yield _remote(props.name, props)
        except AzureError as exc:
            raise self._error(exc, prefix) from exc

    def check(self) -> ConnectionReport:
        # The probe is one uncommitted block: Put Block needs the same permission as Put Blob,
        # yet no blob appears, so there is nothing to delete (a SAS may rightly lack delete).
        report = ConnectionReport(self.name, self.kind, False, False, False)
        probe = "/".join(p for p in (self.options.prefix.strip("/"), PROBE_NAME) if p)
        try:
            self._blob(probe).stage_block(PROBE_BLOCK, b"picpipe", length=7)
        except DestinationError as exc:  # options that cannot make a client
            return replace(report, detail=exc.message)
        except AzureError as exc:
            error = self._error(exc, probe)
            if isinstance(error, DestinationUnavailable):
                return replace(report, detail=error.message)
            answered = getattr(exc, "status_code", None) is not None  # not so if no token
            if isinstance(error, DestinationAuthFailed) and _code(exc) not in _NOT_PERMITTED:
                return replace(report, reachable=answered, detail=error.message)
            return replace(report, reachable=True, authenticated=True, detail=error.message)
        return replace(report, reachable=True, authenticated=True, writable=True)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            if self._credential is not None:
                self._credential.close()
            self._client = self._credential = None

    # -- helpers ---------------------------------------------------------------------------

    def _put_single(
        self, key: str, data: BinaryIO, digests: Digests, settings: ContentSettings
    ) -> tuple[str, str | None]:
        body = self._read(data, digests.size, key)
        md5 = digests.md5
        found = None
        if md5 is None:  # the engine fills it (caps.needs); computed here only if it did not
            found = hashlib.sha256(body).hexdigest()
            md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
        self._check_stream(data, key, digests, found)
        settings.content_md5 = bytearray.fromhex(md5)
        try:
            sent = self._blob(key).upload_blob(
                body,
                length=len(body),
                overwrite=True,
                metadata={SHA256_META: digests.sha256},
                content_settings=settings,
                standard_blob_tier=self._tier,
                # Passed through to Put Blob: the service rejects a body with another MD5.
                transactional_content_md5=bytes.fromhex(md5),
            )
        except AzureError as exc:
            raise self._error(exc, key) from exc
        return md5, _etag(sent)

    def _put_blocks(
        self,
        key: str,
        data: BinaryIO,
        digests: Digests,
        settings: ContentSettings,
        checkpoint: Callable[[dict[str, Any]], None] | None,
    ) -> tuple[str, str | None]:
        block = self.options.block_size_mb * MIB
        count = -(-digests.size // block)
        if count > MAX_BLOCKS:
            raise DestinationRejected(
                destination=self.name,
                key=key,
                detail=f"{count} blocks of {self.options.block_size_mb} MiB exceed the service's "
                f"{MAX_BLOCKS}; raise block_size_mb",
            )
        # Fixed width (the service wants equal-length ids); the block size is part of the id
        # so a changed setting never reuses blocks cut at other offsets.
        ids = [f"{digests.sha256[:16]}-{block:010d}-{i:06d}" for i in range(count)]
        blob = self._blob(key)
        staged = self._staged_blocks(blob, key)
        sha256 = hashlib.sha256()
        md5 = hashlib.md5(usedforsecurity=False) if digests.md5 is None else None
        done = 0  # blocks known to be staged (before, or by this call)
        # Reading and hashing stay in order on this thread; up to block_concurrency blocks are
        # in flight at once (memory: that many blocks), as rclone's upload_concurrency does.
        pool = ThreadPoolExecutor(self.options.block_concurrency, f"{self.name}-blocks")
        pending: set[Future[None]] = set()
        try:
            for index, block_id in enumerate(ids):
                size = min(block, digests.size - index * block)
                chunk = self._read(data, size, key)
                sha256.update(chunk)
                if md5 is not None:
                    md5.update(chunk)
                if staged.get(block_id) == size:
                    done += 1  # staged before an interruption; ids are deterministic
                    continue
                if len(pending) >= self.options.block_concurrency:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    done += _results(finished)
                    if checkpoint is not None:  # informational: the service's list decides
                        checkpoint({"block_size": block, "blocks": count, "staged": done})
                pending.add(pool.submit(self._stage, blob, key, block_id, chunk))
            done += _results(pending)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        self._check_stream(data, key, digests, sha256.hexdigest())
        whole = digests.md5 if md5 is None else md5.hexdigest()
        assert whole is not None
        settings.content_md5 = bytearray.fromhex(whole)
        try:
            committed = blob.commit_block_list(
                ids,  # type: ignore[arg-type]  # the SDK accepts ids as well as BlobBlocks
                content_settings=settings,
                metadata={SHA256_META: digests.sha256},
                standard_blob_tier=self._tier,
            )
        except AzureError as exc:
            raise self._error(exc, key) from exc
        return whole, _etag(committed)

    def _stage(self, blob: BlobClient, key: str, block_id: str, chunk: bytes) -> None:
        try:
            blob.stage_block(
                block_id,
                chunk,
                length=len(chunk),
                transactional_content_md5=hashlib.md5(chunk, usedforsecurity=False).digest(),
            )
        except AzureError as exc:
            raise self._error(exc, key) from exc

    def _staged_blocks(self, blob: BlobClient, key: str) -> dict[str, int]:
        """Block id → size of the blocks staged but not yet committed under ``key``."""
        try:
            _, uncommitted = blob.get_block_list("uncommitted")
        except ResourceNotFoundError as exc:
            if _code(exc) != "BlobNotFound":
                raise self._error(exc, key) from exc
            return {}
        except AzureError as exc:
            raise self._error(exc, key) from exc
        return {b.id: b.size for b in uncommitted}

    def _verify_deep(self, key: str, digests: Digests) -> Verification:
        method = "sha256 re-read"
        digest = hashlib.sha256()
        size = 0
        try:
            for chunk in self.read(key):
                size += len(chunk)
                digest.update(chunk)
        except IntegrityMismatch:
            return Verification(False, key, method, "missing")
        remote = RemoteObject(key=key, size=size, sha256=digest.hexdigest())
        if size != digests.size:
            return Verification(False, key, method, f"size {size} != {digests.size}", remote)
        if remote.sha256 != digests.sha256:
            return Verification(False, key, method, "sha256 differs", remote)
        return Verification(True, key, method, remote=remote)

    def _read(self, data: BinaryIO, size: int, key: str) -> bytes:
        parts: list[bytes] = []
        left = size
        while left and (chunk := data.read(left)):
            parts.append(chunk)
            left -= len(chunk)
        if left:
            raise self._mismatch(key, "the stream ended before its size")
        return b"".join(parts)  # no copy for one part

    def _check_stream(self, data: BinaryIO, key: str, digests: Digests, sha256: str | None) -> None:
        """Refuse a stream longer than the asset, or whose bytes hashed to another SHA-256."""
        if data.read(1):
            raise self._mismatch(key, "the stream is longer than its size")
        if sha256 is not None and sha256 != digests.sha256:
            raise self._mismatch(key, "the bytes read are not the asset's (sha256)")

    def _mismatch(self, key: str, detail: str) -> IntegrityMismatch:
        return IntegrityMismatch(destination=self.name, key=key, detail=detail)

    def _blob(self, key: str) -> BlobClient:
        return self._container().get_blob_client(key)

    def _container(self) -> ContainerClient:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> ContainerClient:
        o = self.options
        settings: dict[str, Any] = {
            "transport": _transport(),
            # One quick SDK retry; the engine's backoff (jobs/retry.py) decides the rest.
            "retry_policy": LinearRetry(backoff=1, random_jitter_range=1, retry_total=1),
            "max_single_put_size": o.single_put_threshold_mb * MIB,
        }
        if conn := self._secret("connection string", "connection_string"):
            if "sharedaccesssignature=" in conn.lower():
                _quiet(SAS_LOGGERS)
            try:
                return ContainerClient.from_connection_string(conn, o.container, **settings)
            except ValueError as exc:
                raise DestinationMisconfigured(
                    destination=self.name, detail="connection_string is not valid"
                ) from exc
        assert o.account_url is not None  # the options' validator
        credential: Any
        if sas := self._secret("SAS token", "sas_token"):
            _quiet(SAS_LOGGERS)
            credential = AzureSasCredential(sas.lstrip("?"))
        elif key := self._secret("account key", "account_key"):
            credential = AzureNamedKeyCredential(
                o.account_name or _account_name(o.account_url), key
            )
        else:
            from azure.identity import DefaultAzureCredential  # heavy; only for this auth

            credential = self._credential = DefaultAzureCredential()
        return ContainerClient(o.account_url, o.container, credential=credential, **settings)

    def _secret(self, what: str, field: str) -> str | None:
        o = self.options
        value = resolve_secret(
            self.name,
            what,
            getattr(o, field),
            getattr(o, f"{field}_env"),
            getattr(o, f"{field}_file"),
        )
        if value:
            self._secrets.append(value)
        return value

    def _error(self, exc: AzureError, key: str) -> DestinationError:
        """The picpipe error for an SDK error: retryable or not, with a message free of secrets."""
        if isinstance(exc, ServiceRequestError | ServiceResponseError | DecodeError):
            return DestinationUnavailable(destination=self.name, detail=self._clean(exc))
        if not isinstance(exc, HttpResponseError) or exc.status_code is None:
            if isinstance(exc, ClientAuthenticationError):  # no token, or a key that cannot sign
                hint = (
                    " (the log lists each source tried: managed identity, workload identity, "
                    "Azure CLI…; or set connection_string, sas_token or account_key)"
                    if self._credential is not None
                    else ""
                )
                return DestinationAuthFailed(destination=self.name, detail=self._clean(exc) + hint)
            return DestinationUnavailable(destination=self.name, detail=self._clean(exc))
        status, code = exc.status_code, _code(exc)
        detail = f"HTTP {status} {code}".rstrip()
        if code == "ContainerNotFound":
            return DestinationMisconfigured(
                destination=self.name,
                detail=f"container {self.options.container} does not exist (create it first)",
            )
        if status == 404 and not code:  # a proxy or web server, not the blob service
            return DestinationMisconfigured(
                destination=self.name,
                detail="the endpoint answered 404 without an Azure error code; check account_url",
            )
        if status in {401, 403} or isinstance(exc, ClientAuthenticationError):
            return DestinationAuthFailed(destination=self.name, detail=detail)
        if status in {408, 429} or status >= 500 or code in _RETRYABLE:
            return DestinationUnavailable(destination=self.name, detail=detail)
        if code in {"Md5Mismatch", "InvalidMd5"} or (status == 400 and "md5" in str(exc).lower()):
            # Azurite says InvalidOperation "Provided contentMD5 doesn't match".
            return self._mismatch(key, "the service received other bytes (Content-MD5)")
        return DestinationRejected(destination=self.name, key=key, detail=detail)

    def _clean(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        for secret in self._secrets:
            text = text.replace(secret, "********")
        return _QUERY.sub("?…", _CREDENTIAL_TEXT.sub(r"\1=********", text))[:300]


# Codes worth another try: busy, timed out, or a block list another put of the key discarded.
_RETRYABLE = frozenset({"ServerBusy", "OperationTimedOut", "InternalError", "InvalidBlockList"})
# 403s that mean "signed in, but this credential may not write here".
_NOT_PERMITTED = frozenset({"AuthorizationPermissionMismatch", "AuthorizationResourceTypeMismatch"})


def _transport() -> RequestsTransport:
    """azure-core's requests transport, bounded timeouts, and a pool for many threads.

    Its default adapter keeps 10 connections; concurrent puts times their block threads need
    more, or urllib3 drops connections (with a warning) and every request connects again.
    """
    import requests  # azure-core's HTTP client
    from urllib3.util.retry import Retry

    session = requests.Session()
    # The SDK's retry policy, not urllib3's, retries (as azure-core configures its own adapter).
    adapter = requests.adapters.HTTPAdapter(
        pool_maxsize=POOL_SIZE,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    return RequestsTransport(
        session=session, session_owner=True, connection_timeout=5, read_timeout=60
    )


def _results(futures: set[Future[None]]) -> int:
    """Wait for ``futures``; raise the first failure. Returns how many there were."""
    for future in futures:
        future.result()
    return len(futures)


def _quiet(loggers: tuple[str, ...]) -> None:
    for name in loggers:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)


def _code(exc: AzureError) -> str:
    code = getattr(exc, "error_code", None)  # on HttpResponseError; a str enum or a str
    return str(getattr(code, "value", code) or "")


def _etag(headers: dict[str, Any]) -> str | None:
    etag = headers.get("etag")
    return str(etag) if etag else None


def _remote(key: str, props: BlobProperties) -> RemoteObject:
    stored = props.content_settings.content_md5
    return RemoteObject(
        key=key,
        size=props.size,
        sha256=(props.metadata or {}).get(SHA256_META),
        md5=bytes(stored).hex() if stored else None,
        etag=props.etag,
    )


def _account_name(account_url: str) -> str:
    """``acct`` of https://acct.blob.core.windows.net, or the first path segment (Azurite)."""
    parts = urlsplit(account_url)
    host = parts.hostname or ""
    if ".blob." in host:
        return host.split(".", 1)[0]
    return parts.path.strip("/").split("/", 1)[0]
