"""Images from inside Blender: an image datablock, the active camera's render, the 3D viewport, the clipboard.

Each becomes a temporary PNG (alpha kept, colours as the user sees them) under <user dir>/uploads, named
`capture-<random>.png`, which the runner uploads like any local image; the importer removes it when the job is
done (drop_prepared_upload). An image whose every pixel is transparent (a render with nothing in front of
the camera) or that has no pixels is refused with invalid_input before any request.
"""

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bpy

from ..api import ModelsLabError
from ..api.errors import invalid_input
from ..api.params import VIEW_COUNT_RANGE, is_url
from .inputs import ImageInput, prepare_local_image, resolve_image
from .session import uploads_dir

if TYPE_CHECKING:
    from ..api.records import JobRecord

CAPTURE_PREFIX = "capture-"
# The sources of a job, as the sidebar's selector and the operator's `source` name them.
SOURCE_ITEMS = [
    ("FILE", "File", "A local image file (uploaded for you)"),
    ("URL", "URL", "An image on the web"),
    ("IMAGE", "Image", "An image in this file: loaded, generated or packed, Render Result, Viewer Node"),
    ("CAMERA", "Camera", "Render the scene's active camera with a transparent background and send that"),
    ("VIEWPORT", "Viewport", "Capture the 3D Viewport as you see it (needs Blender's window)"),
    ("CLIPBOARD", "Clipboard", "Paste an image from the clipboard (needs Blender's window and 4.2 or newer)"),
    ("TEXT", "Text", "Describe the object in words (text to 3D)"),
]
SOURCES = tuple(item[0] for item in SOURCE_ITEMS)
CAMERA_ENGINE = "BLENDER_WORKBENCH"  # fast, needs no lights, renders in the background too


def capture_path() -> Path:
    """A new temporary PNG path for one captured image (removed once the job no longer needs it)."""
    folder = uploads_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{CAPTURE_PREFIX}{uuid.uuid4().hex}.png"


def is_capture(path: str) -> bool:
    """True for a PNG this module wrote (the only files drop_captures() ever deletes)."""
    candidate = Path(path)
    return candidate.parent == uploads_dir() and candidate.name.startswith(CAPTURE_PREFIX)


def drop_captures(paths: Sequence[str]) -> None:
    """Remove captured PNGs once they were uploaded (anything else is left alone)."""
    for path in paths:
        if isinstance(path, str) and is_capture(path):
            Path(path).unlink(missing_ok=True)


_UPLOADING = ("queued", "uploading")


def drop_after_upload(event: Any) -> None:
    """A runtime listener: a job's captured PNGs go as soon as it is past uploading (or ended before it)."""
    record = event.record
    if str(record.state) in _UPLOADING:
        return
    captures = record.extra.get("captures") if isinstance(record.extra, dict) else None
    paths = [*(captures if isinstance(captures, list) else []), record.source]
    drop_captures([path for path in paths if isinstance(path, str) and path and is_capture(path)])


# --- what is available where -----------------------------------------------------------------------------------------
def clipboard_supported() -> bool:
    """Blender can paste an image from the clipboard (image.clipboard_paste, Blender 4.2 and newer)."""
    return "clipboard_paste" in dir(bpy.ops.image)


def unavailable(source: str, context: Any = None) -> str:
    """Why a source cannot be used now ("" when it can): the sidebar greys it out with this reason."""
    context = context or bpy.context
    if source == "CAMERA":
        scene = getattr(context, "scene", None)
        if scene is None or scene.camera is None:
            return "The scene has no active camera."
    if source in ("VIEWPORT", "CLIPBOARD"):
        if bpy.app.background or getattr(context, "window_manager", None) is None or not _windows():
            return "Needs Blender's window (not available in background mode)."
        if source == "VIEWPORT" and _area("VIEW_3D") is None:
            return "Open a 3D Viewport to capture."
        if source == "CLIPBOARD":
            if not clipboard_supported():
                return "Pasting images needs Blender 4.2 or newer."
            if _area("IMAGE_EDITOR") is None:
                return "Open an Image Editor: Blender pastes images there."
    return ""


def _windows() -> list[Any]:
    wm = getattr(bpy.context, "window_manager", None)
    return list(wm.windows) if wm is not None else []


def _area(kind: str) -> tuple[Any, Any] | None:
    for window in _windows():
        for area in window.screen.areas:
            if area.type == kind:
                return window, area
    return None


