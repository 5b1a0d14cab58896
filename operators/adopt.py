"""Jobs you can recall or adopt: import a remote job by its id, load a job's settings into the sidebar, run a job
again with a new seed."""

# mypy: disable-error-code="valid-type"
from typing import TYPE_CHECKING, Any

import bpy
from bpy.props import StringProperty

from ..api import ModelsLabError
from ..blender import adopt, placement
from .generate import report_error, run_job

if TYPE_CHECKING:
    from bpy.stub_internal.rna_enums import OperatorReturnItems


class MODELSLAB_OT_import_job(bpy.types.Operator):
    """Import a job started elsewhere (the CLI, a web app, a webhook pipeline) by its remote id: it is fetched,
    downloaded and imported. Nothing is submitted, nothing is charged"""

    bl_idname = "modelslab.import_job"
    bl_label = "Import Remote Job"
    bl_options = {"REGISTER"}

    job_id: StringProperty(name="Job ID", description="The job's id as the service reported it", options={"SKIP_SAVE"})
    name: StringProperty(name="Name", description="The object's name (empty: job <id>)", options={"SKIP_SAVE"})

    def invoke(self, context: bpy.types.Context, event: object) -> "set[OperatorReturnItems]":
        if self.job_id.strip():
            return self.execute(context)
        wm: Any = context.window_manager
        return wm.invoke_props_dialog(self)

    def execute(self, context: bpy.types.Context) -> "set[OperatorReturnItems]":
        settings = getattr(context.scene, "modelslab", None)
        try:
            options = placement.collect_import_options({"fit_to_selected": False}, settings, context)
        except ModelsLabError as error:
            report_error(self, error)
            return {"CANCELLED"}
        name = self.name.strip() or None
        return run_job(
            self,
            lambda window: adopt.adopt(
                self.job_id,
                name=name,
                auto_import=None if window else False,
                origin="operator",
                import_options=options,
            ),
        )


class MODELSLAB_OT_recall_job(bpy.types.Operator):
    """Load this job's parameters, source and import options back into the sidebar"""

    bl_idname = "modelslab.recall_job"
    bl_label = "Recall"
    bl_options = {"REGISTER", "UNDO"}

    job_id: StringProperty(name="Job ID", options={"SKIP_SAVE"})

    def execute(self, context: bpy.types.Context) -> "set[OperatorReturnItems]":
        try:
            record = adopt.recall(self.job_id, context.scene)
        except ModelsLabError as error:
            report_error(self, error)
            return {"CANCELLED"}
        self.report({"INFO"}, f"Recalled the settings of {record.name}")
        return {"FINISHED"}


class MODELSLAB_OT_again_job(bpy.types.Operator):
    """Run this job again with a new seed (same source, parameters and import options): a new, charged job"""

    bl_idname = "modelslab.again_job"
    bl_label = "Again"
    bl_options = {"REGISTER"}

    job_id: StringProperty(name="Job ID", options={"SKIP_SAVE"})

    def execute(self, context: bpy.types.Context) -> "set[OperatorReturnItems]":
        return run_job(
            self, lambda window: adopt.again(self.job_id, auto_import=None if window else False, origin="operator")
        )
