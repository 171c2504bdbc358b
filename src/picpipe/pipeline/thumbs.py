"""Thumbnails: decode each original once, cascade medium → small → tiny, write them atomically.

``make_thumbnails`` is the worker: it takes a plain `ThumbJob`, decodes the original with the
fast path for its format (``pipeline/decoders.py``), resizes to the medium box, converts to
sRGB, turns it upright, then makes small from medium and tiny from small. Files go to
``thumbs/{size}/{sha[:2]}/{sha256}.{jpg|webp}`` under the local root, each written to a temp
name in its folder and renamed over. It returns a plain `ThumbResult`; a file it cannot read
is a failed result with a reason, never an exception.

`ThumbRun` (``pipeline/thumbrun.py``) runs the workers in a process pool and records results.
"""

from __future__ import annotations

import io
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from picpipe.errors import ItemError, ThumbnailWriteFailed
from picpipe.library.atomic import atomic_path
from picpipe.library.layout import THUMB_SIZES, ThumbSize, thumb_path

if TYPE_CHECKING:
    from picpipe.pipeline.decoders import Decoded

log = logging.getLogger(__name__)

ThumbFormat = Literal["jpeg", "webp"]
BOXES: dict[ThumbSize, tuple[int, int]] = {
    "tiny": (150, 150),
    "small": (500, 500),
    "medium": (1920, 1080),
}
EXTENSIONS: dict[ThumbFormat, str] = {"jpeg": "jpg", "webp": "webp"}


@dataclass(frozen=True, slots=True)
class ThumbJob:
    """Everything a worker needs for one asset, as plain data (it crosses a process boundary)."""

    sha256: str
    original: str  # absolute path of the original in the library
    kind: str  # photo | raw | video
    home: str  # local root; thumbnails go under home/thumbs
    format: ThumbFormat = "jpeg"
    quality: int = 85
    max_pixels: int = 250_000_000
    file_type: str | None = None
    orientation: int | None = None


@dataclass(frozen=True, slots=True)
class ThumbResult:
    """What a worker did with one `ThumbJob`: ``sizes`` when it made them, else ``reason``.

    ``retry`` marks a failure that is not the file's fault (it could not be read, or the
    thumbnails could not be written): the asset stays pending for the next run.
    """

    sha256: str
    reason: str | None = None
    retry: bool = False
    width: int | None = None  # the original's upright (display) size
    height: int | None = None
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    video_codec: str | None = None
    duration: float | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.reason is None


def thumb_file(home: Path | str, sha256: str, size: ThumbSize, fmt: ThumbFormat) -> Path:
    """Absolute path of one thumbnail under the local root ``home``."""
    return Path(home) / thumb_path(sha256, size, EXTENSIONS[fmt])


def init_worker(threads: int) -> None:
    """Process-pool initializer: decoder threads and libvips settings for this worker.

    Workers report through their results, not the log: they are forked while the command may
    be drawing a Rich progress bar, and a handler lock copied mid-use would hang a worker that
    logs. So only errors are logged here.
    """
    from picpipe.pipeline import decoders

    logging.getLogger("picpipe").setLevel(logging.ERROR)
    decoders.configure(threads)


def make_thumbnails(job: ThumbJob) -> ThumbResult:
    """Make the three thumbnails of one asset; never raises for a bad file.

    This is the per-item boundary of the stage (it runs in a worker process): an ItemError
    becomes the result's reason, and so does any other decoder exception, so that one odd file
    never ends the worker. A crash inside a C decoder kills the worker; `ThumbRun` handles that.
    """
    started = time.perf_counter()

    def failed(reason: str, *, retry: bool = False) -> ThumbResult:
        return ThumbResult(job.sha256, reason, retry, seconds=time.perf_counter() - started)

    try:
        result = _render(job)
    except ItemError as exc:
        return failed(exc.reason, retry=exc.retryable)
    except MemoryError:
        return failed("out of memory while decoding (try fewer thumbs.workers)", retry=True)
    except Exception as exc:
        import pyvips

        from picpipe.pipeline.decoders import vips_reason

        log.debug("thumbnails of %s failed", job.sha256, exc_info=True)
        if isinstance(exc, pyvips.Error):  # raised while decoding, in copy_memory
            return failed(vips_reason(exc))
        return failed(f"internal error: {type(exc).__name__}: {exc}"[:300])
    return ThumbResult(
        job.sha256,
        width=result.size[0],
        height=result.size[1],
        sizes=result.sizes,
        video_codec=result.video_codec,
        duration=result.duration,
        seconds=time.perf_counter() - started,
    )