# --- writing a PNG ---------------------------------------------------------------------------------------------------
@contextmanager
def _temporarily(owner: Any, **values: Any) -> Iterator[None]:
    """Set attributes for the duration of the block, then put the old values back (unknown ones skipped)."""
    old: dict[str, Any] = {}
    try:
        for name, value in values.items():
            try:
                before = getattr(owner, name)
                setattr(owner, name, value)
            except (AttributeError, TypeError, ValueError):
                continue
            old[name] = before
        yield
    finally:
        for name, value in reversed(list(old.items())):
            try:
                setattr(owner, name, value)
            except (AttributeError, TypeError, ValueError):
                pass


def _png_settings(scene: Any) -> Any:
    return _temporarily(scene.render.image_settings, file_format="PNG", color_mode="RGBA", color_depth="8")


def check_not_empty(path: str, what: str) -> None:
    """Refuse a PNG with no pixels, or with every pixel fully transparent (nothing to reconstruct)."""
    from array import array  # not numpy: some Linux distributions' Blender builds come without it

    image = bpy.data.images.load(path, check_existing=False)
    try:
        size: Any = image.size
        width, height, channels = int(size[0]), int(size[1]), int(image.channels)
        if width <= 0 or height <= 0:
            raise invalid_input(f"{what} has no pixels.", "Choose an image that has content.")
        pixels = array("f", bytes(4 * width * height * channels))
        image.pixels.foreach_get(pixels)
        opaque = channels < 4 or any(pixels[3::channels])
    finally:
        bpy.data.images.remove(image)
    if not opaque:
        raise invalid_input(
            f"{what} is empty: every pixel is transparent.",
            "Put the object in front of the camera (or choose an image with content) and try again.",
        )


def _finish(path: Path, name: str, original: str) -> Any:
    """The checked capture as an ImageInput (re-encoded smaller when over the upload limit)."""
    try:
        check_not_empty(str(path), original)
        prepared = prepare_local_image(str(path))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if prepared != str(path):
        path.unlink(missing_ok=True)  # a smaller copy was written: that one is sent
    return ImageInput(prepared, _clean(name), original, False)


def _clean(name: str) -> str:
    return "".join(ch for ch in name if ch.isprintable()).strip()[:63] or "image"


def capture_image(image: Any, scene: Any = None) -> Any:
    """An image datablock -> ImageInput of a temporary PNG, with alpha, colour-managed as the user sees it.

    Render Result, Viewer Node and images shown "as render" get the scene's view transform (as in the render
    window); other images are written as they are (Standard view), like the Image Editor shows them.
    """
    if not isinstance(image, bpy.types.Image):
        raise invalid_input(f"Not an image datablock: {type(image).__name__}.", "Pass an entry of bpy.data.images.")
    scene = scene or bpy.context.scene
    label = f"The image {image.name!r}"
    as_render = image.type in ("RENDER_RESULT", "COMPOSITING") or bool(getattr(image, "use_view_as_render", False))
    if image.type == "IMAGE" and image.source in ("FILE", "SEQUENCE", "MOVIE") and not image.packed_file:
        if image.filepath and not os.path.isfile(bpy.path.abspath(image.filepath, library=image.library)):
            raise invalid_input(f"{label} has no pixels: its file {image.filepath} is missing.", "Reload the image.")
    size: Any = image.size
    if image.type == "IMAGE" and (int(size[0]), int(size[1])) == (0, 0):
        raise invalid_input(f"{label} has no pixels.", "Choose an image that has content.")
    path = capture_path()
    standard = {} if as_render else {"view_transform": "Standard", "look": "None", "exposure": 0.0, "gamma": 1.0}
    try:
        with _png_settings(scene), _temporarily(scene.view_settings, **standard):
            image.save_render(str(path), scene=scene)
    except RuntimeError as exc:
        path.unlink(missing_ok=True)
        if image.type == "RENDER_RESULT":
            raise invalid_input(f"{label} is empty: nothing has been rendered yet.", "Render first (F12).") from None
        raise invalid_input(f"{label} could not be written as PNG: {exc}.", "Choose another image.") from None
    if not path.is_file():
        raise invalid_input(f"{label} has no pixels.", "Choose an image that has content.")
    return _finish(path, Path(image.name).stem or image.name, f"image:{image.name}")


def find_image(name: str) -> Any:
    """bpy.data.images[name], or invalid_input naming the images there are."""
    image = bpy.data.images.get(name) if name else None
    if image is None:
        names = ", ".join(sorted(i.name for i in bpy.data.images)[:8]) or "none"
        raise invalid_input(f"No image named {name!r} in this file.", f"Images in this file: {names}.")
    return image


