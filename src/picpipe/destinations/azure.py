"""The ``azure`` destination: Azure Blob Storage through the official SDK (azure-storage-blob).

Every replica is a block blob. Up to ``single_put_threshold_mb`` one Put Blob carries the asset's
MD5 as transactional Content-MD5, so the service refuses a body that is not the asset's bytes,
and keeps it as the blob's Content-MD5. Bigger assets are staged as blocks with deterministic ids
(asset, block size, index) and per-block transactional MD5s, ``block_concurrency`` at a time;
nothing is visible until Put Block List commits them, with the whole blob's MD5 as Content-MD5.
The service does not check that MD5 against the blocks, so ``put`` hashes the bytes itself and
never commits ones that are not the asset's. An interrupted upload resumes: blocks already
staged under the right id and size are not sent again (the service keeps uncommitted blocks for
a week; `picpipe.destinations.azure_blocks`). Our SHA-256 goes in the blob's metadata
(``picpipe_sha256``).

Cheap ``verify`` compares size, stored Content-MD5 and that metadata (so it confirms what was
committed, not the disks since); deep re-reads and hashes, as does any verify without an MD5.
404s count as "missing" only with the service's BlobNotFound code, never from a stray web server.

Auth: ``connection_string``, ``sas_token`` or ``account_key``, at most one; none means
``DefaultAzureCredential`` (managed identity, workload identity, Azure CLI…), whose package is
imported only then.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path  # noqa: TC003 - pydantic resolves field types at runtime
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Literal, Self
from urllib.parse import urlsplit

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings, LinearRetry, StandardBlobTier
from pydantic import Field, SecretStr, model_validator

from picpipe.destinations.azure_blocks import (
    MIB,
    BlockUpload,
    check_stream_end,
    etag_of,
    read_exactly,
)
from picpipe.destinations.azure_sdk import (
    NOT_PERMITTED,
    QUIET_LOGGERS,
    SAS_LOGGERS,
    error_code,
    map_error,
    quiet,
    transport,
)
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
    require_snapshot_key,
    resolve_secret,
    verify_by_reading,
)
from picpipe.errors import (
    DestinationAuthFailed,
    DestinationError,
    DestinationMisconfigured,
    DestinationUnavailable,
    IntegrityMismatch,
)
from picpipe.hashing import md5_bytes, sha256_bytes

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from azure.storage.blob import BlobClient, BlobProperties

SHA256_META = "picpipe_sha256"
PROBE_NAME = ".picpipe-probe"
PROBE_BLOCK = "picpipe-probe"
SECRETS = ("connection_string", "sas_token", "account_key")
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
        quiet(QUIET_LOGGERS)

    def key_for(self, asset: AssetRef) -> str:
        return render_layout(self._layout, asset, self.options.prefix)

    def stat(self, key: str) -> RemoteObject | None:
        try:
            props = self._blob(key).get_blob_properties()
        except ResourceNotFoundError as exc:
            if error_code(exc) != "BlobNotFound":
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
        single = digests.size <= self.options.single_put_threshold_mb * MIB
        if single:
            md5, etag = self._put_single(key, data, digests, settings)
        else:
            metadata = {SHA256_META: digests.sha256}
            md5, etag = self._blocks().put(key, data, digests, settings, metadata, checkpoint)
        return RemoteObject(
            key=key,
            size=digests.size,
            sha256=digests.sha256,
            md5=md5,
            etag=etag,
            # Put Blob with a transactional MD5 is refused unless the stored bytes have it.
            server_checked=single and digests.md5 is not None,
        )

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
            if error_code(exc) != "BlobNotFound":
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

    def remove_snapshot(self, key: str) -> None:
        require_snapshot_key(self.name, key)
        try:
            self._blob(key).delete_blob()
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise self._error(exc, key) from exc

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
            if isinstance(error, DestinationAuthFailed) and error_code(exc) not in NOT_PERMITTED:
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
        body = read_exactly(data, digests.size, self.name, key)
        md5 = digests.md5
        found = None
        if md5 is None:  # the engine fills it (caps.needs); computed here only if it did not
            found = sha256_bytes(body)
            md5 = md5_bytes(body).hex()
        check_stream_end(data, digests, found, self.name, key)
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
        return md5, etag_of(sent)

    def _blocks(self) -> BlockUpload:
        # The blob client is passed as a getter: the container client is built on first use.
        return BlockUpload(
            self.name,
            self._blob,
            self._error,
            block_size_mb=self.options.block_size_mb,
            concurrency=self.options.block_concurrency,
            tier=self._tier,
        )

    def _verify_deep(self, key: str, digests: Digests) -> Verification:
        return verify_by_reading(key, self.read(key), digests)

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
            "transport": transport(),
            # One quick SDK retry; the engine's backoff (jobs/retry.py) decides the rest.
            "retry_policy": LinearRetry(backoff=1, random_jitter_range=1, retry_total=1),
            "max_single_put_size": o.single_put_threshold_mb * MIB,
        }
        if conn := self._secret("connection string", "connection_string"):
            if "sharedaccesssignature=" in conn.lower():
                quiet(SAS_LOGGERS)
            try:
                return ContainerClient.from_connection_string(conn, o.container, **settings)
            except ValueError as exc:
                raise DestinationMisconfigured(
                    destination=self.name, detail="connection_string is not valid"
                ) from exc
        assert o.account_url is not None  # the options' validator
        credential: Any
        if sas := self._secret("SAS token", "sas_token"):
            quiet(SAS_LOGGERS)
            credential = AzureSasCredential(sas.lstrip("?"))
        elif key := self._secret("account key", "account_key"):
            credential = AzureNamedKeyCredential(
                o.account_name or _account_name(o.account_url), key
            )
        else:
            from azure.identity import DefaultAzureCredential  # heavy; only for this auth

            credential = self._credential = DefaultAzureCredential()
        try:
            return ContainerClient(o.account_url, o.container, credential=credential, **settings)
        except ValueError as exc:  # e.g. a SAS both in account_url and as sas_token
            raise DestinationMisconfigured(
                destination=self.name, detail=f"account_url cannot be used: {exc}"
            ) from exc

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
        """The picpipe error for an SDK error (`picpipe.destinations.azure_sdk.map_error`)."""
        return map_error(
            exc,
            destination=self.name,
            key=key,
            container=self.options.container,
            hide=self._secrets,
            default_credential=self._credential is not None,
        )


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
