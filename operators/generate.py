"""modelslab.image_to_3d: the one entry point for the Generate button, the console and scripts."""

# mypy: disable-error-code="valid-type"
from typing import TYPE_CHECKING

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from ..api import ModelsLabError
from ..api.params import (
    CHUNK_SIZE_RANGE,
    FOREGROUND_RATIO_RANGE,
    GUIDANCE_STRENGTH_RANGE,
    MESH_SIMPLIFY_RANGE,
    PARAM_FIELDS,
    RESOLUTION_RANGE,
    REVISION_FIELDS,
    SAMPLING_STEPS_RANGE,
    SPECS,
    is_url,
)
from ..blender import commands, inputs, placement, results, sources
from ..blender.props import FACING_ITEMS
from .jobs import report_error

if TYPE_CHECKING:
    from collections.abc import Callable

    from bpy.stub_internal.rna_enums import OperatorReturnItems

    from ..api.records import JobRecord

# The newer revision's fields: sent only when the caller sets them (is_property_set), else the scene's toggles.
_DESCRIPTIONS = {name: SPECS[name].description for name in REVISION_FIELDS}


def scene_image(context: bpy.types.Context) -> str:
    """The panel's image: the file path or the URL, per image_source."""
    settings = getattr(context.scene, "modelslab", None)
    if settings is None:
        return ""
    return settings.image_url if settings.image_source == "URL" else settings.image_path


def split_list(text: str) -> list[str]:
    """A ';'-separated list of paths, URLs or names (empty parts dropped)."""
    return [part.strip() for part in (text or "").split(";") if part.strip()]


def set_values(operator: bpy.types.Operator, names: "tuple[str, ...]") -> dict:
    """The operator's properties among names that the caller set (unset ones fall back to the scene)."""
    return {name: getattr(operator, name) for name in names if operator.properties.is_property_set(name)}


def run_job(
    operator: bpy.types.Operator, submit: "Callable[[bool], JobRecord]", captures: "list[str] | None" = None
) -> "set[OperatorReturnItems]":
    """Submit (async in a window, blocking in background mode), report, and return the operator's result.

    captures: temporary PNGs of this job, removed here when the submit is refused (else by the importer).
    """
    record = None
    try:
        if not bpy.app.background:
            record = submit(True)
            operator.report({"INFO"}, f"ModelsLab: generating {record.name} (see the sidebar's job list)")
            return {"FINISHED"}
        record = submit(False)
        print(f"ModelsLab: {record.name}: submitted as job {record.local_id}", flush=True)
        final = results.wait_for(record.local_id, None, results.print_progress)
        obj = results.object_or_raise(final)
    except ModelsLabError as error:
        if record is None:
            sources.drop_captures(captures or [])
        report_error(operator, error)
        return {"CANCELLED"}
    except KeyboardInterrupt:
        operator.report({"ERROR"}, "Interrupted: the job stays in the journal and can be resumed.")
        return {"CANCELLED"}
    mesh = obj.data
    count = len(mesh.vertices) if isinstance(mesh, bpy.types.Mesh) else 0
    operator.report({"INFO"}, f"ModelsLab: imported {obj.name} ({count} vertices)")
    return {"FINISHED"}


class MODELSLAB_OT_image_to_3d(bpy.types.Operator):
    """Generate a 3D model from an image with ModelsLab and import it at the 3D cursor"""

    bl_idname = "modelslab.image_to_3d"
    bl_label = "Generate 3D Model"
    bl_options = {"REGISTER"}

    source: StringProperty(
        name="Source",
        description="FILE, URL, IMAGE, CAMERA, VIEWPORT or CLIPBOARD (empty: the panel's choice)",
        options={"SKIP_SAVE"},
    )
    image: StringProperty(
        name="Image",
        description="Image file, //-relative path or http(s) URL (empty: the panel's image)",
        options={"SKIP_SAVE"},
    )
    image_name: StringProperty(
        name="Image Name", description="source IMAGE: an image of this file (bpy.data.images)", options={"SKIP_SAVE"}
    )
    cameras: StringProperty(
        name="Cameras",
        description="source CAMERA: camera names separated by ';' (2-4 make several views, front first; "
        "empty: the active camera)",
        options={"SKIP_SAVE"},
    )
    extra_views: StringProperty(
        name="More Views",
        description="1-3 more views of the object (right side, back, left side): files or URLs separated by ';'",
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
    ss_guidance_strength: FloatProperty(
        name="Structure Guidance",
        description=_DESCRIPTIONS["ss_guidance_strength"],
        soft_min=GUIDANCE_STRENGTH_RANGE[0],
        soft_max=GUIDANCE_STRENGTH_RANGE[1],
        options={"SKIP_SAVE"},
    )
    ss_sampling_steps: IntProperty(
        name="Structure Steps",
        description=_DESCRIPTIONS["ss_sampling_steps"],
        soft_min=SAMPLING_STEPS_RANGE[0],
        soft_max=SAMPLING_STEPS_RANGE[1],
        options={"SKIP_SAVE"},
    )
    slat_guidance_strength: FloatProperty(
        name="Detail Guidance",
        description=_DESCRIPTIONS["slat_guidance_strength"],
        soft_min=GUIDANCE_STRENGTH_RANGE[0],
        soft_max=GUIDANCE_STRENGTH_RANGE[1],
        options={"SKIP_SAVE"},
    )
    slat_sampling_steps: IntProperty(
        name="Detail Steps",
        description=_DESCRIPTIONS["slat_sampling_steps"],
        soft_min=SAMPLING_STEPS_RANGE[0],
        soft_max=SAMPLING_STEPS_RANGE[1],
        options={"SKIP_SAVE"},
    )
    mesh_simplify: FloatProperty(
        name="Simplify",
        description=_DESCRIPTIONS["mesh_simplify"],
        soft_min=MESH_SIMPLIFY_RANGE[0],
        soft_max=MESH_SIMPLIFY_RANGE[1],
        options={"SKIP_SAVE"},
    )
    render: BoolProperty(name="Preview Render", description=_DESCRIPTIONS["render"], options={"SKIP_SAVE"})
    temp: BoolProperty(name="Temporary Files", description=_DESCRIPTIONS["temp"], options={"SKIP_SAVE"})
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
        values = set_values(self, (*PARAM_FIELDS, *REVISION_FIELDS))
        if "output_format" in values:
            values["output_format"] = values["output_format"].strip().lower() or None
        scene_settings = getattr(context.scene, "modelslab", None)
        explicit = set_values(self, placement.OPTION_FIELDS)
        try:
            inputs.build_params(values, scene_settings)  # every field checked before anything is rendered
            import_options = placement.collect_import_options(explicit, scene_settings, context)
            source = self.source.strip().upper()
            if not source and self.image.strip():
                source = "URL" if is_url(self.image.strip()) else "FILE"
            if not source and self.image_name.strip():
                source = "IMAGE"
            front, views, captures = sources.resolve_choice(
                source,
                image=self.image.strip(),
                image_name=self.image_name.strip(),
                cameras=split_list(self.cameras),
                extra_views=split_list(self.extra_views),
                context=context,
            )
            if views:
                values["extra_views"] = views
            params = inputs.build_params(values, scene_settings)
        except ModelsLabError as error:
            report_error(self, error)
            return {"CANCELLED"}
        extra: dict = {"import_options": import_options}
        if captures:
            extra["captures"] = captures
        return run_job(
            self,
            lambda window: commands.submit(
                front, params, auto_import=None if window else False, origin="operator", extra=extra
            ),
            captures or ([front.source] if front.original.startswith(sources.CAPTURED_PREFIXES) else []),
        )
