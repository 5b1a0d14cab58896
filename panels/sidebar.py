"""The sidebar tab: image source with thumbnail, parameters, Generate (or why not), and the job list.

Laid out for the default sidebar width: a job's row is its state icon and its name (plus a short time left
while it runs); everything else about the selected job is in the box below the list, one item per line.
"""

import os
import time
from typing import Any

import bpy

from ..api import ModelsLabError
from ..blender import compat, image_check, session, ui_text
from ..blender.props import SESSION_EPOCH, field_labels
from . import sources as sources_ui
from .previews import preview_icon

CATEGORY = "ModelsLab"
RUNNING_STATES = {"queued", "uploading", "submitting", "submitted", "processing", "downloading"}
STATE_ICONS: dict[str, Any] = {
    "queued": "TIME",
    "uploading": "EXPORT",
    "submitting": "EXPORT",
    "submitted": "SORTTIME",
    "processing": "SORTTIME",
    "downloading": "IMPORT",
    "downloaded": "FILE_TICK",
    "imported": "CHECKMARK",
    "timed_out": "TIME",
    "failed": "ERROR",
    "cancelled": "CANCEL",
}
OWNER_ICONS: dict[str, Any] = {"other": "WINDOW", "recovered": "RECOVER_LAST"}
STATE_WORDS = {
    "queued": "Waiting to start",
    "uploading": "Uploading",
    "submitting": "Submitting",
    "submitted": "Processing on the server",
    "processing": "Processing on the server",
    "downloading": "Downloading",
    "downloaded": "Downloaded, not imported yet",
    "imported": "Imported",
    "timed_out": "Still processing on the server",
    "failed": "Failed",
    "cancelled": "Cancelled",
}
OTHER_BLENDER = "Running in another Blender"
RECOVERED = "Recovered from a closed session"


def scene_settings(context: bpy.types.Context) -> Any:
    """The scene's ModelsLab settings (scene.modelslab)."""
    return getattr(context.scene, "modelslab", None)


def people_error(message: str, fix: str) -> tuple[str, str]:
    """A categorised error's message and fix as the sidebar says them (labels, not API field names)."""
    return ui_text.people_error(message, fix, field_labels())


def image_verdict(context: bpy.types.Context) -> image_check.ImageCheck | None:
    """What the image path's file is like (None when the image is a URL or no path is set yet)."""
    settings = scene_settings(context)
    if settings is None or settings.image_source == "URL" or not settings.image_path.strip():
        return None
    if settings.image_path.startswith("//") and not bpy.data.filepath:
        return None
    return image_check.check_image_path(os.path.normpath(bpy.path.abspath(settings.image_path)))


def generate_blocker(context: bpy.types.Context) -> tuple[str, str, str] | None:
    """Why Generate cannot run now, what to do, and the icon to show: (reason, fix, icon), or None.
    Something missing is an INFO; an image file that cannot be used is an ERROR."""
    current = session.settings()
    if not current.api_key:
        fix = "Enter it in Preferences > Add-ons > ModelsLab (or set MODELSLAB_API_KEY)."
        return "No API key is set.", fix, "INFO"
    try:
        compat.check_online_access(current.base_url)
    except ModelsLabError:
        return "Online access is off.", "Allow it in Preferences > System > Network.", "INFO"
    settings = scene_settings(context)
    if settings.image_source not in sources_ui.FILE_SOURCES:
        return sources_ui.source_blocker(context, settings)
    if settings.image_source == "URL":
        if not settings.image_url.strip():
            return "No image URL yet.", "Enter an image URL above.", "INFO"
        return None
    if not settings.image_path.strip():
        return "No image chosen yet.", "Choose an image file above.", "INFO"
    if settings.image_path.startswith("//") and not bpy.data.filepath:
        fix = "Save the .blend first, or use an absolute path."
        return "The image path is relative to the .blend file.", fix, "INFO"
    verdict = image_verdict(context)
    if verdict is not None and not verdict.ok:
        return verdict.problem, verdict.fix, "ERROR"
    return None


def _wrap_width(context: bpy.types.Context | None) -> int:
    """About how many characters fit on one line of the sidebar as wide as it is now."""
    region = getattr(context, "region", None)
    if region is None or not region.width:
        return 40
    scale = getattr(getattr(context, "preferences", None), "system", None)
    pixels = region.width / max(0.5, getattr(scale, "ui_scale", 1.0) or 1.0)
    return max(16, int(pixels / 7.0) - 6)


