"""Per-format decoders for the thumbnail worker: one decode of an original, as a pyvips image.

Each decoder returns a `Decoded`: the picture in its stored orientation with the orientation
still to apply, and the original's upright size. Decoders shrink while loading when the format
allows (JPEG DCT scaling, RAW half-size, an embedded RAW preview) but never below what the
medium thumbnail needs; colour and rotation are applied after the resize (``thumbs.py``).
Every failure is a `ThumbnailFailed` whose reason a person understands; decompression bombs
are refused from the header, before any pixel is decoded.

Runs in worker processes only (``pipeline/thumbs.py`` imports it there): pillow-heif and
pyvips, and lazily rawpy and PyAV. libvips' own HEIF loader is blocked because it links a second
libheif that crashes beside pillow-heif's in one process.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# pillow-heif first: its bundled libheif must bind before libvips loads its heif module,
# which drags in the system libheif; the other order sends pillow-heif's calls into the
# wrong library and crashes on the first HEIC.
import numpy
import pillow_heif
import pyvips

from picpipe.errors import OriginalUnreadable, ThumbnailFailed
from picpipe.pipeline.hdr import is_hdr, tone_map
from picpipe.pipeline.heifbox import primary_is_transformed

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)
_threads = {"decode": 1}  # decoder threads per worker, set by `configure`

Size = tuple[int, int]
_ROTATION_TO_ORIENTATION = {90: 6, 180: 3, 270: 8}  # clockwise degrees → EXIF orientation
_LIBRAW_FLIP_TO_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}
_MIN_RAW_BYTES_PER_PIXEL = 1 / 16  # below this a RAW file cannot hold its pixel data
_MIN_PREVIEW_EDGE = 150  # a smaller embedded preview is not worth a thumbnail


@dataclass(slots=True)
class Decoded:
    """One decoded original.

    ``image`` is in stored orientation (any bands, format or colour space; it may carry an ICC
    profile and may still be read lazily from disk). ``orientation`` (EXIF 1-8) turns it
    upright. ``size`` is the original's upright size, which thumbnails are fitted from whenever
    ``image`` is large enough for it.
    """

    image: Any
    orientation: int
    size: Size
    video_codec: str | None = None
    duration: float | None = None


def configure(threads: int) -> None:
    """Per worker process: libvips threads, no operation cache, no risky or clashing loaders."""
    # pyvips forwards libvips' chatter (resize plans, warnings on files already judged here)
    # to Python logging, and a forked worker shares the command's handlers.
    logging.getLogger("pyvips").setLevel(logging.ERROR)
    pyvips.cache_set_max(0)  # every file is new; a cache only holds memory
    pyvips.concurrency_set(max(1, threads))
    pyvips.operation_block_set("VipsForeignLoadMagick", True)  # priority -100, "untrusted"
    pyvips.operation_block_set("VipsForeignLoadHeif", True)  # pillow-heif decodes HEIF
    _threads["decode"] = max(1, threads)


def fit(size: Size, box: Size) -> Size:
    """``size`` scaled down to fit ``box`` with its aspect ratio kept; never scaled up."""
    width, height = size
    if width <= box[0] and height <= box[1]:
        return size
    scale = min(box[0] / width, box[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def decode(path: str, kind: str, *, max_pixels: int, box: Size) -> Decoded:
    """Decode ``path`` (an asset of ``kind`` photo, raw or video) once, big enough for ``box``.

    Raises ThumbnailFailed (an ItemError): a missing original, a bomb over ``max_pixels``, a
    corrupt, truncated or unsupported file.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except FileNotFoundError as exc:
        raise OriginalUnreadable(
            detail="original is missing from the library; run picpipe verify"
        ) from exc
    except OSError as exc:
        raise OriginalUnreadable(detail=f"cannot read the original: {exc.strerror or exc}") from exc
    if kind == "video":
        return _decode_video(path, max_pixels=max_pixels)
    if kind == "raw":
        return _decode_raw(path, max_pixels=max_pixels, box=box)
    if head[4:8] == b"ftyp":
        if _is_avif(path):
            return _decode_avif(path, max_pixels=max_pixels)
        return _decode_heif(path, max_pixels=max_pixels)
    return _decode_vips(path, max_pixels=max_pixels, box=box)


# -- libvips: JPEG, PNG, TIFF, WebP, GIF --------------------------------------------------


