"""A sidecar that came with a source file: read in any XMP encoding, every failure recorded.

XMP may be serialized as UTF-8, UTF-16 or UTF-32, big or little endian (XMP Specification
Part 1, "Serialization"). exiftool 12.57 reads those only when an XML declaration or packet
wrapper comes first: a bare ``<x:xmpmeta>`` in UTF-16/32 reads as an empty record with a BOM
(nothing, silently) and as "File format error" without one. `readable_xmp` recognises the
encoding by its byte-order mark, or without one by where the zero bytes of the first ``<``
fall, and gives exiftool a UTF-8 copy in a private temp folder (the declaration's encoding
rewritten to match); a UTF-8 file is used as it is.
"""

from __future__ import annotations

import codecs
import os
import re
import tempfile
from contextlib import contextmanager
from typing import TYPE_CHECKING

from picpipe.pipeline.sidecar import SidecarContent, SidecarError, read_sidecar

if TYPE_CHECKING:
    from collections.abc import Iterator

    from picpipe.pipeline.exiftool import ExifTool

# Longest first: a UTF-32 LE mark starts with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, None),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_NO_BOM = (
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00", "utf-16-le"),
    (b"\x00<", "utf-16-be"),
)
_DECLARED = re.compile(r"""(<\?xml[^>]*?encoding=)(["'])[^"']*\2""")
# An XMP packet names one of these whatever prefixes it uses.
_NAMESPACES = ("http://www.w3.org/1999/02/22-rdf-syntax-ns#", "adobe:ns:meta/")
_NOT_XMP = "not readable as XMP (it names no RDF or x:xmpmeta namespace)"
MAX_SIDECAR_BYTES = 64 << 20  # far beyond any real sidecar; a bigger file is not one


def read_source_sidecar(tool: ExifTool, path: str | bytes) -> tuple[SidecarContent, bool]:
    """Read the sidecar at ``path``; returns it and whether exiftool can rewrite it as is.

    A UTF-16/32 sidecar is read from a UTF-8 copy (False: picpipe's sidecar then starts from
    the fields read, not from a copy of the file). Raises SidecarError naming ``path`` for
    anything unreadable: gone, not text in its encoding, not XMP.
    """
    display = os.fsdecode(path)
    try:
        with readable_xmp(path) as readable:
            try:
                return read_sidecar(tool, readable), readable == path
            except SidecarError as exc:
                raise SidecarError(path=display, detail=exc.reason) from exc
    except OSError as exc:
        raise SidecarError(path=display, detail=exc.strerror or str(exc)) from exc


def xmp_encoding(head: bytes) -> tuple[str | None, int]:
    """(codec, BOM length) of an XMP file starting with ``head``; codec None for UTF-8."""
    for mark, codec in _BOMS:
        if head.startswith(mark):
            return codec, len(mark)
    for start, codec in _NO_BOM:
        if head.startswith(start):
            return codec, 0
    return None, 0


@contextmanager
def readable_xmp(path: str | bytes) -> Iterator[str | bytes]:
    """``path`` itself when it is UTF-8, else a UTF-8 copy that lives inside the ``with``.

    Raises SidecarError when the file is far too large, does not decode in its encoding, or
    names neither the RDF nor the XMP namespace (exiftool reads such a file, say a PNG named
    ``.xmp``, as an empty record without complaint); OSError when it cannot be read.
    """
    display = os.fsdecode(path)
    if os.path.getsize(path) > MAX_SIDECAR_BYTES:
        raise SidecarError(path=display, detail="too large for a sidecar")
    with open(path, "rb") as handle:
        raw = handle.read()
    codec, skip = xmp_encoding(raw[:4])
    if codec is None:
        if not any(ns.encode() in raw for ns in _NAMESPACES):
            raise SidecarError(path=display, detail=_NOT_XMP)
        yield path
        return
    try:
        text = raw[skip:].decode(codec)
    except UnicodeDecodeError as exc:
        detail = f"not valid {codec.upper()} ({exc.reason})"
        raise SidecarError(path=display, detail=detail) from exc
    if not any(ns in text for ns in _NAMESPACES):
        raise SidecarError(path=display, detail=_NOT_XMP)
    text = _DECLARED.sub(r"\1\2UTF-8\2", text.lstrip("\ufeff"), count=1)
    with tempfile.TemporaryDirectory(prefix="picpipe-xmp-") as tmp:
        copy = os.path.join(tmp, "sidecar.xmp")
        with open(copy, "w", encoding="utf-8") as out:
            out.write(text)
        yield copy
