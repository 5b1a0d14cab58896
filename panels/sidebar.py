"""The sidebar tab: image source with thumbnail, parameters, Generate (or why not), and the job list."""

import textwrap
import time
from typing import Any

import bpy

from ..api import ModelsLabError
from ..blender import compat, session
from ..blender.props import SESSION_EPOCH
from .previews import preview_icon

CATEGORY = "ModelsLab"
RUNNING_STATES = {"queued", "uploading", "submitting", "submitted", "processing", "downloading"}
STATE_ICONS: dict[str, Any] = {
    "queued": "TIME",
    "uploading": "EXPORT",
    "submitting": "EXPORT",
    "submitted": "TIME",
    "processing": "SORTTIME",
    "downloading": "IMPORT",
    "downloaded": "FILE_TICK",
    "imported": "CHECKMARK",
    "timed_out": "TIME",
    "failed": "ERROR",
    "cancelled": "CANCEL",
}
STATE_LABELS = {"timed_out": "still on server"}


def scene_settings(context: bpy.types.Context) -> Any:
    """The scene's ModelsLab settings (scene.modelslab)."""
    return getattr(context.scene, "modelslab", None)


def generate_blocker(context: bpy.types.Context) -> str | None:
    """Why Generate cannot run now (no key, no image, online access off), or None."""
    current = session.settings()
    if not current.api_key:
        return "Set your API key in Preferences > Add-ons > ModelsLab (or MODELSLAB_API_KEY)"
    try:
        compat.check_online_access(current.base_url)
    except ModelsLabError:
        return "Online access is off: allow it in Preferences > System > Network"
    settings = scene_settings(context)
    if settings.image_source == "URL":
        if not settings.image_url.strip():
            return "Enter an image URL"
    elif not settings.image_path.strip():
        return "Choose an image file"
    elif settings.image_path.startswith("//") and not bpy.data.filepath:
        return "Save the .blend first (the image path is relative to it)"
    return None


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def _elapsed(item: Any) -> str:
    end = item.finished if item.finished else time.time() - SESSION_EPOCH
    return _duration(end - item.created)


def _wrap_width(context: bpy.types.Context | None) -> int:
    """About how many characters fit on one line of the sidebar as wide as it is now."""
    region = getattr(context, "region", None)
    if region is None or not region.width:
        return 40
    scale = getattr(getattr(context, "preferences", None), "system", None)
    pixels = region.width / max(0.5, getattr(scale, "ui_scale", 1.0) or 1.0)
    return max(16, int(pixels / 7.0) - 6)


def _wrapped(layout: Any, text: str, width: int = 40, icon: str = "NONE") -> None:
    for index, line in enumerate(textwrap.wrap(text, width) or [""]):
        layout.label(text=line, icon=icon if index == 0 else "BLANK1")


class MODELSLAB_UL_jobs(bpy.types.UIList):
    """One row per job: name, state/progress, elapsed, a quick action."""

    bl_idname = "MODELSLAB_UL_jobs"

    def draw_item(
        self,
        context: bpy.types.Context | None,
        layout: Any,
        data: Any,
        item: Any,
        icon: int | None,
        active_data: Any,
        active_property: str | None,
        index: int | None = 0,
        flt_flag: int | None = 0,
    ) -> None:
        state = item.state
        split = layout.split(factor=0.4, align=True)
        split.label(text=item.name, icon=STATE_ICONS.get(state, "DOT"))
        row = split.row(align=True)
        if state in RUNNING_STATES:
            label = state if item.eta < 0 else f"{state} ~{_duration(item.eta)}"
            compat.draw_progress(row, item.progress, label)
        else:
            row.label(text=STATE_LABELS.get(state, state))
        row.label(text=_elapsed(item))
        if state in RUNNING_STATES:
            row.operator("modelslab.cancel_job", text="", icon="X", emboss=False).job_id = item.local_id
        elif state in ("downloaded", "imported"):
            row.operator("modelslab.reimport_job", text="", icon="IMPORT", emboss=False).job_id = item.local_id


