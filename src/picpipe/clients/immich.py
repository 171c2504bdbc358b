"""Typed httpx client for the Immich API (v3), shared by the Immich destination and source.

Contract:
- ``url`` is the server with or without ``/api``; ``/api`` is appended when missing.
- The API key travels only in the ``x-api-key`` header: never in a URL (httpx logs URLs), a log
  line or an error message; server messages are scrubbed of it before they are quoted.
- Timeouts are bounded (connect 5 s, read/write 60 s) so a stalled server becomes a retryable
  error, never a hang. The transport retries a failed connection once; backoff belongs to the
  caller (``jobs/retry.py``).
- Failures become picpipe errors in one place (`ImmichClient._raise_for`), through an
  `ErrorMap` (destination errors by default, a source passes its own): 401/403 → auth failed;
  408, 429, 5xx, timeouts and connection errors → unavailable; 404 → misconfigured (no Immich
  API at that URL); other 4xx → rejected with Immich's message (v1/v2 ``message`` or the v3
  validation ``errors``).
- A missing asset is not an error: Immich answers 400 "Not found or no <permission> access"
  for an id the key's user cannot see; `get_asset` and `open_original` return None for it.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import httpx

from picpipe import __version__
from picpipe.clients.immich_models import (
    ApiKeyInfo,
    BulkCheckResult,
    ImmichAlbum,
    ImmichAsset,
    MediaTypes,
    SearchPage,
    ServerVersion,
    UploadResult,
    parse_album,
    parse_asset,
    parse_bulk_ids,
    parse_bulk_results,
    rfc3339,
)
from picpipe.errors import (
    DestinationAuthFailed,
    DestinationMisconfigured,
    DestinationRejected,
    DestinationUnavailable,
    PicpipeError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from datetime import datetime

    from pydantic import SecretStr

log = logging.getLogger(__name__)
T = TypeVar("T")

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
BULK_CHECK_BATCH = 1000  # assets per bulk-upload-check request
SEARCH_PAGE_SIZE = 1000  # the largest page MetadataSearchDto allows
DOWNLOAD_CHUNK = 1 << 20


def api_base_url(url: str) -> str:
    """The API root for a server URL: ``https://host:2283`` → ``https://host:2283/api``."""
    base = url.strip().rstrip("/")
    return base if base.endswith("/api") else f"{base}/api"


@dataclass(frozen=True, slots=True)
class ErrorMap:
    """Which picpipe error each kind of failure becomes (destinations and sources differ)."""

    unavailable: Callable[[str], PicpipeError]
    rejected: Callable[[str, str], PicpipeError]  # (what was refused, why)
    auth_failed: Callable[[str], PicpipeError]
    misconfigured: Callable[[str], PicpipeError]

    @classmethod
    def for_destination(cls, name: str) -> ErrorMap:
        return cls(
            unavailable=lambda detail: DestinationUnavailable(destination=name, detail=detail),
            rejected=lambda key, detail: DestinationRejected(
                destination=name, key=key, detail=detail
            ),
            auth_failed=lambda detail: DestinationAuthFailed(destination=name, detail=detail),
            misconfigured=lambda detail: DestinationMisconfigured(destination=name, detail=detail),
        )


