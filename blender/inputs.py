"""What the user asks for, checked before any request: the image (re-encoded when the service cannot take it)
and the generation parameters (explicit values, then the scene's settings, then the API defaults)."""

import hashlib
import os
import stat
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bpy

from ..api import GenerationParams, ModelsLabError
from ..api.errors import invalid_input
from ..api.params import IMAGE, SPECS, TEXT, check_http_url, fields_for, is_url, text_params
from .session import uploads_dir

if TYPE_CHECKING:
    pass

MAX_UPLOAD_BYTES = 5 << 20


class ImageInput:
    """A resolved image: `source` is what the runner gets (URL or local file, "" for a text job), `original` what
    the user gave ("image:<name>", "camera:<name>", "text:<prompt>" for inputs from inside Blender), `name` the
    job's name (None: the runner names it)."""

    __slots__ = ("source", "name", "original", "is_url")

    def __init__(self, source: str, name: "str | None", original: str, is_url: bool) -> None:
        self.source = source
        self.name = name
        self.original = original
        self.is_url = is_url


def _last_part(image: str) -> Path:
    return Path(image.split("?", 1)[0].rstrip("/"))


def display_name(image: str) -> str:
    """The file name of an image path or URL (query dropped), for progress lines."""
    return _last_part(image).name or image


def source_identity(image: str) -> str:
    """The one identity of an image argument, as the journal stores it and every caller compares it.

    A URL stays as given; a path is made absolute (`~` expanded, `//` against the saved .blend's folder) and
    normalised, so `../examples/a.png` and `/work/examples/a.png` are the same input. Symlinks are kept (the
    path the user gave is what they recognise). A `//` path of an unsaved file stays as given.
    """
    text = (image or "").strip()
    if not text or is_url(text):
        return text
    if text.startswith("//"):
        if not bpy.data.filepath:
            return text
        path = bpy.path.abspath(text)
    else:
        path = os.path.expanduser(text)
    return os.path.normpath(os.path.abspath(path))


def resolve_image(image: str) -> ImageInput:
    """Validate an image argument: http(s) URL, absolute/relative path or `//`-relative to the saved .blend.

    Local images the service cannot take (over 5 MB, or a format Blender reads but the service does not) are
    re-encoded as PNG (downscaled if needed, EXIF orientation applied) with Blender's image API.
    Raises ModelsLabError(invalid_input).
    """
    text = (image or "").strip()
    if not text:
        raise invalid_input("No image was chosen.", "Choose an image file or enter an image URL.")
    if is_url(text):
        check_http_url(text, "image")
        return ImageInput(text, _clean_name(_last_part(text).stem), text, True)
    if text.startswith("//") and not bpy.data.filepath:
        raise invalid_input(
            f"The path {text} is relative to the .blend file, but this file has not been saved.",
            "Save the .blend file first, or use an absolute path.",
        )
    path = source_identity(text)
    if not os.path.isfile(path):
        raise _not_an_image_file(path)
    prepared = prepare_local_image(path)
    return ImageInput(prepared, _clean_name(Path(path).stem), path, False)


_SPECIAL_FILES = (
    (stat.S_ISDIR, "a folder", "Choose an image file inside it."),
    (stat.S_ISFIFO, "a named pipe (FIFO)", "Save the image to an ordinary file and choose that."),
    (stat.S_ISCHR, "a character device", "Choose an ordinary image file."),
    (stat.S_ISBLK, "a block device", "Choose an ordinary image file."),
    (stat.S_ISSOCK, "a socket", "Choose an ordinary image file."),
)


