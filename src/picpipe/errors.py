"""The whole picpipe exception tree.

Every error carries a message template filled from named fields, an exit code and whether
retrying may help. Item errors are recorded on the item and the run goes on; library and
catalog errors abort the run. Only entry points (CLI, web) render errors.
"""

from __future__ import annotations

from typing import Any, ClassVar

from picpipe.redact import mask_urls_in


class ExitCode:
    """Process exit codes; pinned by a test because scripts depend on them."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    ITEMS_FAILED = 3
    CONFIG = 4
    CATALOG = 5
    LIBRARY = 6
    DEPENDENCY = 7
    SOURCE = 8
    INTEGRITY = 9
    BUSY = 10
    DESTINATION = 11


class CardPulled(Exception):
    """The card went away (or picpipe was asked to stop) in the middle of a card session.

    Deliberately not a PicpipeError: the import's per-item error boundary must not take it
    for one file's failure; the card session catches it and ends as interrupted."""


class UdisksFailed(Exception):
    """A udisksctl call (mount, unmount, power off a card) failed; the text is its reason.

    Not a PicpipeError either: the card service logs it as one line and goes on."""


class PicpipeError(Exception):
    """Base of every picpipe error: ``template`` is filled from the keyword fields."""

    template: ClassVar[str] = "{detail}"
    exit_code: ClassVar[int] = ExitCode.INTERNAL
    retryable: ClassVar[bool] = False

    def __init__(self, **fields: Any) -> None:
        self.fields = fields
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The filled template, URL passwords and secret query parameters masked (every
        error is shown somewhere: a terminal, a log, an HTTP answer, the catalog)."""
        try:
            text = self.template.format(**self.fields)
        except (KeyError, IndexError):
            text = f"{type(self).__name__}: {sorted(self.fields)}"
        return mask_urls_in(text) if "://" in text else text

    @property
    def reason(self) -> str:
        """The message without a leading ``path:`` (for lists that show the path already)."""
        path = self.fields.get("path")
        prefix = f"{path}: "
        message = self.message
        return message[len(prefix) :] if path and message.startswith(prefix) else message

    def __str__(self) -> str:
        return self.message


# -- configuration -------------------------------------------------------------------------


class ConfigError(PicpipeError):
    template = "configuration error: {detail}"
    exit_code = ExitCode.CONFIG


class DependencyMissing(PicpipeError):
    template = "{tool} is not installed or not runnable ({detail}); run scripts/setup to install it"
    exit_code = ExitCode.DEPENDENCY


class ExifToolFailed(PicpipeError):
    template = "exiftool failed on {path}: {detail}"


# -- catalog -------------------------------------------------------------------------------


class CatalogError(PicpipeError):
    template = "catalog error: {detail}"
    exit_code = ExitCode.CATALOG


class CatalogUnavailable(CatalogError):
    """The database failed under a run (a failover, a dropped connection, a busy timeout):
    the run ends or retries; no item is marked failed for it."""

    template = "catalog error: {detail}; nothing was marked failed, run the command again"
    retryable = True


class RunLeaseLost(CatalogError):
    template = "run {run_id} lost its lease in the catalog ({detail}); it stopped to stay safe"


class CatalogBusy(CatalogError):
    template = "another picpipe run holds this catalog ({detail}); wait for it to finish"
    exit_code = ExitCode.BUSY


class CatalogNotEmpty(CatalogError):
    template = (
        "the catalog at {url} holds {assets} asset(s); restore-catalog replaces a catalog "
        "that has assets only with --force"
    )


# -- library (critical: abort the run) ------------------------------------------------------


class LibraryError(PicpipeError):
    template = "library error: {detail}"
    exit_code = ExitCode.LIBRARY


class LibraryMissing(LibraryError):
    template = (
        "library not found at {root}: is the NAS mounted? (the catalog knows this library; "
        "nothing was created)"
    )


class LibraryMismatch(LibraryError):
    template = (
        "the library at {root} is library {found}, but this catalog keeps library {known}; "
        "check --library and the database URL"
    )


class LibraryUnwritable(LibraryError):
    template = "library root {root} is not writable ({detail}); fix its permissions or mount"


class OriginalUnreachable(LibraryError):
    """Neither the library nor any replica or source could give an original's bytes."""

    template = (
        "the original of {short} is not reachable: the library is offline or missing it, and "
        "{tried}; try again when the library is back"
    )
    retryable = True


class EntryTooLarge(PicpipeError):
    """A cache producer wrote more or fewer bytes than the size it announced (the fill is
    abandoned). Internal to the full-resolution cache and its producers."""

    template = "cache entry: {detail}"


# -- items (recorded on the item; the run goes on) ------------------------------------------


class ItemError(PicpipeError):
    """A problem with one source file; recorded on it, the run continues."""

    template = "{path}: {detail}"
    exit_code = ExitCode.ITEMS_FAILED


class EmptyFile(ItemError):
    template = "{path}: file is empty (0 bytes); nothing to import"


class UnreadableFile(ItemError):
    template = "{path}: cannot be read ({detail}); check its permissions"


class TornRead(ItemError):
    template = "{path}: changed while it was being read; it will be retried on the next run"
    retryable = True


class VanishedFile(ItemError):
    template = "{path}: disappeared before it could be imported"


class SymlinkLoop(ItemError):
    template = "{path}: symbolic link loop; skipped"


class ContentClaimed(ItemError):
    """Another task (of this run or another) is placing the same content right now: the task
    waits for its result; only when that takes longer than a lease is it this item's error."""

    template = "{path}: another run ({holder}) is placing the same content; retried next run"
    retryable = True


class LibraryFull(ItemError):
    template = "{path}: no space left in the library ({detail}); free space and run again"
    retryable = True


