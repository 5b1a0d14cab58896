"""modelslab.image_to_3d: the one entry point for the Generate button, the console and scripts."""

# mypy: disable-error-code="valid-type"
from typing import TYPE_CHECKING

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from ..api import ModelsLabError
from ..api.params import CHUNK_SIZE_RANGE, FOREGROUND_RATIO_RANGE, PARAM_FIELDS, RESOLUTION_RANGE
from ..blender import inputs, placement, results, runtime
from ..blender.props import FACING_ITEMS

if TYPE_CHECKING:
    from bpy.stub_internal.rna_enums import OperatorReturnItems


def report_error(operator: bpy.types.Operator, error: ModelsLabError) -> None:
    """Report a categorised error (message and fix; never a traceback, never the key)."""
    operator.report({"ERROR"}, f"[{error.category.value}] {error.message} {error.fix}".strip())


def scene_image(context: bpy.types.Context) -> str:
    """The panel's image: the file path or the URL, per image_source."""
    settings = getattr(context.scene, "modelslab", None)
    if settings is None:
        return ""
    return settings.image_url if settings.image_source == "URL" else settings.image_path


class MODELSLAB_OT_image_to_3d(bpy.types.Operator):
    """Generate a 3D model from an image with ModelsLab and import it at the 3D cursor"""

    bl_idname = "modelslab.image_to_3d"
    bl_label = "Generate 3D Model"
    bl_options = {"REGISTER"}

    image: StringProperty(
        name="Image",
        description="Image file, //-relative path or http(s) URL (empty: the panel's image)",
        options={"SKIP_SAVE"},
    )
    # Soft limits only: out-of-range values from scripts get a categorised invalid_input error from
    # GenerationParams.validate() instead of being clamped silently by Blender.
    resolution: IntProperty(
        name="Resolution",
        default=256,
        soft_min=RESOLUTION_RANGE[0],
        soft_max=RESOLUTION_RANGE[1],
        options={"SKIP_SAVE"},
    )
    foreground_ratio: FloatProperty(
        name="Foreground Ratio",
        default=0.85,
        soft_min=FOREGROUND_RATIO_RANGE[0],
        soft_max=FOREGROUND_RATIO_RANGE[1],
        options={"SKIP_SAVE"},
    )
    remove_bg: BoolProperty(name="Remove Background", default=False, options={"SKIP_SAVE"})
    chunk_size: IntProperty(
        name="Chunk Size",
        default=8192,
        soft_min=CHUNK_SIZE_RANGE[0],
        soft_max=CHUNK_SIZE_RANGE[1],
        options={"SKIP_SAVE"},
    )
    seed: IntProperty(name="Seed", description="0 = random", default=0, soft_min=0, options={"SKIP_SAVE"})
    output_format: StringProperty(
        name="Format", description="obj, glb, ply or stl (empty: the panel's choice)", options={"SKIP_SAVE"}
    )
    webhook: StringProperty(name="Webhook", options={"SKIP_SAVE"})
    track_id: StringProperty(name="Track ID", options={"SKIP_SAVE"})
    # Import options (unset: the scene's Import settings); checked by placement.check_import_options.
    ground: BoolProperty(
        name="Ground", description="Origin at the bottom centre, standing on the 3D cursor", options={"SKIP_SAVE"}
    )
    target_height: FloatProperty(
        name="Height",
        description="Uniform scale to this height in scene units (0 keeps the size)",
        soft_min=0.0,
        subtype="DISTANCE",
        unit="LENGTH",
        options={"SKIP_SAVE"},
    )
    fit_to_selected: BoolProperty(
        name="Fit to Selected",
        description="Take the selected object's place, rotation and box; it is hidden",
        options={"SKIP_SAVE"},
    )
    facing: EnumProperty(name="Facing", items=FACING_ITEMS, default="-Y", options={"SKIP_SAVE"})
    as_asset: BoolProperty(name="Mark as Asset", options={"SKIP_SAVE"})
    bake_size: IntProperty(
        name="Bake Texture",
        description="Bake the vertex colours to a texture this size (0 = off, 256 to 4096)",
        soft_min=0,
        soft_max=placement.BAKE_SIZE_RANGE[1],
        options={"SKIP_SAVE"},
    )

    def execute(self, context: bpy.types.Context) -> "set[OperatorReturnItems]":
        values = {name: getattr(self, name) for name in PARAM_FIELDS if self.properties.is_property_set(name)}
        if "output_format" in values:
            values["output_format"] = values["output_format"].strip().lower() or None
        image = self.image.strip() or scene_image(context)
        scene_settings = getattr(context.scene, "modelslab", None)
        explicit = {
            name: getattr(self, name) for name in placement.OPTION_FIELDS if self.properties.is_property_set(name)
        }
        try:
            params = inputs.build_params(values, scene_settings)
            import_options = placement.collect_import_options(explicit, scene_settings, context)
            resolved = inputs.resolve_image(image)
            extra = {"import_options": import_options}
            if not bpy.app.background:
                record = runtime.submit(resolved, params, origin="operator", extra=extra)
                self.report({"INFO"}, f"ModelsLab: generating {record.name} (see the sidebar's job list)")
                return {"FINISHED"}
            record = runtime.submit(resolved, params, auto_import=False, origin="operator", extra=extra)
            print(f"ModelsLab: {record.name}: submitted as job {record.local_id}", flush=True)
            final = results.wait_for(record.local_id, None, results.print_progress)
            obj = results.object_or_raise(final)
        except ModelsLabError as error:
            report_error(self, error)
            return {"CANCELLED"}
        except KeyboardInterrupt:
            self.report({"ERROR"}, "Interrupted: the job stays in the journal and can be resumed.")
            return {"CANCELLED"}
        mesh = obj.data
        count = len(mesh.vertices) if isinstance(mesh, bpy.types.Mesh) else 0
        self.report({"INFO"}, f"ModelsLab: imported {obj.name} ({count} vertices)")
        return {"FINISHED"}