def _not_an_image_file(path: str) -> ModelsLabError:
    """The error for a path that is not a regular file: say what it is (stat never opens it, so a FIFO never
    blocks here)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return invalid_input(f"Image file not found: {path}", "Check the path; the file may have been moved.")
    except OSError as exc:
        return invalid_input(f"Cannot access the image file {path}: {exc.strerror or exc}", "Check its permissions.")
    for test, what, fix in _SPECIAL_FILES:
        if test(mode):
            return invalid_input(f"{path} is {what}, not an image file.", fix)
    return invalid_input(f"{path} is not a regular file.", "Choose an ordinary image file.")


def _clean_name(stem: str) -> str:
    return stem.strip()[:63] or "image"


def prepare_local_image(path: str) -> str:
    """Return path, or a PNG re-encoded (and downscaled) by Blender under <user dir>/uploads when needed."""
    from ..api.images import check_image_file, sniff_image_type

    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(64)
    known_type = sniff_image_type(head) is not None
    if size <= MAX_UPLOAD_BYTES and known_type:
        check_image_file(path)
        return path
    try:
        check_image_file(path)
        api_error = None
    except ModelsLabError as error:
        api_error = error  # what is wrong with the file as it is, in the api's words
    try:
        return _reencode_png(path, size)
    except Exception as exc:
        if known_type and isinstance(exc, ModelsLabError):
            raise  # a picture that stays too big even downscaled: our message is the precise one
        if api_error is not None:
            raise api_error from exc
        raise invalid_input(f"Blender could not read the image {path}: {exc}") from exc


def _reencode_png(path: str, size: int) -> str:
    stat_result = os.stat(path)
    orientation = jpeg_orientation(path)
    # The orientation is part of the key: a copy made before it was applied is never reused.
    key = f"{path}|{stat_result.st_size}|{stat_result.st_mtime_ns}|upright{orientation}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    out_dir = uploads_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{digest}.png"
    if target.is_file() and 0 < target.stat().st_size <= MAX_UPLOAD_BYTES:
        return str(target)
    image = bpy.data.images.load(path, check_existing=False)
    try:
        size_px: Any = image.size
        width, height = int(size_px[0]), int(size_px[1])
        if width <= 0 or height <= 0:
            raise invalid_input(f"Blender could not read the image {path}.", "Convert it to PNG or JPEG.")
        if orientation != 1:
            width, height = _apply_orientation(image, orientation)
        scale = 1.0
        for _attempt in range(8):
            if scale < 1.0:
                new_w, new_h = max(1, int(width * scale)), max(1, int(height * scale))
                if min(new_w, new_h) < 64:
                    break
                image.scale(new_w, new_h)
            image.filepath_raw = str(target)
            image.file_format = "PNG"
            image.save()
            written = target.stat().st_size
            if written <= MAX_UPLOAD_BYTES:
                print(f"ModelsLab: {os.path.basename(path)} ({size / (1 << 20):.1f} MB) re-encoded for upload")
                return str(target)
            scale *= max(0.3, min(0.85, (MAX_UPLOAD_BYTES / written) ** 0.5 * 0.95))
    finally:
        bpy.data.images.remove(image)
    target.unlink(missing_ok=True)
    raise invalid_input(
        f"The image {path} is {size / (1 << 20):.1f} MB and could not be made smaller than 5 MB.",
        "Resize or compress the image, or give an image URL instead.",
    )


# Reading the one EXIF field by hand: Blender's Python has no imaging library (no Pillow), and its image loader
# ignores EXIF orientation, so a phone's portrait photo would be re-encoded sideways.
_EXIF_ORIENTATION_TAG = 0x0112
_JPEG_STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))  # TEM, RST0-7: markers without a length
_JPEG_SCAN_BYTES = 1 << 20  # the EXIF block comes before the image data, in the first segments


def jpeg_orientation(path: str) -> int:
    """The EXIF orientation (1-8) of a JPEG file; 1 (as stored) for other files or when there is none."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(_JPEG_SCAN_BYTES)
    except OSError:
        return 1
    if not data.startswith(b"\xff\xd8"):
        return 1
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return 1  # not a marker where one must be: a damaged file, leave it as stored
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no EXIF block before it
            return 1
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        segment = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            return _tiff_orientation(segment[6:])
        pos += 2 + length
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    """Orientation from the first IFD of an EXIF TIFF block; 1 when absent or malformed."""
    if tiff[:4] == b"II*\x00":
        order = "<"
    elif tiff[:4] == b"MM\x00*":
        order = ">"
    else:
        return 1
    try:
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for index in range(min(count, 512)):
            (
                tag,
                kind,
                _n,
            ) = struct.unpack_from(order + "HHI", tiff, ifd + 2 + 12 * index)
            if tag == _EXIF_ORIENTATION_TAG and kind == 3:  # SHORT, stored in the entry itself
                (value,) = struct.unpack_from(order + "H", tiff, ifd + 2 + 12 * index + 8)
                return value if 1 <= value <= 8 else 1
    except struct.error:
        return 1
    return 1


def _apply_orientation(image: Any, orientation: int) -> tuple[int, int]:
    """Turn a loaded image's pixels upright (EXIF orientation 2-8); returns the new (width, height)."""
    import numpy as np  # bundled with Blender

    width, height = int(image.size[0]), int(image.size[1])
    channels = int(image.channels)
    buffer = np.empty(width * height * channels, dtype=np.float32)
    image.pixels.foreach_get(buffer)
    top_down = buffer.reshape(height, width, channels)[::-1]  # Blender's rows start at the bottom
    turned = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }[orientation](top_down)
    new_height, new_width = int(turned.shape[0]), int(turned.shape[1])
    if (new_width, new_height) != (width, height):
        image.scale(new_width, new_height)  # only to give the buffer its new shape: every pixel is set below
    image.pixels.foreach_set(np.ascontiguousarray(turned[::-1]).ravel())
    return new_width, new_height


def optional_from_scene(fallback: Any, name: str) -> Any:
    """A scene setting of a field sent only when set: its value when its `use_<name>` toggle is on (text fields:
    when not empty), else None."""
    if fallback is None or not hasattr(fallback, name):
        return None
    value = getattr(fallback, name)
    if isinstance(value, str):
        return value.strip() or None
    return value if getattr(fallback, f"use_{name}", False) else None


def build_params(values: dict[str, Any], fallback: Any = None, *, kind: str = IMAGE) -> GenerationParams:
    """GenerationParams of one kind ("image" or "text") from explicit values, then `fallback` (a scene.modelslab),
    then the defaults. Fields sent only when set (the newer revision's, the text endpoint's) come from the scene
    only when their `use_<name>` toggle is on.

    Raises ModelsLabError(invalid_input) for unknown names or bad values.
    """
    allowed = fields_for(kind)
    unknown = set(values) - set(allowed) - {"extra_views"}
    if unknown:
        known = ", ".join(sorted(allowed))
        raise invalid_input(f"Unknown parameter(s): {', '.join(sorted(unknown))}.", f"Known parameters: {known}.")
    merged: dict[str, Any] = {}
    for name in allowed:
        if name in values and values[name] is not None:
            merged[name] = values[name]
        elif fallback is not None and SPECS[name].optional:
            merged[name] = optional_from_scene(fallback, name)
        elif fallback is not None and hasattr(fallback, name) and name != "prompt":
            merged[name] = getattr(fallback, name)
        if isinstance(merged.get(name), float):  # bpy float properties are single precision: 0.85 -> 0.8500000238
            merged[name] = round(merged[name], 6)
    for name in ("webhook", "track_id"):
        if not merged.get(name):
            merged[name] = None
    if values.get("extra_views"):
        merged["extra_views"] = list(values["extra_views"])
    if kind == TEXT:
        params = text_params(str(merged.pop("prompt", "") or ""), **merged)
        params.validate()
    else:
        params = GenerationParams.from_dict(merged)
        params.validate(require_image=False)
    return params
