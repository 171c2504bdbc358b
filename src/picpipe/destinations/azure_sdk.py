"""How the ``azure`` destination uses azure-core: its HTTP transport, its loggers, its errors.

- `transport`: azure-core's requests transport with bounded timeouts and a pool big enough for
  many block threads;
- `quiet`: raises the SDK's (and urllib3's) loggers to WARNING, since below it they log request
  URLs and headers, SAS signatures included;
- `map_error`: an SDK exception → the picpipe error (retryable or not), with a message free of
  secrets, SAS signatures and query strings.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport

from picpipe.errors import (
    DestinationAuthFailed,
    DestinationError,
    DestinationMisconfigured,
    DestinationRejected,
    DestinationUnavailable,
    IntegrityMismatch,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

POOL_SIZE = 64  # connections kept per account host
# The SDK logs request headers and URLs at INFO; the SAS and signatures must never reach a log.
QUIET_LOGGERS = (
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.storage",
    "azure.identity",
)
# urllib3 logs each request line, query string included, at DEBUG: with a SAS that is the secret.
SAS_LOGGERS = ("urllib3.connectionpool",)
# 403s that mean "signed in, but this credential may not write here".
NOT_PERMITTED = frozenset({"AuthorizationPermissionMismatch", "AuthorizationResourceTypeMismatch"})
# Codes worth another try: busy, timed out, or a block list another put of the key discarded.
_RETRYABLE = frozenset({"ServerBusy", "OperationTimedOut", "InternalError", "InvalidBlockList"})
_CREDENTIAL_TEXT = re.compile(r"(?i)(sig|accountkey|sharedaccesssignature)=[^&;\s'\"]+")
_QUERY = re.compile(r"\?[^\s'\"]*")


def map_error(
    exc: AzureError,
    *,
    destination: str,
    key: str,
    container: str,
    hide: Sequence[str] = (),
    default_credential: bool = False,
) -> DestinationError:
    """The picpipe error for an SDK error: retryable or not, with a message free of secrets.

    ``hide``: secret values to blank out; ``default_credential``: the client signs in through
    DefaultAzureCredential (a failed sign-in then says where it looked).
    """
    if isinstance(exc, ServiceRequestError | ServiceResponseError | DecodeError):
        return DestinationUnavailable(destination=destination, detail=clean(exc, hide))
    if not isinstance(exc, HttpResponseError) or exc.status_code is None:
        if isinstance(exc, ClientAuthenticationError):  # no token, or a key that cannot sign
            hint = (
                " (the log lists each source tried: managed identity, workload identity, "
                "Azure CLI…; or set connection_string, sas_token or account_key)"
                if default_credential
                else ""
            )
            return DestinationAuthFailed(destination=destination, detail=clean(exc, hide) + hint)
        return DestinationUnavailable(destination=destination, detail=clean(exc, hide))
    status, code = exc.status_code, error_code(exc)
    detail = f"HTTP {status} {code}".rstrip()
    if code == "ContainerNotFound":
        return DestinationMisconfigured(
            destination=destination,
            detail=f"container {container} does not exist (create it first)",
        )
    if status == 404 and not code:  # a proxy or web server, not the blob service
        return DestinationMisconfigured(
            destination=destination,
            detail="the endpoint answered 404 without an Azure error code; check account_url",
        )
    if status in {401, 403} or isinstance(exc, ClientAuthenticationError):
        return DestinationAuthFailed(destination=destination, detail=detail)
    if status in {408, 429} or status >= 500 or code in _RETRYABLE:
        return DestinationUnavailable(destination=destination, detail=detail)
    if code in {"Md5Mismatch", "InvalidMd5"} or (status == 400 and "md5" in str(exc).lower()):
        # Azurite says InvalidOperation "Provided contentMD5 doesn't match".
        return IntegrityMismatch(
            destination=destination,
            key=key,
            detail="the service received other bytes (Content-MD5)",
        )
    return DestinationRejected(destination=destination, key=key, detail=detail)


def clean(exc: BaseException, hide: Sequence[str] = ()) -> str:
    """``exc``'s type and first line, without ``hide``, signatures, keys or query strings."""
    text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    for secret in hide:
        text = text.replace(secret, "********")
    return _QUERY.sub("?…", _CREDENTIAL_TEXT.sub(r"\1=********", text))[:300]


def error_code(exc: AzureError) -> str:
    """The service's error code (``BlobNotFound``…); ``""`` when the answer had none."""
    code = getattr(exc, "error_code", None)  # on HttpResponseError; a str enum or a str
    return str(getattr(code, "value", code) or "")


def transport() -> RequestsTransport:
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


def quiet(loggers: tuple[str, ...]) -> None:
    """Raise each of ``loggers`` to WARNING unless it is set that high already."""
    for name in loggers:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