def find_camera(name: str, scene: Any = None) -> Any:
    """A camera object by name ("" = the scene's active camera), or invalid_input."""
    scene = scene or bpy.context.scene
    camera = bpy.data.objects.get(name) if name else scene.camera
    if camera is None:
        if name:
            raise invalid_input(f"No object named {name!r}.", "Give the name of a camera object.")
        raise invalid_input(
            "The scene has no active camera.", "Add a camera and make it active (Ctrl+Numpad 0), or choose a file."
        )
    if camera.type != "CAMERA":
        raise invalid_input(f"{camera.name!r} is not a camera.", "Give the name of a camera object.")
    return camera


def render_camera(camera: Any = None, scene: Any = None, *, engine: str = CAMERA_ENGINE) -> Any:
    """Render the camera (default: the scene's active one) with a transparent background -> ImageInput.

    The scene's own settings are put back afterwards; an empty render is refused with invalid_input.
    """
    scene = scene or bpy.context.scene
    camera = camera if camera is not None else find_camera("", scene)
    path = capture_path()
    render = scene.render
    try:
        with (
            _temporarily(scene, camera=camera),
            _temporarily(render, engine=engine, film_transparent=True, filepath=str(path), use_file_extension=True),
            _png_settings(scene),
        ):
            result = bpy.ops.render.render(write_still=True, scene=scene.name)
    except RuntimeError as exc:
        path.unlink(missing_ok=True)
        raise invalid_input(
            f"Rendering the camera {camera.name!r} failed: {exc}.", "Check that the scene renders."
        ) from None
    if result != {"FINISHED"} or not path.is_file():
        path.unlink(missing_ok=True)
        raise invalid_input(f"Rendering the camera {camera.name!r} wrote no image.", "Check the scene renders.")
    return _finish(path, camera.name, f"camera:{camera.name}")


def capture_viewport(context: Any = None) -> Any:
    """The active 3D Viewport as drawn (viewport render with a transparent background) -> ImageInput."""
    reason = unavailable("VIEWPORT", context)
    if reason:
        raise invalid_input(f"Viewport: {reason}", "Choose another source.")
    found = _area("VIEW_3D")
    assert found is not None
    window, area = found
    scene: Any = (context or bpy.context).scene
    region = next((r for r in area.regions if r.type == "WINDOW"), None)
    with (
        bpy.context.temp_override(window=window, area=area, region=region),
        _temporarily(scene.render, film_transparent=True),
    ):
        bpy.ops.render.opengl(write_still=False, view_context=True)
    result = bpy.data.images.get("Render Result")
    if result is None:
        raise invalid_input("The viewport capture produced no image.", "Choose another source.")
    return _rename(capture_image(result, scene), "viewport", "viewport")


def paste_clipboard(context: Any = None) -> Any:
    """The clipboard's image (pasted into an Image Editor, captured, the pasted datablock removed) -> ImageInput."""
    reason = unavailable("CLIPBOARD", context)
    if reason:
        raise invalid_input(f"Clipboard: {reason}", "Choose another source.")
    found = _area("IMAGE_EDITOR")
    assert found is not None
    window, area = found
    before = set(bpy.data.images)
    with bpy.context.temp_override(window=window, area=area):
        result = bpy.ops.image.clipboard_paste()
    pasted = [image for image in bpy.data.images if image not in before]
    if result != {"FINISHED"} or not pasted:
        raise invalid_input("The clipboard holds no image.", "Copy an image first, then try again.")
    try:
        captured = capture_image(pasted[0], (context or bpy.context).scene)
    finally:
        for image in pasted:
            bpy.data.images.remove(image)
    return _rename(captured, "clipboard", "clipboard")


def _rename(captured: Any, name: str, original: str) -> Any:
    captured.name, captured.original = name, original
    return captured


def text_input(prompt: str) -> Any:
    """A text job's input: no image (the runner names the job from the prompt)."""
    return ImageInput("", None, f"text:{' '.join(str(prompt or '').split())[:200]}", False)


def render_cameras(cameras: Sequence[Any], scene: Any = None) -> list[Any]:
    """Render each camera (2-4 views of one object, front first); the captures made are removed on failure."""
    done: list[Any] = []
    try:
        for camera in cameras:
            done.append(render_camera(camera, scene))
    except ModelsLabError:
        drop_captures([item.source for item in done])
        raise
    return done


