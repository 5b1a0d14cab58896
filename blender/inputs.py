"""What the user asks for, checked before any request: the image (re-encoded when the service cannot take it)
and the generation parameters (explicit values, then the scene's settings, then the API defaults)."""

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bpy

from ..api import GenerationParams, ModelsLabError
from ..api.errors import invalid_input
from ..api.params import PARAM_FIELDS, check_http_url, is_url
from .session import uploads_dir

if TYPE_CHECKING:
    from ..api.records import JobRecord

MAX_UPLOAD_BYTES = 5 << 20


class ImageInput:
    """A resolved image: `source` is what the runner gets (URL or local file), `original` what the user gave."""

    __slots__ = ("source", "name", "original", "is_url")

    def __init__(self, source: str, name: str, original: str, is_url: bool) -> None:
        self.source = source
        self.name = name
        self.original = original
        self.is_url = is_url


def _last_part(image: str) -> Path:
    return Path(image.split("?", 1)[0].rstrip("/"))


def display_name(image: str) -> str:
    """The file name of an image path or URL (query dropped), for progress lines."""
    return _last_part(image).name or image


def resolve_image(image: str) -> ImageInput:
    """Validate an image argument: http(s) URL, absolute/relative path or `//`-relative to the saved .blend.

    Local images the service cannot take (over 5 MB, or a format Blender reads but the service does not) are
    re-encoded as PNG (downscaled if needed) with Blender's image API. Raises ModelsLabError(invalid_input).
    """
    text = (image or "").strip()
    if not text:
        raise invalid_input("No image was chosen.", "Choose an image file or enter an image URL.")
    if is_url(text):
        check_http_url(text, "image")
        return ImageInput(text, _clean_name(_last_part(text).stem), text, True)
    if text.startswith("//"):
        if not bpy.data.filepath:
            raise invalid_input(
                f"The path {text} is relative to the .blend file, but this file has not been saved.",
                "Save the .blend file first, or use an absolute path.",
            )
        path = bpy.path.abspath(text)
    else:
        path = os.path.expanduser(text)
    path = os.path.normpath(os.path.abspath(path))
    if not os.path.isfile(path):
        raise invalid_input(f"Image file not found: {path}", "Check the path; the file may have been moved.")
    prepared = prepare_local_image(path)
    return ImageInput(prepared, _clean_name(Path(path).stem), path, False)


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
    stat = os.stat(path)
    digest = hashlib.sha1(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
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


def drop_prepared_upload(record: "JobRecord") -> None:
    """Remove a re-encoded upload copy once its job is done (only files this module wrote under uploads/)."""
    source = record.source
    if source and source != record.extra.get("original_source") and not is_url(source):
        path = Path(source)
        if path.parent == uploads_dir():
            path.unlink(missing_ok=True)


def build_params(values: dict[str, Any], fallback: Any = None) -> GenerationParams:
    """GenerationParams from explicit values, then `fallback` (a scene.modelslab), then the defaults.

    Raises ModelsLabError(invalid_input) for unknown names or bad values.
    """
    unknown = set(values) - set(PARAM_FIELDS)
    if unknown:
        known = ", ".join(sorted(PARAM_FIELDS))
        raise invalid_input(f"Unknown parameter(s): {', '.join(sorted(unknown))}.", f"Known parameters: {known}.")
    merged: dict[str, Any] = {}
    for name in PARAM_FIELDS:
        if name in values and values[name] is not None:
            merged[name] = values[name]
        elif fallback is not None and hasattr(fallback, name):
            merged[name] = getattr(fallback, name)
        if isinstance(merged.get(name), float):  # bpy float properties are single precision: 0.85 -> 0.8500000238
            merged[name] = round(merged[name], 6)
    for name in ("webhook", "track_id"):
        if not merged.get(name):
            merged[name] = None
    params = GenerationParams.from_dict(merged)
    params.validate(require_image=False)
    return params
