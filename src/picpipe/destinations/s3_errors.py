"""boto3/botocore/urllib3 exceptions → picpipe errors, for the ``s3`` destination.

The one place that decides what an S3 failure means: bad credentials, a misconfigured bucket
or endpoint, bytes damaged on the way, a passing outage worth another try, or a refused
request. Messages are cut to 300 characters and never carry the secrets they are given.
"""

from __future__ import annotations

from botocore.exceptions import (
    ClientError,
    InvalidConfigError,
    InvalidRegionError,
    InvalidS3AddressingStyleError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    SSLError,
)

from picpipe.errors import (
    DestinationAuthFailed,
    DestinationError,
    DestinationMisconfigured,
    DestinationRejected,
    DestinationUnavailable,
    IntegrityMismatch,
)
from picpipe.redact import mask_urls_in

_AUTH = {
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "TokenRefreshRequired", "AccountProblem", "AllAccessDisabled", "Forbidden",
}  # fmt: skip
_MISCONFIGURED = {
    "NoSuchBucket", "InvalidBucketName", "PermanentRedirect", "AuthorizationHeaderMalformed",
    "IllegalLocationConstraintException", "InvalidStorageClass", "RequestTimeTooSkewed",
}  # fmt: skip
_CORRUPTED = {"BadDigest", "XAmzContentSHA256Mismatch", "XAmzContentChecksumMismatch"}
_TRANSIENT = {
    "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling",
    "ThrottlingException", "RequestLimitExceeded", "TooManyRequests", "RequestThrottled",
    "BandwidthLimitExceeded", "OperationAborted", "IncompleteBody", "NoSuchUpload",
}  # fmt: skip


def map_error(
    exc: BaseException, *, destination: str, key: str, hide: tuple[str, ...] = ()
) -> DestinationError:
    """The picpipe error for one boto3/botocore/urllib3 exception (``hide``: secret values)."""
    if isinstance(exc, ClientError):
        code, status = error_code(exc), http_status(exc)
        message = str(exc.response.get("Error", {}).get("Message") or "")
        detail = redact(f"{code}: {message}" if message and message != code else code, hide)
        if code in _AUTH:
            return DestinationAuthFailed(destination=destination, detail=detail)
        if code in _MISCONFIGURED:
            return DestinationMisconfigured(destination=destination, detail=detail)
        if code in _CORRUPTED:
            return IntegrityMismatch(destination=destination, key=key, detail=detail)
        if code in _TRANSIENT or status == 429 or status >= 500:
            return DestinationUnavailable(destination=destination, detail=detail)
        if status in {401, 403}:  # HEAD answers carry no code, only the status
            return DestinationAuthFailed(destination=destination, detail=detail)
        if status == 301:
            return DestinationMisconfigured(destination=destination, detail=detail)
        return DestinationRejected(destination=destination, key=key, detail=detail)
    detail = redact(f"{type(exc).__name__}: {exc}", hide)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return DestinationAuthFailed(
            destination=destination,
            detail="no credentials: set access_key_id and secret_access_key, or AWS_* variables, "
            "a profile or an instance role",
        )
    if isinstance(exc, SSLError) and "certif" in str(exc).lower():
        return DestinationMisconfigured(
            destination=destination, detail=f"TLS certificate refused ({detail})"
        )
    config_errors = (
        NoRegionError, InvalidRegionError, InvalidS3AddressingStyleError, InvalidConfigError,
    )  # fmt: skip
    if isinstance(exc, config_errors):
        return DestinationMisconfigured(destination=destination, detail=detail)
    if isinstance(exc, ParamValidationError):
        return DestinationRejected(destination=destination, key=key, detail=detail)
    # Timeouts, refused and reset connections, streams cut short: worth another try.
    return DestinationUnavailable(destination=destination, detail=detail)


def error_code(exc: BaseException | None) -> str:
    """The S3 error code of a `ClientError` (``NoSuchBucket``…); ``""`` for anything else."""
    if not isinstance(exc, ClientError):
        return ""
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    """The HTTP status of the answer behind ``exc``; 0 when there was none."""
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def redact(text: str, hide: tuple[str, ...]) -> str:
    """``text`` with every value of ``hide`` blanked out and URL user-info masked, cut to
    300 characters."""
    for value in hide:
        text = text.replace(value, "********")
    return mask_urls_in(text)[:300]
