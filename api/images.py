"""Local image checks done before any upload: exists, readable, a known image type, within the size limit."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import invalid_input

MAX_IMAGE_BYTES = 5 << 20  # base64_to_url accepts images up to 5 MB
SUPPORTED = "PNG, JPEG, WEBP or BMP"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"
_TAIL_BYTES = 4096  # how far from the end the PNG IEND chunk may sit (some tools append a few bytes)


def sniff_image_type(head: bytes) -> str | None:
    """The MIME type of an image from its first bytes (PNG, JPEG, WEBP, BMP), else None."""
    if head.startswith(_PNG_MAGIC):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"BM") and len(head) >= 26:
        return "image/bmp"
    return None


def _describe(head: bytes) -> str:
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "a GIF image, which the service does not take"
    stripped = head.lstrip()[:15].lower()
    if stripped.startswith((b"<!doctype", b"<html", b"<?xml", b"<svg")):
        return "a text/HTML/SVG document, not a picture"
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "a HEIC/AVIF image, which the service does not take"
    return "not an image file the service understands"


def check_image_file(path: str | os.PathLike) -> tuple[str, int]:
    """Check a local image before uploading it; return (mime type, size in bytes).

    Raises ModelsLabError(invalid_input) with a message saying what is wrong and what to do.
    """
    if path is None or not str(path).strip():
        raise invalid_input("No image file was given.", "Choose an image file (PNG, JPEG or WEBP).")
    file = Path(os.path.expanduser(os.fspath(path)))
    shown = str(file)
    try:
        stat = file.stat()
    except FileNotFoundError:
        raise invalid_input(f"Image file not found: {shown}", "Check the path; the file may have been moved.") from None
    except OSError as exc:
        raise invalid_input(f"Cannot access the image file {shown}: {exc.strerror or exc}") from None
    if file.is_dir():
        raise invalid_input(f"{shown} is a folder, not an image file.", "Choose an image file inside it.")
    if not file.is_file():
        raise invalid_input(f"{shown} is not a regular file.", "Choose an ordinary image file.")
    size = stat.st_size
    if size == 0:
        raise invalid_input(f"The image file {shown} is empty (0 bytes).", "Choose another image or re-export it.")
    if size > MAX_IMAGE_BYTES:
        raise invalid_input(
            f"The image file {shown} is {size / (1 << 20):.1f} MB; the upload limit is 5 MB.",
            "Resize or compress the image (e.g. 1024 px PNG or JPEG), or give an image URL instead.",
        )
    try:
        with file.open("rb") as handle:
            head = handle.read(64)
            tail = b""
            if size > len(head):
                handle.seek(max(len(head), size - _TAIL_BYTES))
                tail = handle.read()
    except OSError as exc:
        raise invalid_input(
            f"The image file {shown} cannot be read: {exc.strerror or exc}", "Check the file's permissions."
        ) from None
    mime = sniff_image_type(head)
    if mime is None:
        raise invalid_input(
            f"{shown} is {_describe(head)}.", f"Convert it to {SUPPORTED} (PNG keeps transparency for remove_bg)."
        )
    if mime == "image/png" and _PNG_IEND not in head + tail:
        raise invalid_input(
            f"The PNG file {shown} is truncated (no end marker): it was not fully written or downloaded.",
            "Save or download the image again.",
        )
    if mime == "image/webp":
        declared = int.from_bytes(head[4:8], "little") + 8
        if declared > size:
            raise invalid_input(
                f"The WEBP file {shown} is truncated ({size} of {declared} bytes).", "Save or download the image again."
            )
    return mime, size
