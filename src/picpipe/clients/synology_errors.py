"""Synology's error codes as picpipe errors (NOTES §4, §12): what each code means for a login,
an API call and a download, and which ones retrying or a new session may cure.

The codes are sorted into: the session is gone (log in again, once), the NAS is busy (retry
with backoff), and everything else (permanent: a clear one-line error).
"""

from __future__ import annotations

from typing import Any

import httpx

from picpipe.errors import (
    PicpipeError,
    SourceError,
    SourceLoginRefused,
    SourceMisconfigured,
    SourceOtpNeeded,
    SourceUnavailable,
    UnreadableFile,
    VanishedFile,
)

# 105/106/107/119: the session lacks rights, timed out, was kicked or is unknown; 803 is how
# Photos says "no permission" after a session timeout (NOTES §12).
SESSION_GONE = frozenset({105, 106, 107, 119, 803})
# Network unstable / system busy (NOTES §4, §12).
TRANSIENT = frozenset({109, 110, 111, 117, 118})

AUTH_MESSAGES: dict[int, str] = {
    400: "wrong account or password",
    401: "the account is disabled (or a guest account)",
    402: "permission denied for this account (try `session: webui`)",
    405: "the login went to the wrong app portal (check `url`)",
    406: "2-step verification must be set up for this account first (DSM → Personal → Security)",
    407: "this address is blocked after failed logins (DSM → Security → Auto Block)",
    408: "the password has expired and cannot be changed here",
    409: "the password has expired; change it in DSM",
    410: "the password must be changed in DSM first",
    411: "the account is locked",
}
OTP_NEEDED = 403
OTP_WRONG = 404


def login_error(source: str, exc: SourceError, *, had_device: bool) -> PicpipeError:
    """A refused login as one clear line (never retried: bad logins get an address blocked)."""
    code = exc.fields.get("code")
    if code == OTP_NEEDED:
        why = (
            "the stored device token was not accepted (revoked in DSM?)"
            if had_device
            else "2-step verification is on for this account"
        )
        return SourceOtpNeeded(
            source=source,
            detail=f"{why}: give a current code once through `otp_env` "
            "(see README, 2-step verification)",
        )
    if code == OTP_WRONG:
        return SourceOtpNeeded(
            source=source,
            detail="the 2-step verification code was wrong or expired; run again with "
            "a fresh code in the `otp_env` variable",
        )
    if isinstance(code, int) and code in AUTH_MESSAGES:
        return SourceLoginRefused(source=source, detail=f"{AUTH_MESSAGES[code]} (code {code})")
    return exc


def code_error(source: str, api: str, method: str, code: Any) -> SourceError:
    """An envelope error (HTTP 200, ``success: false``) as a picpipe error carrying ``code``."""
    if code in TRANSIENT:
        return SourceUnavailable(source=source, detail=f"the NAS is busy (code {code})", code=code)
    if code == 801:
        return SourceMisconfigured(
            source=source,
            detail="the Shared Space is off or this account may not use it (code 801); "
            "turn it on in Synology Photos → Settings, or use `space: personal`",
            code=code,
        )
    if code == 102:
        return SourceMisconfigured(
            source=source, detail=f"the NAS has no {api} (is Synology Photos running?)", code=code
        )
    return SourceError(source=source, detail=f"{api}.{method} failed (code {code})", code=code)


def download_error(exc: SourceError, label: str) -> PicpipeError:
    """An error answer to a download, as the item error it means."""
    code = exc.fields.get("code")
    if code in SESSION_GONE or code in TRANSIENT or isinstance(exc, SourceUnavailable):
        return exc  # the session and retry machinery handle these
    if code in (620, 120):
        return VanishedFile(path=label)
    if isinstance(code, int):
        return UnreadableFile(path=label, detail=f"the NAS refused the download (code {code})")
    return exc


def transport_detail(exc: httpx.HTTPError, base_url: str = "") -> str:
    """What went wrong on the wire, in words (the URL has no secrets: calls are POSTs)."""
    where = f" {base_url}" if base_url else ""
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer in time from{where or ' the NAS'}"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect to{where or ' the NAS'}; check `url` and that the NAS is on"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the connection closed in the middle of the answer"
    return type(exc).__name__


__all__ = [
    "SESSION_GONE",
    "TRANSIENT",
    "code_error",
    "download_error",
    "login_error",
    "transport_detail",
]
