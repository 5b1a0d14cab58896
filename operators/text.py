"""modelslab.text_to_3d: a model from a text prompt (POST …/3d/text_to_3d), like modelslab.image_to_3d."""

# mypy: disable-error-code="valid-type"
from typing import TYPE_CHECKING

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from ..api import ModelsLabError
from ..api.params import FOREGROUND_RATIO_RANGE, GUIDANCE_SCALE_RANGE, INFERENCE_STEPS_RANGE, SPECS, fields_for
from ..blender import commands, inputs, placement, sources
from ..blender.props import FACING_ITEMS
from .generate import report_error, run_job, set_values

if TYPE_CHECKING:
    from bpy.stub_internal.rna_enums import OperatorReturnItems

TEXT_PARAMS = tuple(name for name in fields_for("text") if name != "prompt")


class MODELSLAB_OT_text_to_3d(bpy.types.Operator):
    """Generate a 3D model from a text prompt with ModelsLab and import it at the 3D cursor"""

    bl_idname = "modelslab.text_to_3d"
    bl_label = "Generate from Text"
    bl_options = {"REGISTER"}

    prompt: StringProperty(name="Prompt", description="What to make (empty: the panel's prompt)", options={"SKIP_SAVE"})
    negative_prompt: StringProperty(
        name="Negative Prompt", description=SPECS["negative_prompt"].description, options={"SKIP_SAVE"}
    )
    guidance_scale: FloatProperty(
        name="Guidance Scale",
        description=SPECS["guidance_scale"].description,
        soft_min=GUIDANCE_SCALE_RANGE[0],
        soft_max=GUIDANCE_SCALE_RANGE[1],
        options={"SKIP_SAVE"},
    )
    num_inference_steps: IntProperty(
        name="Inference Steps",
        description=SPECS["num_inference_steps"].description,
        soft_min=INFERENCE_STEPS_RANGE[0],
        soft_max=INFERENCE_STEPS_RANGE[1],
        options={"SKIP_SAVE"},
    )
    seed: IntProperty(name="Seed", description="0 = random", default=0, soft_min=0, options={"SKIP_SAVE"})
    output_format: StringProperty(
        name="Format", description="obj, glb, ply or stl (empty: the panel's choice)", options={"SKIP_SAVE"}
    )
    foreground_ratio: FloatProperty(
        name="Foreground Ratio",
        default=0.85,
        soft_min=FOREGROUND_RATIO_RANGE[0],
        soft_max=FOREGROUND_RATIO_RANGE[1],
        options={"SKIP_SAVE"},
    )
    remove_bg: BoolProperty(name="Remove Background", options={"SKIP_SAVE"})
    webhook: StringProperty(name="Webhook", options={"SKIP_SAVE"})
    track_id: StringProperty(name="Track ID", options={"SKIP_SAVE"})
    model_id: StringProperty(name="Model", description=SPECS["model_id"].description, options={"SKIP_SAVE"})
    ground: BoolProperty(name="Ground", options={"SKIP_SAVE"})
    target_height: FloatProperty(name="Height", soft_min=0.0, subtype="DISTANCE", unit="LENGTH", options={"SKIP_SAVE"})
    fit_to_selected: BoolProperty(name="Fit to Selected", options={"SKIP_SAVE"})
    facing: EnumProperty(name="Facing", items=FACING_ITEMS, default="-Y", options={"SKIP_SAVE"})
    as_asset: BoolProperty(name="Mark as Asset", options={"SKIP_SAVE"})
    bake_size: IntProperty(name="Bake Texture", soft_min=0, options={"SKIP_SAVE"})

    def execute(self, context: bpy.types.Context) -> "set[OperatorReturnItems]":
        settings = getattr(context.scene, "modelslab", None)
        values = set_values(self, TEXT_PARAMS)
        if "output_format" in values:
            values["output_format"] = values["output_format"].strip().lower() or None
        for name in ("negative_prompt", "model_id", "webhook", "track_id"):
            if name in values and not str(values[name]).strip():
                values[name] = None
        prompt = self.prompt.strip() or (settings.prompt.strip() if settings is not None else "")
        try:
            params = inputs.build_params({**values, "prompt": prompt}, settings, kind="text")
            options = placement.collect_import_options(set_values(self, placement.OPTION_FIELDS), settings, context)
        except ModelsLabError as error:
            report_error(self, error)
            return {"CANCELLED"}
        extra = {"import_options": options}
        return run_job(
            self,
            lambda window: commands.submit(
                sources.text_input(prompt),
                params,
                auto_import=None if window else False,
                origin="operator",
                extra=extra,
            ),
        )
