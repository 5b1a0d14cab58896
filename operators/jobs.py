"""Per-job operators: cancel, re-import, open folder, copy URL; clear finished; resume unfinished; and the
status-bar notice a finished background job gives."""

# mypy: disable-error-code="valid-type"
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import bpy
from bpy.props import EnumProperty, StringProperty

from ..api import ModelsLabError
from ..api.records import may_have_been_charged
from ..blender import batch, commands, importer, results, rows, session, ui_text

if TYPE_CHECKING:
    from bpy.stub_internal.rna_enums import OperatorReturnItems

CANCEL_NOTE = "The server may still charge for a job it had already accepted."


def report_error(operator: bpy.types.Operator, error: ModelsLabError) -> None:
    """Report an error as people read it: the sentence, a separator, the fix in the sidebar's words; the
    category last, in brackets, for scripts and logs."""
    from ..panels.sidebar import people_error

    message, fix = people_error(error.message, error.fix)
    text = f"{message} \u2014 {fix}" if fix else message
    operator.report({"ERROR"}, f"{text} [{error.category.value}]")


def open_folder(folder: str) -> bool:
    """Ask the system's file browser to show folder; False when there is none to ask (or it refused)."""
    try:
        if sys.platform.startswith("win"):
            os.startfile(folder)  # type: ignore[attr-defined]
            return True
        opener = "open" if sys.platform == "darwin" else shutil.which("xdg-open")
        if not opener:
            return False
        subprocess.Popen([opener, folder], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return True
    except OSError:
        return False


class MODELSLAB_OT_notify(bpy.types.Operator):
    """Show a job's outcome in the status bar and the Info log, as Blender's own background jobs do"""

    bl_idname = "modelslab.notify"
    bl_label = "ModelsLab Notice"
    bl_options = {"INTERNAL"}

    text: StringProperty(options={"SKIP_SAVE"})
    level: EnumProperty(items=[("INFO", "Info", ""), ("WARNING", "Warning", "")], options={"SKIP_SAVE"})

    # Reports of an operator called from Python stay with the caller; those of a modal operator that finishes
    # go to the window manager (status bar banner, Info log). So: report on the first timer tick.
    def invoke(self, context: bpy.types.Context, event: Any) -> "set[OperatorReturnItems]":
        wm: Any = context.window_manager
        if context.window is None:
            return self.execute(context)
        self._timer = wm.event_timer_add(0.01, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: Any) -> "set[OperatorReturnItems]":
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        wm: Any = context.window_manager
        wm.event_timer_remove(self._timer)
        return self.execute(context)

    def execute(self, context: bpy.types.Context) -> "set[OperatorReturnItems]":
        self.report({self.level}, self.text)
        return {"FINISHED"}


def _record_or_report(operator: bpy.types.Operator, job_id: str):  # -> JobRecord | None
    record = session.get_record(job_id) if job_id else None
    if record is None:
        operator.report({"ERROR"}, f"No ModelsLab job with id {job_id!r}.")
    return record


class MODELSLAB_OT_cancel_job(bpy.types.Operator):
    """Stop waiting for this job. The server may still charge for a job it had already accepted"""

    bl_idname = "modelslab.cancel_job"
    bl_label = "Cancel Job"
    bl_options = {"REGISTER", "INTERNAL"}

    job_id: StringProperty(name="Job ID", options={"SKIP_SAVE"})

    def execute(self, context: bpy.types.Context) -> "set[OperatorReturnItems]":
        if _record_or_report(self, self.job_id) is None:
            return {"CANCELLED"}
        try:
            record = commands.cancel(self.job_id)
        except ModelsLabError as error:
            report_error(self, error)
            return {"CANCELLED"}
        note = record.message or CANCEL_NOTE
        self.report({"WARNING"} if may_have_been_charged(record) else {"INFO"}, f"{record.name}: {note}")
        return {"FINISHED"}


class MODELSLAB_OT_reimport_job(bpy.types.Operator):
    """Import this job's downloaded mesh (again) from the local cache; no new request, no new charge"""

    bl_idname = "modelslab.reimport_job"
    bl_label = "Re-import"
    bl_options = {"REGISTER", "INTERNAL"}

    job_id: StringProperty(name="Job ID", options={"SKIP_SAVE"})

    def execute(self, context: bpy.types.Context) -> "set[OperatorReturnItems]":
        record = _record_or_report(self, self.job_id)
        if record is None:
            return {"CANCELLED"}
        try:
            if not (record.file_path and os.path.isfile(record.file_path)) and record.remote_id:
                commands.resume_job(self.job_id)
                self.report({"INFO"}, f"{record.name}: the cached mesh is gone; downloading it again")
                return {"FINISHED"}
            obj = importer.import_job(self.job_id, context, again=True)
        except ModelsLabError as error:
            report_error(self, error)
            return {"CANCELLED"}
        self.report({"INFO"}, f"Imported {obj.name}")
        return {"FINISHED"}


class MODELSLAB_OT_open_job_folder(bpy.types.Operator):
    """Open the folder holding this job's mesh (or the mesh cache)"""

    bl_idname = "modelslab.open_job_folder"
    bl_label = "Open Folder"
    bl_options = {"REGISTER", "INTERNAL"}

    job_id: StringProperty(name="Job ID", options={"SKIP_SAVE"})

    def execute(self, context: bpy.types.Context) -> "set[OperatorReturnItems]":
        record = session.get_record(self.job_id) if self.job_id else None
        folder = os.path.dirname(record.file_path) if record is not None and record.file_path else ""
        if not folder or not os.path.isdir(folder):
            folder = str(session.cache_dir())
            os.makedirs(folder, exist_ok=True)
        if bpy.app.background:
            self.report({"INFO"}, f"Folder: {folder}")
            return {"FINISHED"}
        if not open_folder(folder):
            # The path stays in the status bar and the Info log (Ctrl+C there copies it).
            self.report({"WARNING"}, f"No file browser could be opened; the folder is {folder}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Opened {folder}")
        return {"FINISHED"}


class MODELSLAB_OT_copy_result_url(bpy.types.Operator):
    """Copy the job's result URL to the clipboard (outputs are deleted from the server after 24 hours)"""

    bl_idname = "modelslab.copy_result_url"
    bl_label = "Copy Result URL"
    bl_options = {"REGISTER", "INTERNAL"}

    job_id: StringProperty(name="Job ID", options={"SKIP_SAVE"})

    def execute(self, context: bpy.types.Context) -> "set[OperatorReturnItems]":
        record = _record_or_report(self, self.job_id)
        if record is None:
            return {"CANCELLED"}
        urls = list(record.output_urls or []) + list(record.proxy_links or []) + list(record.future_links or [])
        if not urls:
            self.report({"ERROR"}, f"{record.name} has no result URL yet.")
            return {"CANCELLED"}
        wm: Any = context.window_manager
        wm.clipboard = urls[0]
        self.report({"INFO"}, f"Copied {urls[0]}")
        return {"FINISHED"}


class MODELSLAB_OT_clear_finished_jobs(bpy.types.Operator):
    """Remove imported, failed and cancelled jobs from the list (cached meshes are kept)"""

    bl_idname = "modelslab.clear_finished_jobs"
    bl_label = "Clear Finished"
    bl_options = {"REGISTER"}

    def execute(self, context: bpy.types.Context) -> "set[OperatorReturnItems]":
        count = rows.forget_finished()
        self.report({"INFO"}, ui_text.cleared_text(count))
        return {"FINISHED"}


def _timed_out_rows() -> list:
    """Resume the listed jobs that stopped waiting (timed out); returns their records."""
    resumed = []
    listed = rows.job_rows()
    for row in list(listed) if listed is not None else []:
        if row.state == "timed_out":
            resumed.append(commands.resume_job(row.local_id))
    return resumed


class MODELSLAB_OT_resume_jobs(bpy.types.Operator):
    """Resume unfinished jobs from earlier sessions (poll and download again; never submitted twice)"""

    bl_idname = "modelslab.resume_jobs"
    bl_label = "Resume Unfinished Jobs"
    bl_options = {"REGISTER"}

    def execute(self, context: bpy.types.Context) -> "set[OperatorReturnItems]":
        try:
            if not bpy.app.background:
                records = [r for r in commands.resume_unfinished() if not r.is_settled]
                records += [r for r in _timed_out_rows() if r.local_id not in {x.local_id for x in records}]
                self.report({"INFO"}, ui_text.resume_text(len(records)))
                return {"FINISHED"}
            finished = batch.resume_journal(on_event=results.print_progress)
        except ModelsLabError as error:
            report_error(self, error)
            return {"CANCELLED"}
        imported = sum(1 for r in finished if r.get("status") == "imported")
        failed = [r for r in finished if r.get("status") != "imported"]
        for row in failed:
            details = row.get("error") or {}
            print(f"ModelsLab: {row.get('image')}: {row.get('status')} {details.get('message', '')}", flush=True)
        self.report({"WARNING"} if failed else {"INFO"}, f"Resumed {len(finished)} job(s), imported {imported}")
        return {"FINISHED"}