class _SidebarPanel(bpy.types.Panel):
    """Shared placement: View3D > Sidebar > ModelsLab (this base class itself is never registered)."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY


class MODELSLAB_PT_generate(_SidebarPanel):
    """Image to 3D: image, main parameters, Generate."""

    bl_idname = "MODELSLAB_PT_generate"
    bl_label = "Image to 3D"

    def draw(self, context: bpy.types.Context) -> None:
        layout: Any = self.layout
        settings = scene_settings(context)
        layout.row().prop(settings, "image_source", expand=True)
        if settings.image_source == "URL":
            layout.prop(settings, "image_url", text="")
        else:
            layout.prop(settings, "image_path", text="")
            path = bpy.path.abspath(settings.image_path) if settings.image_path else ""
            icon_id = preview_icon(path)
            if icon_id:
                layout.template_icon(icon_value=icon_id, scale=6.0)

        col = layout.column(align=True)
        col.prop(settings, "output_format")
        col.prop(settings, "resolution")
        col.prop(settings, "remove_bg")
        sub = col.row()
        sub.active = not settings.remove_bg
        sub.prop(settings, "foreground_ratio")

        blocker = generate_blocker(context)
        row = layout.row()
        row.scale_y = 1.5
        row.enabled = blocker is None
        row.operator("modelslab.image_to_3d", text="Generate", icon="MESH_MONKEY")
        if blocker:
            _wrapped(layout.column(align=True), blocker, _wrap_width(context), icon="INFO")


class MODELSLAB_PT_advanced(_SidebarPanel):
    """Less common parameters."""

    bl_idname = "MODELSLAB_PT_advanced"
    bl_label = "Advanced"
    bl_parent_id = "MODELSLAB_PT_generate"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout: Any = self.layout
        settings = scene_settings(context)
        col = layout.column(align=True)
        col.prop(settings, "chunk_size")
        col.prop(settings, "seed")
        layout.prop(settings, "webhook")
        layout.prop(settings, "track_id")


class MODELSLAB_PT_jobs(_SidebarPanel):
    """The session's jobs and what can be done with each."""

    bl_idname = "MODELSLAB_PT_jobs"
    bl_label = "Jobs"

    def draw(self, context: bpy.types.Context) -> None:
        layout: Any = self.layout
        wm: Any = context.window_manager
        rows = wm.modelslab_jobs
        if not len(rows):
            layout.label(text="No jobs yet")
        else:
            layout.template_list(
                "MODELSLAB_UL_jobs", "", wm, "modelslab_jobs", wm, "modelslab_jobs_index", rows=3, maxrows=8
            )
            index = wm.modelslab_jobs_index
            if 0 <= index < len(rows):
                self._draw_details(layout, rows[index], _wrap_width(context))
        row = layout.row(align=True)
        row.operator("modelslab.clear_finished_jobs", icon="TRASH")
        row.operator("modelslab.resume_jobs", text="Resume", icon="FILE_REFRESH")

    @staticmethod
    def _draw_details(layout: Any, item: Any, width: int) -> None:
        box = layout.box()
        state = item.state
        box.label(text=f"{item.name}: {STATE_LABELS.get(state, state)}", icon=STATE_ICONS.get(state, "DOT"))
        if state in RUNNING_STATES:
            compat.draw_progress(box, item.progress, STATE_LABELS.get(state, state))
            timing = f"Elapsed {_elapsed(item)}"
            if item.eta >= 0:
                timing += f", server eta ~{_duration(item.eta)}"
            box.label(text=timing)
        else:
            box.label(text=f"Took {_elapsed(item)}")
        if item.message and state not in ("failed",):
            _wrapped(box.column(align=True), item.message, width)
        if state == "failed":
            col = box.column(align=True)
            _wrapped(col, f"[{item.category}] {item.message}" if item.category else item.message, width, icon="ERROR")
            if item.fix:
                _wrapped(col, item.fix, width, icon="QUESTION")
        if state == "timed_out":
            box.label(text="Still processing on the server: Resume to keep waiting", icon="INFO")
        row = box.row(align=True)
        if state in RUNNING_STATES:
            row.operator("modelslab.cancel_job", icon="X").job_id = item.local_id
        if item.file_path or state in ("downloaded", "imported"):
            label = "Import" if state == "downloaded" else "Re-import"
            row.operator("modelslab.reimport_job", text=label, icon="IMPORT").job_id = item.local_id
        row = box.row(align=True)
        row.operator("modelslab.open_job_folder", icon="FILE_FOLDER").job_id = item.local_id
        if item.result_url:
            row.operator("modelslab.copy_result_url", text="Copy URL", icon="COPYDOWN").job_id = item.local_id
        if state in RUNNING_STATES and item.was_submitted:
            _wrapped(box.column(align=True), "Cancel stops waiting; the server may still charge for this job.", width)