class ImmichClient:
    """One Immich server and API key; thread-safe (one pooled httpx client)."""

    def __init__(
        self,
        url: str,
        api_key: SecretStr,
        *,
        errors: ErrorMap,
        verify_tls: bool = True,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> None:
        self.base_url = api_base_url(url)
        self._secret = api_key.get_secret_value()
        self._errors = errors
        self.errors = errors  # what failures become (the source's listing module uses it too)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"x-api-key": self._secret, "user-agent": f"picpipe/{__version__}"},
            timeout=timeout or httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
            transport=transport or httpx.HTTPTransport(retries=1, verify=verify_tls),
            follow_redirects=False,
        )

    # -- server --------------------------------------------------------------------------------

    def ping(self) -> None:
        """``GET /server/ping`` (no key needed); misconfigured unless the answer is "pong"."""
        body = self._json("GET", "/server/ping", what="ping")
        if not isinstance(body, dict) or body.get("res") != "pong":
            raise self._errors.misconfigured(f"{self.base_url} does not answer like Immich")

    def version(self) -> ServerVersion:
        body = self._json("GET", "/server/version", what="server version")
        return self._parse("server version", lambda: ServerVersion(
            int(body["major"]), int(body["minor"]), int(body["patch"])
        ))  # fmt: skip

    def api_key_me(self) -> ApiKeyInfo:
        """The key's name and permissions (needs no particular permission itself)."""
        body = self._json("GET", "/api-keys/me", what="api key")
        return self._parse("api key", lambda: ApiKeyInfo(
            str(body["name"]), frozenset(str(p) for p in body["permissions"])
        ))  # fmt: skip

    def media_types(self) -> MediaTypes:
        body = self._json("GET", "/server/media-types", what="media types")

        def build() -> MediaTypes:
            sets = {k: frozenset(str(e).lower() for e in body[k]) for k in ("image", "video")}
            return MediaTypes(sets["image"], sets["video"], frozenset(body.get("sidecar", [])))

        return self._parse("media types", build)

    # -- assets --------------------------------------------------------------------------------

    def bulk_upload_check(self, items: Sequence[tuple[str, str]]) -> list[BulkCheckResult]:
        """Which (token, hex SHA-1) pairs the server already holds, in batches of 1000."""
        results: list[BulkCheckResult] = []
        for start in range(0, len(items), BULK_CHECK_BATCH):
            batch = items[start : start + BULK_CHECK_BATCH]
            payload = {"assets": [{"id": token, "checksum": sha1} for token, sha1 in batch]}
            body = self._json("POST", "/assets/bulk-upload-check", what="bulk check", json=payload)
            results += self._parse("bulk check", parse_bulk_results, body)
        return results

    def upload_asset(
        self,
        data: BinaryIO,
        *,
        filename: str,
        file_created_at: datetime,
        file_modified_at: datetime,
        sha1: str | None = None,
        mime_type: str | None = None,
        duration_ms: int | None = None,
        live_photo_video_id: str | None = None,
        sidecar: bytes | None = None,
    ) -> UploadResult:
        """``POST /assets`` (multipart): 201 created, or 200 with the id of the copy the server
        already holds ("duplicate"). ``sha1`` (hex) goes in ``x-immich-checksum`` so the server
        can answer "duplicate" before the bytes arrive; it may then close the connection while
        we still send. After any failure past connection setup, a bulk check by ``sha1`` tells
        whether the server holds the bytes after all (answered early, or stored but the answer
        was lost); if so the result is "duplicate", otherwise the failure is raised.
        """
        fields = {
            "filename": filename,
            "fileCreatedAt": rfc3339(file_created_at),
            "fileModifiedAt": rfc3339(file_modified_at),
        }
        if duration_ms is not None:
            fields["duration"] = str(duration_ms)
        if live_photo_video_id is not None:
            fields["livePhotoVideoId"] = live_photo_video_id
        files: dict[str, Any] = {
            "assetData": (filename, data, mime_type or "application/octet-stream")
        }
        if sidecar is not None:
            files["sidecarData"] = (f"{filename}.xmp", sidecar, "application/xml")
        headers = {"x-immich-checksum": sha1} if sha1 else {}
        try:
            response = self._http.post("/assets", data=fields, files=files, headers=headers)
        except httpx.TransportError as exc:
            recovered = self._recover_upload(sha1, exc)
            if recovered is None:
                raise self._unavailable(f"upload of {filename}", exc) from exc
            return recovered
        self._raise_for(response, filename)
        body = self._body(response, filename)
        result = self._parse(filename, lambda: UploadResult(str(body["id"]), str(body["status"])))
        if response.status_code == 201 and result.status != "created":
            raise self._errors.rejected(filename, f"201 with status {result.status!r}")
        return result

    def get_asset(self, asset_id: str) -> ImmichAsset | None:
        """``GET /assets/{id}``; None when the key's user has no such asset."""
        what = f"asset {asset_id}"
        response = self._send("GET", f"/assets/{asset_id}", what=what, missing_ok=True)
        if response is None:
            return None
        body = self._body(response, what)
        return self._parse(what, lambda: parse_asset(body))

    @contextmanager
    def open_original(self, asset_id: str) -> Iterator[Iterator[bytes] | None]:
        """``GET /assets/{id}/original`` streamed in 1 MiB chunks; None when there is no such
        asset. Errors while streaming are mapped like every other error."""
        what = f"original of {asset_id}"
        request = self._http.build_request(
            "GET", f"/assets/{asset_id}/original", params={"edited": "false"}
        )
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._unavailable(what, exc) from exc
        try:
            if response.status_code >= 400:
                try:
                    response.read()
                except httpx.TransportError as exc:
                    raise self._unavailable(what, exc) from exc
                if _is_missing(response):
                    yield None
                    return
                self._raise_for(response, what)
            yield self._chunks(response, what)
        finally:
            response.close()

    def search_metadata(
        self,
        *,
        page: int = 1,
        size: int = SEARCH_PAGE_SIZE,
        visibility: str | None = None,
        checksum: str | None = None,
        with_exif: bool = True,
    ) -> SearchPage:
        """One page of ``POST /search/metadata`` (the user's assets, newest first)."""
        payload: dict[str, Any] = {"page": page, "size": size, "withExif": with_exif}
        if visibility is not None:
            payload["visibility"] = visibility
        if checksum is not None:
            payload["checksum"] = checksum
        body = self._json("POST", "/search/metadata", what="search", json=payload)

        def build() -> SearchPage:
            found = body["assets"]
            following = found.get("nextPage")
            return SearchPage(
                [parse_asset(item) for item in found["items"]],
                int(following) if following is not None else None,
            )

        return self._parse("search", build)

    def iter_assets(
        self, visibility: str | None = None, *, page_size: int = SEARCH_PAGE_SIZE
    ) -> Iterator[ImmichAsset]:
        """Every asset of one visibility, page by page until ``nextPage`` is null."""
        page: int | None = 1
        while page is not None:
            found = self.search_metadata(page=page, size=page_size, visibility=visibility)
            yield from found.assets
            page = found.next_page

    def update_asset(self, asset_id: str, *, live_photo_video_id: str | None) -> ImmichAsset:
        """``PUT /assets/{id}`` with ``livePhotoVideoId`` (null unlinks). Immich answers 400
        unless the video exists, is a VIDEO and has the same owner."""
        what = f"asset {asset_id}"
        body = self._json(
            "PUT", f"/assets/{asset_id}", what=what, json={"livePhotoVideoId": live_photo_video_id}
        )
        return self._parse(what, lambda: parse_asset(body))

    # -- albums --------------------------------------------------------------------------------

    def list_albums(self, name: str | None = None) -> list[ImmichAlbum]:
        """The key's user's own albums, those named exactly ``name`` when given."""
        params = {"isOwned": "true"} | ({"name": name} if name is not None else {})
        body = self._json("GET", "/albums", what="albums", params=params)
        albums = self._parse("albums", lambda: [parse_album(item) for item in body])
        # Older servers ignore the ``name`` filter; keep exact matches only.
        return [a for a in albums if name is None or a.name == name]

    def create_album(self, name: str) -> ImmichAlbum:
        what = f"album {name!r}"
        body = self._json("POST", "/albums", what=what, json={"albumName": name})
        return self._parse(what, lambda: parse_album(body))

    def add_assets_to_album(self, album_id: str, asset_ids: Sequence[str]) -> list[tuple[str, str]]:
        """Add assets; returns the (asset id, reason) pairs that failed. An asset already in
        the album ("duplicate") is a success."""
        failed: list[tuple[str, str]] = []
        what = f"album {album_id}"
        for start in range(0, len(asset_ids), BULK_CHECK_BATCH):
            payload = {"ids": list(asset_ids[start : start + BULK_CHECK_BATCH])}
            body = self._json("PUT", f"/albums/{album_id}/assets", what=what, json=payload)
            for item in self._parse(what, parse_bulk_ids, body):
                if not item.get("success") and item.get("error") != "duplicate":
                    failed.append((str(item.get("id")), str(item.get("error", "unknown"))))
        return failed

    # -- API groups kept in their own modules (integrations/immich_library.py) ----------------

    def call(self, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
        """One request with this client's key, timeouts and error mapping: the JSON answer,
        None for an empty one (204)."""
        response = self._send(method, path, what=what, **kwargs)
        assert response is not None
        return self._body(response, what) if response.content else None

    def close(self) -> None:
        self._http.close()

    # -- the one place HTTP becomes picpipe errors --------------------------------------------

    def _send(
        self, method: str, path: str, *, what: str, missing_ok: bool = False, **kwargs: Any
    ) -> httpx.Response | None:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unavailable(what, exc) from exc
        if missing_ok and _is_missing(response):
            return None
        self._raise_for(response, what)
        return response

    def _json(self, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
        response = self._send(method, path, what=what, **kwargs)
        assert response is not None
        return self._body(response, what)

    def _raise_for(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        if status < 400:
            return
        message = self._message(response)
        if status == 401:
            raise self._errors.auth_failed(f"Immich refused the API key: {message}")
        if status == 403:
            raise self._errors.auth_failed(f"the API key may not do this ({what}): {message}")
        if status in {408, 429} or status >= 500:
            raise self._errors.unavailable(f"{what}: HTTP {status} {message}")
        if status == 404:
            raise self._errors.misconfigured(
                f"no Immich API at {self.base_url} ({what}: HTTP 404); check the url"
            )
        if status == 413:
            raise self._errors.rejected(
                what, "HTTP 413: larger than a proxy in front of Immich accepts (its body limit)"
            )
        raise self._errors.rejected(what, f"HTTP {status}: {message}")

    def _unavailable(self, what: str, exc: httpx.TransportError) -> PicpipeError:
        if isinstance(exc, httpx.TimeoutException):
            return self._errors.unavailable(f"{what}: timed out ({type(exc).__name__})")
        detail = self._scrub(str(exc)) or type(exc).__name__
        return self._errors.unavailable(f"{what}: {detail}")

    def _message(self, response: httpx.Response) -> str:
        """Immich's own words from an error body (v1/v2 ``message``, v3 ``errors``)."""
        try:
            body = response.json()
        except ValueError:
            return self._scrub(response.text[:200].strip()) or response.reason_phrase
        if not isinstance(body, dict):
            return response.reason_phrase
        message = body.get("message", response.reason_phrase)
        parts = [", ".join(map(str, message)) if isinstance(message, list) else str(message)]
        for error in body.get("errors") or []:
            if isinstance(error, dict):
                where = ".".join(str(p) for p in error.get("path") or [])
                parts.append(f"{where}: {error.get('message')}" if where else str(error))
        return self._scrub("; ".join(parts))

    def _body(self, response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise self._errors.rejected(what, "Immich answered something that is not JSON") from exc

    def _parse(self, what: str, build: Callable[..., T], *args: Any) -> T:
        """``build(*args)``, a malformed answer becoming a rejection instead of a crash."""
        try:
            return build(*args)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._errors.rejected(what, f"unexpected answer from Immich ({exc!r})") from exc

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "********") if self._secret else text

    def _chunks(self, response: httpx.Response, what: str) -> Iterator[bytes]:
        try:
            yield from response.iter_bytes(DOWNLOAD_CHUNK)
        except httpx.TransportError as exc:
            raise self._unavailable(what, exc) from exc

    def _recover_upload(self, sha1: str | None, exc: httpx.TransportError) -> UploadResult | None:
        if not sha1 or isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return None  # nothing reached the server, or nothing to look it up by
        try:
            found = self.bulk_upload_check([("upload", sha1)])
        except PicpipeError:
            return None  # still unreachable: the upload's own error says why
        if found and found[0].reason == "duplicate" and found[0].asset_id:
            log.debug("upload connection failed (%s) but Immich holds %s", type(exc).__name__, sha1)
            return UploadResult(found[0].asset_id, "duplicate")
        return None


def _is_missing(response: httpx.Response) -> bool:
    if response.status_code != 400:
        return False
    try:
        message = response.json().get("message", "")
    except (ValueError, AttributeError):
        return False
    return isinstance(message, str) and message.startswith("Not found or no ")
