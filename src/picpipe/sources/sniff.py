"""Recognise photos and videos by their first bytes, for files whose name says nothing.

Only files whose extension is not a known media extension are sniffed, and only once per
(size, mtime) (the scan remembers the answer in the catalog), so an unchanged rescan reads no
content. `media_format` looks at no more than `HEADER_BYTES` bytes and never raises.
"""

from __future__ import annotations

HEADER_BYTES = 512  # enough for every signature below (MTS needs 197)

# ISO base media file format brands (the `ftyp` box at offset 4).
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_CR3_BRANDS = {b"crx "}
_MOV_BRANDS = {b"qt  "}
# QuickTime files without `ftyp` start with one of these atoms.
_MOV_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}


def media_format(head: bytes) -> str | None:
    """The media format ``head`` (a file's first bytes) starts with, or None when it is
    not a photo or video picpipe knows: ``jpeg``, ``png``, ``gif``, ``webp``, ``tiff`` (and
    the TIFF-based raws ``cr2``, ``orf``, ``rw2``; DNG, NEF and ARW are plain TIFF), ``raf``,
    ``crw``, ``heic``, ``avif``, ``cr3``, ``mov``, ``mp4``, ``avi``, ``mts`` (or ``ts``)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"FUJIFILMCCD-RAW"):
        return "raf"
    if head.startswith(b"II\x1a\x00\x00\x00HEAPCCDR"):
        return "crw"
    tiff = _tiff(head)
    if tiff is not None:
        return tiff
    if head[:4] == b"RIFF" and len(head) >= 12:
        return {b"AVI ": "avi", b"WEBP": "webp"}.get(head[8:12])
    iso = _iso_bmff(head)
    if iso is not None:
        return iso
    return _transport_stream(head)


def _tiff(head: bytes) -> str | None:
    if head.startswith((b"II*\x00", b"MM\x00*")):
        # Canon's CR2 is a TIFF with "CR" and its version right after the header.
        return "cr2" if head[8:10] == b"CR" else "tiff"
    if head.startswith((b"IIRO", b"IIRS", b"MMOR")):
        return "orf"
    if head.startswith(b"IIU\x00"):
        return "rw2"
    return None


def _iso_bmff(head: bytes) -> str | None:
    box = head[4:8]
    if box == b"ftyp" and len(head) >= 12:
        major = head[8:12]
        end = min(len(head), int.from_bytes(head[:4], "big") or len(head))
        brands = {major} | {head[i : i + 4] for i in range(16, end - 3, 4)}
        if major in _CR3_BRANDS:
            return "cr3"
        if major in _AVIF_BRANDS:
            return "avif"
        if major in _HEIF_BRANDS or (major not in _MOV_BRANDS and brands & _HEIF_BRANDS):
            return "heic"
        if major in _MOV_BRANDS:
            return "mov"
        return "mp4"  # isom, mp41, mp42, M4V, 3gp4, dash ...: a video container
    if box in _MOV_ATOMS and int.from_bytes(head[:4], "big") >= 8:
        return "mov"
    return None


def _transport_stream(head: bytes) -> str | None:
    """MPEG transport streams: 188-byte packets (``.ts``) or AVCHD's 192-byte ones (``.mts``),
    each starting with the sync byte 0x47; two packets in a row are required."""
    if len(head) >= 197 and head[4] == 0x47 and head[196] == 0x47:
        return "mts"
    if len(head) >= 189 and head[0] == 0x47 and head[188] == 0x47:
        return "ts"
    return None