def _wrapped(layout: Any, text: str, width: int = 40, icon: str = "NONE") -> None:
    """Text over as many labels as it needs; continuation lines line up with the first line's text."""
    follow = "BLANK1" if icon != "NONE" else "NONE"
    for index, line in enumerate(ui_text.wrap(text, width)):
        layout.label(text=line, icon=icon if index == 0 else follow)


def _now() -> float:
    return time.time() - SESSION_EPOCH


def running_view(item: Any) -> tuple[float, str]:
    """(bar fraction, text) for a running row at this moment: time left counting down from the eta."""
    return ui_text.progress_view(_now(), item.state, item.progress, item.submitted, item.due, item.created)


def draw_bar(layout: Any, item: Any, fraction: float, text: str) -> None:
    """A progress bar: layout.progress (4.0+); before that the text, and the row's bar property (percent, moved
    by the rows' refresh) as a read-only slider."""
    if getattr(layout, "progress", None) is not None:
        compat.draw_progress(layout, fraction, text)
        return
    col = layout.column(align=True)
    col.label(text=text)
    sub = col.row()
    sub.enabled = False
    sub.prop(item, "bar", text="", slider=True)


def is_running(item: Any) -> bool:
    return item.state in RUNNING_STATES


def is_stalled(item: Any) -> bool:
    """A job listed as running that this Blender does not work on (left over, e.g. resume was refused)."""
    return is_running(item) and item.owner != "other" and item.local_id not in session.state.active


def row_icon(item: Any) -> str:
    if item.owner in OWNER_ICONS:
        return OWNER_ICONS[item.owner]
    if item.state == "imported" and item.object_name and item.object_name not in bpy.data.objects:
        return "UNLINKED"
    return STATE_ICONS.get(item.state, "DOT")


class MODELSLAB_UL_jobs(bpy.types.UIList):
    """One row per job: state icon and name; while it runs, its time left and a Cancel button."""

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
        row = layout.row(align=True)
        row.label(text=item.name, icon=row_icon(item))
        if not is_running(item) or item.owner == "other":
            return
        # The time left and Cancel, right-aligned at their own width: the name keeps the rest of the row.
        right = row.row(align=True)
        right.alignment = "RIGHT"
        right.ui_units_x = 4.5 if hasattr(right, "progress") else 3.0
        fraction, _text = running_view(item)
        note = ui_text.short_progress(_now(), item.state, item.submitted, item.due)
        progress = getattr(right, "progress", None)
        if progress is not None:  # a small ring with the time left (4.0+)
            progress(factor=max(0.0, min(1.0, fraction)), type="RING", text=note)
        elif note:
            right.label(text=note)
        right.operator("modelslab.cancel_job", text="", icon="X", emboss=False).job_id = item.local_id


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
        width = _wrap_width(context)
        sources_ui.draw_selector(layout, settings)
        if settings.image_source not in sources_ui.FILE_SOURCES:
            sources_ui.draw_source(layout, settings, context)
        elif settings.image_source == "URL":
            layout.prop(settings, "image_url", text="")
        else:
            layout.prop(settings, "image_path", text="")
            verdict = image_verdict(context)
            if verdict is not None and verdict.picture:
                icon_id = preview_icon(os.path.normpath(bpy.path.abspath(settings.image_path)))
                if icon_id:
                    layout.template_icon(icon_value=icon_id, scale=6.0)
            if verdict is not None and verdict.note:
                _wrapped(layout.column(align=True), verdict.note, width, icon="INFO")

        col = layout.column(align=True)
        col.prop(settings, "output_format")
        if settings.image_source != "TEXT":
            col.prop(settings, "resolution")
        col.prop(settings, "remove_bg")
        sub = col.row()
        sub.active = not settings.remove_bg
        sub.prop(settings, "foreground_ratio")

        blocker = generate_blocker(context)
        row = layout.row()
        row.scale_y = 1.5
        row.enabled = blocker is None
        row.operator(sources_ui.generate_operator(settings), text="Generate", icon="MESH_MONKEY")
        if blocker:
            reason, fix, icon = blocker
            col = layout.column(align=True)
            _wrapped(col, reason, width, icon=icon)
            _wrapped(col, fix, width, icon="BLANK1")


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
        sources_ui.draw_revision(layout, settings)


