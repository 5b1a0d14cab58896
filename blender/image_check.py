"""What is wrong with an image path, said as soon as it is set (the sidebar draws it under a greyed Generate).

Cheap enough for every redraw: one stat() per call, the file's first bytes read only when the path, its size
or its modification time changed. Never opens anything but a regular file (a FIFO or a device would block).
Stdlib only apart from the api's image checks, so it runs without bpy.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from ..api import ModelsLabError
from ..api.images import MAX_IMAGE_BYTES, SUPPORTED, check_image_file, sniff_image_type

# Formats Blender reads but the service does not take: the add-on converts them to PNG before the upload.
CONVERTED_SUFFIXES = frozenset(
    {".tga", ".tif", ".tiff", ".exr", ".hdr", ".dpx", ".cin", ".jp2", ".j2c", ".sgi", ".rgb", ".bw", ".psd"}
)


@dataclass(frozen=True)
class ImageCheck:
    """The verdict on a path: `problem` blocks Generate (with `fix`); `note` only informs."""

    problem: str = ""
    fix: str = ""
    note: str = ""
    picture: bool = False  # worth a thumbnail

    @property
    def ok(self) -> bool:
        return not self.problem


_cache: dict[str, tuple[tuple[int, int, int], ImageCheck]] = {}
_CACHE_MAX = 32


def check_image_path(path: str) -> ImageCheck:
    """Check an absolute path as the upload will see it (missing, not a file, not an image, too large...)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return ImageCheck("The image file was not found.", "Check the path; the file may have been moved.")
    except OSError as exc:
        return ImageCheck(f"The image file cannot be read ({exc.strerror or exc}).", "Check the file's permissions.")
    if stat.S_ISDIR(info.st_mode):
        return ImageCheck("This is a folder, not an image file.", "Choose an image file inside it.")
    if not stat.S_ISREG(info.st_mode):
        return ImageCheck("This is not an ordinary file (a pipe or a device).", "Choose an image file saved on disk.")
    key = (info.st_size, info.st_mtime_ns, info.st_ino)
    cached = _cache.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    verdict = _check_file(path, info.st_size)
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[path] = (key, verdict)
    return verdict


def _check_file(path: str, size: int) -> ImageCheck:
    if size == 0:
        return ImageCheck("The image file is empty (0 bytes).", "Choose another image or save it again.")
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as exc:
        return ImageCheck(f"The image file cannot be read ({exc.strerror or exc}).", "Check the file's permissions.")
    known = sniff_image_type(head) is not None
    megabytes = size / (1 << 20)
    limit = MAX_IMAGE_BYTES >> 20
    if known and size > MAX_IMAGE_BYTES:
        return ImageCheck(
            note=f"{megabytes:.1f} MB is over the {limit} MB upload limit: it will be resized and sent as PNG.",
            picture=True,
        )
    if not known:
        if os.path.splitext(path)[1].lower() in CONVERTED_SUFFIXES:
            return ImageCheck(note="This format is converted to PNG before the upload.", picture=True)
        try:
            check_image_file(path)
        except ModelsLabError as error:
            return ImageCheck(_without_path(error.message, path), f"Use a {SUPPORTED} image.")
        return ImageCheck(f"This file is not a {SUPPORTED} image.", f"Use a {SUPPORTED} image.")
    try:
        check_image_file(path)
    except ModelsLabError as error:
        return ImageCheck(_without_path(error.message, path), error.fix)
    return ImageCheck(picture=True)


def _without_path(message: str, path: str) -> str:
    """The api names the file in full; the sidebar shows it right above, so say "This file" instead."""
    text = message.replace(f"The image file {path}", "The image file").replace(f"The PNG file {path}", "The PNG")
    text = text.replace(f"The WEBP file {path}", "The WEBP").replace(path, "This file")
    return text[:1].upper() + text[1:]


def forget() -> None:
    """Drop the cached verdicts (the path property changed, or unregister)."""
    _cache.clear()
