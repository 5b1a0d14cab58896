"""Draw helpers of the sidebar for what is not a file or a URL: the source selector and the controls of an image
datablock, a camera, the viewport, the clipboard and a text prompt; why Generate cannot run for them; the newer
revision's fields with their "send" toggles; Recall/Again on a job; importing a remote job."""

from typing import Any

import bpy

from ..api.params import REVISION_FIELDS
from ..blender import sources

FILE_SOURCES = ("FILE", "URL")  # drawn by the sidebar itself (path check, thumbnail)
TEXT_OPTIONAL = ("guidance_scale", "num_inference_steps")


def draw_selector(layout: Any, settings: Any) -> None:
    """The source as a drop-down (seven choices do not fit a row of buttons)."""
    layout.prop(settings, "image_source", text="")


def generate_operator(settings: Any) -> str:
    """The operator the Generate button runs for the chosen source."""
    return "modelslab.text_to_3d" if settings.image_source == "TEXT" else "modelslab.image_to_3d"


def draw_source(layout: Any, settings: Any, context: Any) -> None:
    """The chosen source's controls (sources other than FILE and URL), greyed out with the reason when the
    source cannot be used here."""
    source = settings.image_source
    reason = sources.unavailable(source, context)
    col = layout.column(align=True)
    col.active = not reason
    if source == "IMAGE":
        col.prop_search(settings, "image_name", bpy.data, "images", text="")
    elif source == "CAMERA":
        col.prop_search(settings, "camera_name", context.scene, "objects", text="", icon="CAMERA_DATA")
        if not settings.camera_name and context.scene.camera is not None:
            col.label(text=f"Active camera: {context.scene.camera.name}", icon="INFO")
    elif source == "TEXT":
        col.prop(settings, "prompt", text="")
        col.prop(settings, "negative_prompt", text="Avoid")
    elif source == "VIEWPORT":
        col.label(text="The 3D Viewport as you see it", icon="VIEW3D")
    elif source == "CLIPBOARD":
        col.label(text="The image on the clipboard", icon="PASTEDOWN")
    if reason:
        layout.label(text=reason, icon="INFO")


def source_blocker(context: Any, settings: Any) -> tuple[str, str, str] | None:
    """Why Generate cannot run for the chosen source (sources other than FILE and URL): (reason, fix, icon)."""
    source = settings.image_source
    reason = sources.unavailable(source, context)
    if reason:
        return reason, "Choose another source.", "INFO"
    if source == "IMAGE":
        if not settings.image_name:
            return "No image chosen yet.", "Pick an image of this file above.", "INFO"
        if bpy.data.images.get(settings.image_name) is None:
            return f"There is no image {settings.image_name!r}.", "Pick an image of this file above.", "ERROR"
    if source == "CAMERA" and settings.camera_name:
        camera = context.scene.objects.get(settings.camera_name)
        if camera is None or camera.type != "CAMERA":
            return f"{settings.camera_name!r} is not a camera.", "Pick a camera above.", "ERROR"
    if source == "TEXT" and not settings.prompt.strip():
        return "No prompt yet.", "Describe the object to make above.", "INFO"
    return None


def draw_optional(layout: Any, settings: Any, name: str) -> None:
    """A field sent only when set: its "send" toggle, and its value (greyed while not sent)."""
    row = layout.row(align=True)
    row.prop(settings, f"use_{name}", text="")
    value = row.row(align=True)
    value.active = bool(getattr(settings, f"use_{name}"))
    value.prop(settings, name)


def draw_revision(layout: Any, settings: Any) -> None:
    """The newer revision's fields (image jobs) or the text endpoint's (text jobs), each with its toggle."""
    names = TEXT_OPTIONAL if settings.image_source == "TEXT" else REVISION_FIELDS
    col = layout.column(align=True)
    for name in names:
        draw_optional(col, settings, name)
    if settings.image_source == "TEXT":
        layout.prop(settings, "model_id")


def draw_job_actions(layout: Any, row: Any) -> None:
    """Recall (the job's settings back into the sidebar) and Again (a new seed) for a job of this session."""
    if not row.local_id or row.owner == "other":
        return
    buttons = layout.row(align=True)
    buttons.operator("modelslab.recall_job", text="Recall", icon="RECOVER_LAST").job_id = row.local_id
    buttons.operator("modelslab.again_job", text="Again", icon="FILE_REFRESH").job_id = row.local_id


def draw_adopt(layout: Any) -> None:
    """Import a job started elsewhere by its remote id (asks for the id)."""
    layout.operator("modelslab.import_job", text="Import Remote Job", icon="IMPORT")