@dataclass(slots=True)
class _Rendered:
    size: tuple[int, int]
    sizes: dict[str, tuple[int, int]]
    video_codec: str | None
    duration: float | None


def _render(job: ThumbJob) -> _Rendered:
    from picpipe.pipeline.decoders import decode

    decoded = decode(job.original, job.kind, max_pixels=job.max_pixels, box=BOXES["medium"])
    image, orientation = decoded.image, decoded.orientation
    sizes = _target_sizes(decoded)
    width, height = sizes["medium"]
    if orientation >= 5:  # resize in stored orientation, rotate the small result
        width, height = height, width
    if (image.width, image.height) != (width, height):
        image = image.resize(width / image.width, vscale=height / image.height)
    medium = upright(to_srgb(image).copy_memory(), orientation).copy_memory()
    current = medium
    for name in ("medium", "small", "tiny"):
        want = sizes[name]
        if (current.width, current.height) != want:
            current = current.resize(
                want[0] / current.width, vscale=want[1] / current.height
            ).copy_memory()
        _save(current, thumb_file(job.home, job.sha256, name, job.format), job)
    return _Rendered(decoded.size, sizes, decoded.video_codec, decoded.duration)


def _target_sizes(decoded: Decoded) -> dict[str, tuple[int, int]]:
    """Each size fitted from the original's upright size (or the decoded image's, if smaller)."""
    from picpipe.pipeline.decoders import fit

    image = decoded.image
    have = (image.height, image.width) if decoded.orientation >= 5 else (image.width, image.height)
    basis = decoded.size
    medium = fit(basis, BOXES["medium"])
    if have[0] < medium[0] or have[1] < medium[1]:  # a RAW preview a little short of medium
        basis = have
    return {name: fit(basis, BOXES[name]) for name in THUMB_SIZES}


def upright(image: Any, orientation: int) -> Any:
    """Apply an EXIF orientation (1-8) to a pyvips image."""
    if orientation in (5, 6):
        image = image.rot("d90")
    elif orientation in (7, 8):
        image = image.rot("d270")
    elif orientation in (3, 4):
        image = image.rot("d180")
    if orientation in (2, 4, 5, 7):
        image = image.fliphor()
    return image


def to_srgb(image: Any) -> Any:
    """8-bit, 3-band sRGB: ICC profiles applied, CMYK and grey converted, alpha on white."""
    import pyvips

    if image.get_typeof("icc-profile-data"):
        profile = image.get("icc-profile-data")
        if not _is_srgb_profile(profile):  # a transform costs ~25 ms at 1920x1080; skip no-ops
            try:
                image = image.icc_transform("srgb", embedded=True, intent="perceptual")
            except pyvips.Error:  # a broken profile: convert as if there were none
                log.debug("unusable ICC profile; converted without it")
        image = image.copy()
        image.remove("icc-profile-data")
    if image.hasalpha():
        white = _max_alpha(image)
        image = image.flatten(background=[white] * (image.bands - 1), max_alpha=white)
    if image.interpretation != "srgb" or image.format != "uchar" or image.bands != 3:
        image = image.colourspace("srgb")
    if image.bands > 3:
        image = image.extract_band(0, n=3)
    if image.format != "uchar":
        image = image.cast("uchar")
    return image


def _max_alpha(image: Any) -> float:
    return 65535.0 if image.format == "ushort" else 255.0


def _is_srgb_profile(profile: bytes) -> bool:
    from PIL import ImageCms

    try:
        description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile)))
    except (OSError, ImageCms.PyCMSError, TypeError):
        return False
    return "srgb" in description.lower()


def _save(image: Any, target: Path, job: ThumbJob) -> None:
    """Write to a temp name in the target folder, then rename over (readers never see half)."""
    import pyvips

    try:
        # No fsync: a thumbnail lost to a power cut is remade; the temp name carries the pid.
        with atomic_path(target, fsync=False, middle=f"{os.getpid()}-{target.name}") as temp:
            os.makedirs(target.parent, exist_ok=True)
            if job.format == "webp":
                image.webpsave(str(temp), Q=job.quality, strip=True)
            else:
                image.jpegsave(str(temp), Q=job.quality, strip=True)
    except (OSError, pyvips.Error) as exc:
        detail = exc.strerror if isinstance(exc, OSError) else str(exc.detail or exc.message)
        raise ThumbnailWriteFailed(detail=" ".join(str(detail).split())[:200]) from exc