# --- from what the caller gave (paths, URLs, datablocks, a source name) to the job's images ----------------------
def drop_prepared_upload(record: "JobRecord") -> None:
    """Remove a re-encoded or captured upload copy once its job is done (only files this add-on wrote under
    uploads/: the source's copy and the captured extra views listed in extra["captures"])."""
    source = record.source
    if source and source != record.extra.get("original_source") and not is_url(source):
        path = Path(source)
        if path.parent == uploads_dir():
            path.unlink(missing_ok=True)
    captures = record.extra.get("captures")
    if isinstance(captures, list):
        drop_captures(captures)


def resolve_source(item: Any) -> ImageInput:
    """One image argument: a path or URL (resolve_image), or an image datablock (captured as a temporary PNG)."""
    if isinstance(item, ImageInput):
        return item
    if isinstance(item, bpy.types.Image):
        return capture_image(item)
    if isinstance(item, str):
        return resolve_image(item)
    raise invalid_input(
        f"An image must be a path, a URL or an entry of bpy.data.images, got {type(item).__name__}.",
        "Pass a file path, an http(s) URL or bpy.data.images[name].",
    )


def resolve_views(items: Any) -> tuple[ImageInput, list[str], list[str]]:
    """One image, or a list of 2-4 views of one object (front first, then right side, back, left side).

    Returns (the front, the other views as local paths or URLs for params.extra_views, the temporary captures
    made, which the importer removes). Captures already made are removed when a later view is refused.
    """
    views = list(items) if isinstance(items, list | tuple) else [items]
    low, high = VIEW_COUNT_RANGE
    if len(views) > 1 and not low <= len(views) <= high:
        raise invalid_input(
            f"Several views means {low} to {high} images (front first), got {len(views)}.",
            "Give the front and 1 to 3 more views: right side, back, left side.",
        )
    if not views:
        raise invalid_input("No image was chosen.", "Choose an image file or enter an image URL.")
    resolved: list[ImageInput] = []
    try:
        for item in views:
            resolved.append(resolve_source(item))
    except BaseException:
        drop_captures([view.source for view in resolved])
        raise
    captures = [view.source for view in resolved if view.original.startswith(CAPTURED_PREFIXES)]
    return resolved[0], [view.source for view in resolved[1:]], captures


CAPTURED_PREFIXES = ("image:", "camera:", "viewport", "clipboard")


def resolve_choice(
    source: str = "",
    *,
    image: str = "",
    image_name: str = "",
    cameras: Sequence[str] = (),
    extra_views: Sequence[Any] = (),
    context: Any = None,
) -> tuple[ImageInput, list[str], list[str]]:
    """The image(s) of one image job from a source (FILE, URL, IMAGE, CAMERA, VIEWPORT, CLIPBOARD; "" = the
    scene's choice), with the scene's settings for what is not given; returns resolve_views()'s triple.

    CAMERA renders the named cameras (2-4 of them make several views, front first) or the active one.
    """
    context = context or bpy.context
    settings = getattr(context.scene, "modelslab", None)
    chosen = (source or (settings.image_source if settings is not None else "") or "FILE").strip().upper()
    if chosen not in SOURCES or chosen == "TEXT":
        images = ", ".join(s for s in SOURCES if s != "TEXT")
        raise invalid_input(f"source must be one of {images}, got {source!r}.", "Use text_to_3d for a prompt.")
    reason = unavailable(chosen, context)
    if reason:
        raise invalid_input(f"{chosen.title()}: {reason}", "Choose another source.")
    items: list[Any]
    if chosen in ("FILE", "URL"):
        if not image and settings is not None:
            image = settings.image_url if chosen == "URL" else settings.image_path
        items = [image]
    elif chosen == "IMAGE":
        items = [find_image(image_name or (settings.image_name if settings is not None else ""))]
    elif chosen == "CAMERA":
        names = [name.strip() for name in cameras if name.strip()]
        if not names and settings is not None and settings.camera_name.strip():
            names = [settings.camera_name.strip()]
        found = [find_camera(name, context.scene) for name in names] or [find_camera("", context.scene)]
        low, high = VIEW_COUNT_RANGE
        if len(found) > 1 and not low <= len(found) + len(extra_views) <= high:
            raise invalid_input(f"Several views means {low} to {high} cameras (front first), got {len(found)}.")
        items = list(render_cameras(found, context.scene))
        try:
            return resolve_views([*items, *extra_views])
        except BaseException:
            drop_captures([item.source for item in items])
            raise
    elif chosen == "VIEWPORT":
        items = [capture_viewport(context)]
    else:
        items = [paste_clipboard(context)]
    return resolve_views([*items, *extra_views])
