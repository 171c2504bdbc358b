"""Typed httpx client for Synology Photos (DSM 7, ``SYNO.Foto.*`` and ``SYNO.FotoTeam.*``).

Every call is a form POST (NOTES §1): the password and the session id never appear in a URL, so
they cannot reach an access log or httpx's request log. Values are sent as the NAS's JSON
request format wants them (arrays and numeric-looking strings JSON-encoded).

Contract: the session is opened on first use and opened again, once per call, when the NAS
says it is gone (119, 106, …); 5xx answers, timeouts, dropped connections and the transient
codes (109…118) are retried with backoff (`jobs.retry`); everything else raises at once as a
one-line picpipe error (`SourceAuthFailed`, `SourceOtpNeeded`, `SourceMisconfigured`,
`SourceError` with the code). Downloads stream to the caller's file, never into memory.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from picpipe.clients.synology_errors import (
    SESSION_GONE,
    code_error,
    download_error,
    login_error,
    transport_detail,
)
from picpipe.clients.synology_models import (
    Album,
    ApiInfo,
    Download,
    Item,
    ItemScope,
    form_value,
)
from picpipe.errors import (
    DownloadInterrupted,
    PicpipeError,
    SourceError,
    SourceMisconfigured,
    SourceUnavailable,
)
from picpipe.jobs.retry import RetryPolicy, call_with_retries

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import BinaryIO

log = logging.getLogger(__name__)
T = TypeVar("T")

PAGE_LIMIT = 5000  # the most Browse.Item list gives per page (NOTES §6)
ALBUM_PAGE = 500
CHUNK = 1024 * 1024
# The versions this client is tested against; older NAS get min(theirs, ours) (NOTES §11).
VERSIONS = {
    "SYNO.API.Auth": 7,
    "SYNO.Foto.Browse.Album": 4,
    "SYNO.Foto.Browse.Item": 4,
    "SYNO.FotoTeam.Browse.Item": 4,
    "SYNO.Foto.Download": 2,
    "SYNO.Foto.Browse.Folder": 2,
    "SYNO.FotoTeam.Browse.Folder": 2,
    "SYNO.FotoTeam.Download": 2,
}
ZIP_MAGIC = b"PK\x03\x04"
JSON_TYPES = ("application/json", "text/plain", "text/json")


class SynologyClient:
    """One account on one NAS. Thread-safe: the pipeline's workers download in parallel."""

    def __init__(
        self,
        url: str,
        *,
        source: str,
        account: str,
        password: str,
        session_name: str = "webui",
        otp_code: str | None = None,
        device_id: str | None = None,
        on_device_id: Callable[[str], None] | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        page_limit: int = PAGE_LIMIT,
    ) -> None:
        self.source = source
        self.account = account
        self._password = password
        self._session_name = session_name
        self._otp_code = otp_code
        self._device_id = device_id
        self._on_device_id = on_device_id
        self._retry = retry or RetryPolicy(retries=4, base=0.5, cap=10.0)
        self.page_limit = page_limit
        self._url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self._url + "/webapi/",
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=False,
        )
        self._apis: dict[str, ApiInfo] | None = None
        self._sid: str | None = None
        self._lock = threading.Lock()
        self.requests = 0  # every HTTP request made (the cost of a poll)

    # -- discovery and session ---------------------------------------------------------------

    def apis(self) -> dict[str, ApiInfo]:
        """``SYNO.API.Info`` for the APIs used; SourceMisconfigured when Photos is missing."""
        if self._apis is None:
            params = {"query": "SYNO.API.,SYNO.Foto.,SYNO.FotoTeam."}
            data = self._retried(
                lambda: self._envelope("query.cgi", "SYNO.API.Info", "query", 1, params),
                "API info",
            )
            found = {
                name: ApiInfo(str(v.get("path", "entry.cgi")), int(v.get("maxVersion", 1)))
                for name, v in data.items()
            }
            if "SYNO.Foto.Browse.Item" not in found:
                raise SourceMisconfigured(
                    source=self.source,
                    detail="Synology Photos is not installed on this NAS (no SYNO.Foto APIs); "
                    "install it from the Package Center",
                )
            self._apis = found
        return self._apis

    def login(self) -> None:
        """Open a session (an OTP or a device token for 2-step verification); see module doc."""
        with self._lock:
            if self._sid is None:
                self._sid = self._login()

    def logout(self) -> None:
        with self._lock:
            sid, self._sid = self._sid, None
        if sid is None:
            return
        try:
            info = self.apis()["SYNO.API.Auth"]
            self._envelope(
                info.path,
                "SYNO.API.Auth",
                "logout",
                self._version("SYNO.API.Auth"),
                {"session": self._session_name, "_sid": sid},
            )
        except (PicpipeError, httpx.HTTPError) as exc:
            log.debug("logout from %s failed: %s", self.source, exc)

    def close(self) -> None:
        self.logout()
        self._http.close()

    # -- albums and items --------------------------------------------------------------------

    def albums(self, *, shared_with_me: bool = True) -> Iterator[Album]:
        """Own albums, and those shared with the account when ``shared_with_me``."""
        offset = 0
        while True:
            params: dict[str, Any] = {"offset": offset, "limit": ALBUM_PAGE}
            if shared_with_me:
                params["category"] = "normal_share_with_me"
            page = self.call("SYNO.Foto.Browse.Album", "list", params)["list"]
            yield from (Album.from_json(raw) for raw in page)
            if len(page) < ALBUM_PAGE:
                return
            offset += ALBUM_PAGE

    def items(self, scope: ItemScope) -> Iterator[Item]:
        """Every item of ``scope``, page by page; no total is given, so a short page ends it."""
        api = "SYNO.FotoTeam.Browse.Item" if scope.team else "SYNO.Foto.Browse.Item"
        offset = 0
        while True:
            params = {
                **scope.params(),
                "offset": offset,
                "limit": self.page_limit,
                "additional": ["thumbnail"],
                "sort_by": "takentime",
                "sort_direction": "asc",
            }
            page = self.call(api, "list", params)["list"]
            yield from (Item.from_json(raw) for raw in page)
            if len(page) < self.page_limit:
                return
            offset += self.page_limit

    def download(
        self, item: Item, target: BinaryIO, *, passphrase: str | None = None, what: str = ""
    ) -> Download:
        """The original of ``item`` written to ``target`` (rewound and refilled on a retry).

        Raises VanishedFile when the NAS no longer has it, UnreadableFile when it refuses it,
        DownloadInterrupted when the bytes stopped short after the retries.
        """
        api = "SYNO.FotoTeam.Download" if item.in_shared_space else "SYNO.Foto.Download"
        params: dict[str, Any] = {"unit_id": [item.id], "cache_key": item.cache_key}
        if passphrase and not item.in_shared_space:
            params["passphrase"] = passphrase
        label = what or item.filename

        def attempt() -> Download:
            target.seek(0)
            target.truncate()
            return self._with_session(lambda: self._download_once(api, params, target, label))

        return self._retried(attempt, f"download {label}")

    # -- the call machinery ------------------------------------------------------------------

    def call(self, api: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One API call's ``data``, with the session, the retries and the error mapping."""
        info = self._info(api)
        version = self._version(api)

        def once() -> dict[str, Any]:
            return self._envelope(info.path, api, method, version, {**params, "_sid": self._sid})

        return self._retried(lambda: self._with_session(once), f"{api}.{method}")

    def _retried(self, func: Callable[[], T], what: str) -> T:
        return call_with_retries(func, self._retry, what=f"source {self.source}: {what}")

    def _with_session(self, func: Callable[[], T]) -> T:
        """``func()`` inside a session; opened again once when the NAS says it is gone."""
        self.login()
        used = self._sid
        try:
            return func()
        except SourceError as exc:
            if exc.fields.get("code") not in SESSION_GONE:
                raise
            log.info(
                "source %s: session ended (code %s); logging in again",
                self.source,
                exc.fields.get("code"),
            )
        with self._lock:
            if self._sid == used:  # another worker may have logged in again already
                self._sid = None
        self.login()
        return func()

    def _login(self) -> str:
        info = self.apis()["SYNO.API.Auth"]
        params: dict[str, Any] = {
            "account": self.account,
            "passwd": self._password,
            "session": self._session_name,
            "format": "sid",
        }
        if self._device_id:
            params |= {"device_id": self._device_id, "device_name": "picpipe"}
        elif self._otp_code:
            params |= {
                "otp_code": self._otp_code,
                "enable_device_token": "yes",
                "device_name": "picpipe",
            }
        try:
            data = self._retried(
                lambda: self._envelope(
                    info.path,
                    "SYNO.API.Auth",
                    "login",
                    self._version("SYNO.API.Auth"),
                    params,
                    raw=True,
                ),
                "login",
            )
        except SourceError as exc:
            raise login_error(self.source, exc, had_device=bool(self._device_id)) from None
        device = data.get("device_id") or data.get("did")
        if device and device != self._device_id:
            self._device_id = str(device)
            if self._on_device_id is not None:
                self._on_device_id(self._device_id)
        self._otp_code = None  # a code works once; the device token carries on
        return str(data["sid"])

    def _info(self, api: str) -> ApiInfo:
        info = self.apis().get(api)
        if info is None:
            if api.startswith("SYNO.FotoTeam."):
                raise SourceMisconfigured(
                    source=self.source,
                    detail="this NAS has no Shared Space APIs (SYNO.FotoTeam); "
                    "update Synology Photos or use `space: personal`",
                )
            raise SourceMisconfigured(source=self.source, detail=f"the NAS lacks the API {api}")
        return info

    def _version(self, api: str) -> int:
        return min(self.apis()[api].max_version, VERSIONS.get(api, 1))

    def _form(
        self, api: str, method: str, version: int, params: dict[str, Any], raw: bool
    ) -> dict[str, str]:
        form = {"api": api, "method": method, "version": str(version)}
        for key, value in params.items():
            if value is None:
                continue
            form[key] = value if raw and isinstance(value, str) else form_value(value)
        return form

    def _envelope(
        self,
        path: str,
        api: str,
        method: str,
        version: int,
        params: dict[str, Any],
        *,
        raw: bool = False,
    ) -> dict[str, Any]:
        form = self._form(api, method, version, params, raw)
        try:
            self.requests += 1
            response = self._http.post(path, data=form)
        except httpx.HTTPError as exc:
            raise SourceUnavailable(
                source=self.source, detail=transport_detail(exc, self._url)
            ) from exc
        if response.status_code >= 500:
            raise SourceUnavailable(source=self.source, detail=f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise SourceUnavailable(
                source=self.source, detail=f"HTTP {response.status_code}, not a JSON answer"
            ) from None
        return self._data(api, method, body)

    def _data(self, api: str, method: str, body: Any) -> dict[str, Any]:
        if isinstance(body, dict) and body.get("success") is True:
            data = body.get("data")
            return data if isinstance(data, dict) else {}
        code = (body.get("error") or {}).get("code") if isinstance(body, dict) else None
        raise code_error(self.source, api, method, code)

    def _download_once(
        self, api: str, params: dict[str, Any], target: BinaryIO, label: str
    ) -> Download:
        info = self._info(api)
        form = self._form(api, "download", self._version(api), {**params, "_sid": self._sid}, False)
        written = 0
        try:
            self.requests += 1
            with self._http.stream("POST", info.path, data=form) as response:
                if response.status_code >= 500:
                    raise SourceUnavailable(
                        source=self.source, detail=f"HTTP {response.status_code}"
                    )
                kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if kind in JSON_TYPES or response.status_code != 200:
                    # Binary endpoints answer errors as JSON, with HTTP 200 or 404 (NOTES §4).
                    response.read()
                    self._data(api, "download", _json_or_none(response))
                    raise SourceError(source=self.source, detail=f"{label}: no file in the answer")
                expected = response.headers.get("content-length")
                head = b""
                for chunk in response.iter_raw(CHUNK):
                    if len(head) < 4:
                        head += chunk[:4]
                    target.write(chunk)
                    written += len(chunk)
        except httpx.HTTPError as exc:
            raise DownloadInterrupted(path=label, detail=transport_detail(exc)) from exc
        except SourceError as exc:
            raise download_error(exc, label) from None
        if expected is not None and written != int(expected):
            raise DownloadInterrupted(path=label, detail=f"{written} of {expected} bytes")
        target.flush()
        return Download(written, kind, head.startswith(ZIP_MAGIC))


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


__all__ = ["PAGE_LIMIT", "SynologyClient"]