class PlacementFailed(ItemError):
    template = "{path}: could not be written to the library ({detail})"


class CopyMismatch(ItemError):
    template = "{path}: copy in the library does not match the source hash; nothing was kept"
    retryable = True


class SidecarError(ItemError):
    """A sidecar could not be read or written; recorded on the asset, the run goes on."""

    template = "{path}: {detail}"


class ThumbnailFailed(ItemError):
    """Why no thumbnail can be made from one original (the reason alone, no path)."""

    template = "{detail}"


class OriginalUnreadable(ThumbnailFailed):
    """The original could not be read (missing, permissions, I/O): try again on a later run."""

    retryable = True


class ThumbnailWriteFailed(ItemError):
    """A thumbnail could not be written under the local root (full disk, permissions)."""

    template = "could not write thumbnails: {detail}"
    retryable = True


class ConversionFailed(ItemError):
    """No JPEG could be made from this original (the reason alone, no path)."""

    template = "cannot show this original as JPEG: {detail}"


# -- sources -------------------------------------------------------------------------------


class SourceError(PicpipeError):
    template = "source {source}: {detail}"
    exit_code = ExitCode.SOURCE


class SourceUnavailable(SourceError):
    template = "source {source} is not reachable ({detail})"
    retryable = True


class SourceAuthFailed(SourceError):
    """The server refused the credentials (a key, a password)."""

    template = "source {source}: authentication failed ({detail}); check its credentials"


class SourceLoginRefused(SourceAuthFailed):
    """The server refused the login (wrong password, account disabled or locked)."""

    template = "source {source}: login refused: {detail}"


class SourceOtpNeeded(SourceAuthFailed):
    """2-step verification: a code is needed (or the one given was wrong)."""

    template = "source {source}: {detail}"


class SourceMisconfigured(SourceError):
    """What the config names is not there: no API at the address, an album, the Photos app,
    the Shared Space."""

    template = "source {source}: {detail}"
    exit_code = ExitCode.CONFIG


class SourceRejected(SourceError):
    """The server refused a request for good, or answered something picpipe cannot read."""

    template = "source {source} refused {what}: {detail}"


class ChecksumMismatch(ItemError):
    """The bytes fetched from a source are not those its server's checksum names."""

    template = (
        "{path}: the bytes do not match the server's {algorithm} checksum; "
        "it will be retried on the next run"
    )
    retryable = True


class DownloadFailed(ItemError):
    """A remote original could not be fetched in full (cut off, server error, timeout)."""

    template = "{path}: download failed ({detail}); it will be retried on the next run"
    retryable = True


class DownloadInterrupted(ItemError):
    """A remote file's download ended early or failed in transit; nothing of it was kept."""

    template = "{path}: download interrupted ({detail}); the next run fetches it again"
    retryable = True


# -- destinations --------------------------------------------------------------------------
# Backends re-raise SDK and HTTP errors as one of these (``from exc``); ``retryable`` is what
# jobs/retry.py asks. Messages name the destination and key, never credentials or local paths.


class DestinationError(PicpipeError):
    template = "destination {destination}: {detail}"
    exit_code = ExitCode.DESTINATION


class DestinationUnavailable(DestinationError):
    """Timeouts, resets, refused connections, 429 and 5xx answers: worth another try."""

    template = "destination {destination} is not reachable ({detail})"
    retryable = True


class DestinationRejected(DestinationError):
    """The far end refused this object for good (4xx other than auth/429, quota, bad name)."""

    template = "destination {destination} refused {key}: {detail}"


class DestinationAuthFailed(DestinationError):
    template = "destination {destination}: authentication failed ({detail}); check its credentials"


class DestinationMisconfigured(DestinationError):
    template = "destination {destination}: {detail}"
    exit_code = ExitCode.CONFIG


class SnapshotDamaged(PicpipeError):
    """A catalog snapshot that does not match its ``latest.json``: nothing is restored."""

    template = (
        "the catalog snapshot {key} at {destination} is damaged ({detail}); nothing was "
        "changed; restore from another destination"
    )
    exit_code = ExitCode.INTEGRITY


class IntegrityMismatch(DestinationError):
    """The remote copy is not the asset's bytes (wrong size or checksum, or missing)."""

    template = "destination {destination}: {key} does not match the library ({detail})"
    retryable = True


# -- web -----------------------------------------------------------------------------------


# -- consumers (tools that read the library in place: Immich's external library) -------------


class ConsumerError(PicpipeError):
    template = "consumer {consumer}: {detail}"
    exit_code = ExitCode.DESTINATION


class ConsumerUnavailable(ConsumerError):
    template = "consumer {consumer} is not reachable ({detail})"
    retryable = True


class ConsumerAuthFailed(ConsumerError):
    template = "consumer {consumer}: authentication failed ({detail}); check its api_key"


class ConsumerMisconfigured(ConsumerError):
    template = "consumer {consumer}: {detail}"
    exit_code = ExitCode.CONFIG


class ServeRefused(PicpipeError):
    template = "refusing to serve: {detail}"
    exit_code = ExitCode.CONFIG


# -- integrity -----------------------------------------------------------------------------


class IntegrityProblems(PicpipeError):
    template = (
        "verify found {count} problem(s) in the library; the report says which, and its "
        "`next:` lines the command that puts them right (`picpipe repair` for damaged originals)"
    )
    exit_code = ExitCode.INTEGRITY


class ItemsFailed(PicpipeError):
    template = "completed with {count} failed item(s); the list above (or --json) says why"
    exit_code = ExitCode.ITEMS_FAILED


class ThumbnailsFailed(ItemsFailed):
    template = "{count} asset(s) got no thumbnails; `picpipe thumbs --json` lists the reasons"