def money_line() -> str:
    """The session's charged jobs and the balance, when the session counts them."""
    money = getattr(session, "money", None)
    if money is None:
        return ""
    try:
        data = money()
    except Exception:  # the list must draw whatever the count hits
        return ""
    balance = data.get("balance") or {}
    return ui_text.money_text(int(data.get("charged_jobs") or 0), balance.get("balance"), balance.get("currency") or "")


class MODELSLAB_PT_jobs(_SidebarPanel):
    """The session's jobs and what can be done with each."""

    bl_idname = "MODELSLAB_PT_jobs"
    bl_label = "Jobs"

    def draw(self, context: bpy.types.Context) -> None:
        layout: Any = self.layout
        wm: Any = context.window_manager
        rows = wm.modelslab_jobs
        width = _wrap_width(context)
        if not len(rows):
            layout.label(text="Finished jobs cleared" if session.state.hidden else "No jobs yet", icon="INFO")
        else:
            layout.template_list(
                "MODELSLAB_UL_jobs", "", wm, "modelslab_jobs", wm, "modelslab_jobs_index", rows=3, maxrows=8
            )
            index = wm.modelslab_jobs_index
            if 0 <= index < len(rows):
                self._draw_details(layout, rows[index], width)
        col = layout.column(align=True)
        sources_ui.draw_adopt(col)
        if any(row.state in ("imported", "failed", "cancelled") for row in rows):
            col.operator("modelslab.clear_finished_jobs", icon="TRASH")
        if any(row.state == "timed_out" or is_stalled(row) for row in rows):
            col.operator("modelslab.resume_jobs", text="Resume Waiting", icon="FILE_REFRESH")
        line = money_line()
        if line:
            _wrapped(layout.column(align=True), line, width, icon="FUND")

    @staticmethod
    def _draw_details(layout: Any, item: Any, width: int) -> None:
        box = layout.box()
        state = item.state
        col = box.column(align=True)
        _wrapped(col, item.name, width, icon=row_icon(item))
        if item.owner == "other":
            _wrapped(col, f"{OTHER_BLENDER}: {STATE_WORDS.get(state, state).lower()}", width)
            return
        if item.owner == "recovered":
            _wrapped(col, RECOVERED, width)
        if is_running(item):
            fraction, text = running_view(item)
            draw_bar(box, item, fraction, text)
            box.label(text=ui_text.timing_line(_now(), item.submitted, item.due, item.created))
            if item.message and state not in ("submitted", "processing"):
                _wrapped(box.column(align=True), item.message, width)
        else:
            col.label(text=STATE_WORDS.get(state, state))
            if item.took:
                col.label(text=f"Took {ui_text.duration(item.took)}")
        missing = state == "imported" and item.object_name and item.object_name not in bpy.data.objects
        if state == "imported":
            shown = "Not in this file (imported elsewhere, or removed)" if missing else f"Object: {item.object_name}"
            _wrapped(box.column(align=True), shown, width)
        if state == "failed" or (state == "cancelled" and item.category and item.message):
            message, fix = people_error(item.message, item.fix)
            col = box.column(align=True)
            _wrapped(col, message, width, icon="ERROR")
            if fix:
                col.separator()
                _wrapped(col, fix, width, icon="HELP")
        elif state == "cancelled" and item.message:
            _wrapped(box.column(align=True), item.message, width)
        if state == "timed_out":
            _wrapped(box.column(align=True), "Resume Waiting keeps polling; the job is not sent again.", width)
        actions = box.column(align=True)
        if is_running(item):
            actions.operator("modelslab.cancel_job", text="Cancel", icon="X").job_id = item.local_id
        if item.file_path or state in ("downloaded", "imported"):
            label = "Import" if state == "downloaded" or missing else "Re-import"
            actions.operator("modelslab.reimport_job", text=label, icon="IMPORT").job_id = item.local_id
        actions.operator("modelslab.open_job_folder", text="Open Folder", icon="FILE_FOLDER").job_id = item.local_id
        sources_ui.draw_job_actions(actions, item)
        if item.result_url:
            actions.operator("modelslab.copy_result_url", text="Copy URL", icon="COPYDOWN").job_id = item.local_id
        if is_running(item) and item.was_submitted:
            _wrapped(box.column(align=True), "Cancel stops waiting; the server may still charge for this job.", width)