def _decode_vips(path: str, *, max_pixels: int, box: Size) -> Decoded:
    header = _vips_call(path, lambda: pyvips.Image.new_from_file(path, access="sequential"))
    width, height = header.width, header.height
    _check_pixels(width * height, max_pixels)
    orientation = _orientation_of(header)
    upright_size = (height, width) if orientation >= 5 else (width, height)
    if header.get("vips-loader") == "jpegload":
        # DCT scaling: 2-8x cheaper than a full decode, never below the medium size.
        need = fit(upright_size, box)
        need_w, need_h = (need[1], need[0]) if orientation >= 5 else need
        shrink = 1
        for factor in (8, 4, 2):
            if -(-width // factor) >= need_w and -(-height // factor) >= need_h:
                shrink = factor
                break
        if shrink > 1:
            header = _vips_call(
                path, lambda: pyvips.Image.new_from_file(path, access="sequential", shrink=shrink)
            )
    return Decoded(header, orientation, upright_size)


def _orientation_of(image: Any) -> int:
    if image.get_typeof("orientation"):
        value = image.get("orientation")
        if isinstance(value, int) and 1 <= value <= 8:
            return value
    return 1


def _vips_call(path: str, load: Callable[[], Any]) -> Any:
    try:
        return load()
    except pyvips.Error as exc:
        raise ThumbnailFailed(detail=vips_reason(exc, path)) from exc


def vips_reason(exc: pyvips.Error, path: str = "") -> str:
    """A person's reason from a libvips error (its error buffer, without the file's path)."""
    lines: list[str] = []
    for line in str(exc.detail or exc.message).splitlines():
        line = line.replace(path, "file") if path else line
        line = line.split(": ", 1)[1] if line.startswith("Vips") and ": " in line else line
        if line.strip() and line.strip() not in lines:
            lines.append(line.strip())
    detail = "; ".join(lines)
    if "is not a known file format" in detail:
        return "not an image format picpipe can read"
    if "operation is blocked" in detail:
        return "unsupported image format (its decoder is disabled)"
    return f"corrupt or truncated file: {_short(detail)}"


# -- HEIF / HEIC: pillow-heif ---------------------------------------------------------


def _decode_heif(path: str, *, max_pixels: int) -> Decoded:
    pillow_heif.options.DECODE_THREADS = _threads["decode"]
    try:
        # High bit depths stay 16-bit: PQ and HLG stills are tone-mapped, not truncated.
        heif = pillow_heif.open_heif(path, convert_hdr_to_8bit=False)
        picture = heif[heif.primary_index]
        width, height = picture.size  # after the HEIF transforms (irot, imir, clap)
        _check_pixels(width * height, max_pixels)
        data, stride, mode = picture.data, picture.stride, picture.mode
    except (ValueError, RuntimeError, OSError) as exc:
        raise ThumbnailFailed(detail=_heif_reason(exc)) from exc
    if mode not in ("RGB", "RGBA", "RGB;16", "RGBA;16"):
        raise ThumbnailFailed(detail=f"unsupported HEIF pixel layout {mode}")
    nclx = picture.info.get("nclx_profile")
    image = _heif_pixels(data, stride, mode, (width, height), nclx)
    if (icc := picture.info.get("icc_profile")) and not is_hdr(nclx):
        image.set_type(pyvips.GValue.blob_type, "icc-profile-data", icc)
    # libheif applies irot/imir itself and ignores EXIF; files without either (iPhone 7) are
    # upright only after their EXIF orientation.
    exif = picture.info.get("exif")
    rotated = primary_is_transformed(path)
    orientation = 1 if rotated else _exif_orientation(exif if isinstance(exif, bytes) else None)
    size = (height, width) if orientation >= 5 else (width, height)
    return Decoded(image, orientation, size)


def _heif_pixels(data: Any, stride: int, mode: str, size: Size, nclx: Any) -> Any:
    """libheif's rows as an 8-bit sRGB (or ICC-tagged) pyvips image; HDR tone-mapped."""
    width, height = size
    bands = 4 if mode.startswith("RGBA") else 3
    depth = 2 if mode.endswith(";16") else 1
    rows = numpy.frombuffer(data, dtype="<u2" if depth == 2 else numpy.uint8)
    pixels = rows.reshape(height, stride // depth)[:, : width * bands].reshape(height, width, bands)
    if depth == 2 and is_hdr(nclx):
        pixels = tone_map(pixels[..., :3], nclx)
        bands = 3
    elif depth == 2:
        pixels = (pixels >> 8).astype(numpy.uint8)
    contiguous = numpy.ascontiguousarray(pixels)
    return pyvips.Image.new_from_memory(contiguous.tobytes(), width, height, bands, "uchar").copy(
        interpretation="srgb"
    )


# -- AVIF: Pillow's own decoder (libavif with dav1d; pillow-heif's wheels have no AV1) -------


def _is_avif(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError:
        return False
    (size,) = struct.unpack_from(">I", head, 0)
    brands = head[8 : min(size, len(head))]
    return any(brands[i : i + 4] in (b"avif", b"avis") for i in range(0, len(brands) - 3, 4))


def _decode_avif(path: str, *, max_pixels: int) -> Decoded:
    from PIL import Image

    try:
        with Image.open(path, formats=["AVIF"]) as picture:
            width, height = picture.size
            _check_pixels(width * height, max_pixels)
            # Pillow reports the file's irot/imir as an EXIF orientation and leaves pixels as
            # stored: the orientation is applied after the resize, as for JPEG.
            orientation = picture.getexif().get(0x0112, 1)
            icc = picture.info.get("icc_profile")
            rgb = picture.convert("RGBA" if "A" in picture.mode else "RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise ThumbnailFailed(detail=f"corrupt or truncated file: {_short(str(exc))}") from exc
    bands = len(rgb.getbands())
    image = pyvips.Image.new_from_memory(rgb.tobytes(), width, height, bands, "uchar").copy(
        interpretation="srgb"
    )
    if icc:
        image.set_type(pyvips.GValue.blob_type, "icc-profile-data", icc)
    orientation = orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1
    size = (height, width) if orientation >= 5 else (width, height)
    return Decoded(image, orientation, size)


def _heif_reason(exc: Exception) -> str:
    text = _short(str(exc))
    if "nsupported" in text:
        return f"unsupported HEIF content: {text}"
    return f"corrupt or truncated file: {text}"


def _exif_orientation(exif: bytes | None) -> int:
    if not exif:
        return 1
    from PIL import Image

    try:
        value = Image.Exif()
        value.load(exif)
        orientation = value.get(0x0112)
    except (ValueError, OSError, SyntaxError, struct.error):
        return 1
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


# -- RAW: embedded preview, else LibRaw ------------------------------------------------------


def _decode_raw(path: str, *, max_pixels: int, box: Size) -> Decoded:
    import rawpy

    raw = rawpy.RawPy()
    try:
        raw.open_file(path)
        sizes = raw.sizes
    except rawpy.LibRawFileUnsupportedError as exc:
        raise ThumbnailFailed(
            detail="LibRaw cannot open this RAW file (an unsupported camera, or a cut-off file)"
        ) from exc
    except rawpy.LibRawError as exc:
        raise ThumbnailFailed(detail=f"corrupt or truncated RAW file: {exc}") from exc
    try:
        width, height = sizes.width, sizes.height
        _check_pixels(width * height, max_pixels)
        orientation = _LIBRAW_FLIP_TO_ORIENTATION.get(sizes.flip, 1)
        size = (height, width) if orientation >= 5 else (width, height)
        preview = _raw_preview(raw)
        if preview is not None:
            edges = (preview.height, preview.width) if orientation >= 5 else _dims(preview)
            need = fit(size, box)
            # Previews are stored unrotated; LibRaw's flip turns them upright. A preview a few
            # pixels short of the medium size (Sony's 1616x1080) is still the better choice.
            if max(edges) >= 0.95 * max(need):
                return Decoded(preview, orientation, size)
        try:
            pixels = _raw_pixels(raw, path, width * height, need=fit(size, box), size=size)
        except ThumbnailFailed:
            if preview is not None and max(_dims(preview)) >= _MIN_PREVIEW_EDGE:
                return Decoded(preview, orientation, _upright_dims(preview, orientation))
            raise
        return Decoded(pixels, 1, (pixels.width, pixels.height))
    finally:
        raw.close()


def _raw_preview(raw: Any) -> Any | None:
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    except rawpy.LibRawError:
        return None
    try:
        if thumb.format == rawpy.ThumbFormat.JPEG:
            image = pyvips.Image.new_from_buffer(thumb.data, "", access="sequential")
            image.width  # noqa: B018  (the header is read here: a broken preview fails now)
            return image
        return _from_array(thumb.data)
    except pyvips.Error:
        return None


def _raw_pixels(raw: Any, path: str, pixels: int, *, need: Size, size: Size) -> Any:
    import rawpy

    file_bytes = os.path.getsize(path)
    if file_bytes < pixels * _MIN_RAW_BYTES_PER_PIXEL:
        raise ThumbnailFailed(
            detail=(
                f"RAW pixel data is missing ({file_bytes // 1000} KB for "
                f"{_megapixels(pixels)} megapixels) and there is no usable embedded preview"
            ),
        )
    half = size[0] // 2 >= need[0] and size[1] // 2 >= need[1]
    try:
        array = raw.postprocess(use_camera_wb=True, half_size=half, output_bps=8)
    except rawpy.LibRawError as exc:
        raise ThumbnailFailed(detail=f"corrupt or truncated RAW file: {exc}") from exc
    if not array.any():
        raise ThumbnailFailed(detail="RAW file holds no image data (every pixel is black)")
    return _from_array(array)


def _from_array(array: Any) -> Any:
    import numpy

    array = numpy.ascontiguousarray(array)
    height, width = array.shape[:2]
    bands = 1 if array.ndim == 2 else array.shape[2]
    fmt = "uchar" if array.dtype == numpy.uint8 else "ushort"
    image = pyvips.Image.new_from_memory(array.data, width, height, bands, fmt)
    return image.copy(interpretation="srgb" if fmt == "uchar" else "rgb16").copy_memory()


def _dims(image: Any) -> Size:
    return image.width, image.height


def _upright_dims(image: Any, orientation: int) -> Size:
    return (image.height, image.width) if orientation >= 5 else (image.width, image.height)


# -- video: a poster frame with PyAV ---------------------------------------------------------


def _decode_video(path: str, *, max_pixels: int) -> Decoded:
    import av

    try:
        with av.open(path, metadata_errors="ignore") as container:
            if not container.streams.video:
                raise ThumbnailFailed(detail="no video stream in the file")
            stream = container.streams.video[0]
            codec = _codec_name(stream)
            _check_pixels(stream.width * stream.height, max_pixels)
            duration = _duration(container, stream)
            stream.codec_context.thread_count = _threads["decode"]
            frame = _poster_frame(container, stream, duration)
            if frame is None:
                raise ThumbnailFailed(detail="no decodable frame (corrupt or truncated file)")
            array = frame.to_ndarray(format="rgb24")
            rotation = round(-(frame.rotation or 0)) % 360  # counter-clockwise → clockwise
            sar = stream.codec_context.sample_aspect_ratio or stream.sample_aspect_ratio
    except av.error.DecoderNotFoundError as exc:
        raise ThumbnailFailed(detail="unsupported codec (no decoder installed)") from exc
    except av.error.FFmpegError as exc:
        raise ThumbnailFailed(detail=f"corrupt or truncated file: {_short(str(exc))}") from exc
    image = _from_array(array)
    if sar and sar != 1 and 0.2 < sar < 5:  # non-square pixels (DV, 3GP): stretch to display
        image = image.resize(float(sar), vscale=1.0)
    orientation = _ROTATION_TO_ORIENTATION.get(rotation, 1)
    size = _upright_dims(image, orientation)
    return Decoded(image, orientation, size, video_codec=codec, duration=duration)


def _codec_name(stream: Any) -> str:
    context = stream.codec_context  # None when this FFmpeg has no decoder for the stream
    if context is None or not context.name:
        raise ThumbnailFailed(detail="unsupported codec: no decoder for this video stream")
    return str(context.name)


def _duration(container: Any, stream: Any) -> float | None:
    if stream.duration and stream.time_base:
        return round(float(stream.duration * stream.time_base), 3)
    if container.duration:
        return round(float(container.duration) / 1_000_000, 3)
    return None


def _poster_frame(container: Any, stream: Any, duration: float | None) -> Any:
    """A frame a little into the clip (past a fade-in), else the first one that decodes."""
    import av

    if duration and duration > 2 and stream.time_base:
        target = min(1.0, duration / 10)
        start = stream.start_time or 0
        try:
            container.seek(start + int(target / stream.time_base), stream=stream)
            for frame in container.decode(stream):
                return frame
        except av.error.FFmpegError:
            log.debug("seek failed; taking the first frame")
        container.seek(0)
    for frame in container.decode(stream):
        return frame
    return None


# -- shared ---------------------------------------------------------------------------------


def _check_pixels(pixels: int, limit: int) -> None:
    if pixels > limit:
        raise ThumbnailFailed(
            detail=(
                f"image has {_megapixels(pixels)} megapixels, over the "
                f"{_megapixels(limit)}-megapixel limit (thumbs.max_pixels)"
            ),
        )
    if pixels <= 0:
        raise ThumbnailFailed(detail="image has no pixels (corrupt header)")


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.3g}"


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
