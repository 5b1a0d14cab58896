"""Per-job operators: cancel, re-import, open folder, copy URL; clear finished; resume unfinished."""

# mypy: disable-error-code="valid-type"
import os
from typing import TYPE_CHECKING, Any

import bpy
from bpy.props import StringProperty

from ..api import ModelsLabError
from ..blender import batch, importer, results, rows, runtime, session
from .generate import report_error

if TYPE_CHECKING:
    from bpy.stub_internal.rna_enums import OperatorReturnItems

CANCEL_NOTE = "The server may still charge for a job it had already accepted."


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
            record = runtime.cancel(self.job_id)
        except ModelsLabError as error:
            report_error(self, error)
            return {"CANCELLED"}
        note = record.message or CANCEL_NOTE
        self.report({"WARNING"} if record.was_submitted else {"INFO"}, f"{record.name}: {note}")
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
                runtime.resume_job(self.job_id)
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
        bpy.ops.wm.path_open(filepath=folder)
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
        self.report({"INFO"}, f"Cleared {count} finished job(s)")
        return {"FINISHED"}


class MODELSLAB_OT_resume_jobs(bpy.types.Operator):
    """Resume unfinished jobs from earlier sessions (poll and download again; never submitted twice)"""

    bl_idname = "modelslab.resume_jobs"
    bl_label = "Resume Unfinished Jobs"
    bl_options = {"REGISTER"}

    def execute(self, context: bpy.types.Context) -> "set[OperatorReturnItems]":
        try:
            if not bpy.app.background:
                records = runtime.resume_unfinished()
                self.report({"INFO"}, f"Resuming {len(records)} job(s)")
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
