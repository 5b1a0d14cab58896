"""Scene settings (`scene.modelslab`) and the transient job rows on the WindowManager."""

# mypy: disable-error-code="valid-type"
import time

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..api.params import (
    CHUNK_SIZE_RANGE,
    FOREGROUND_RATIO_RANGE,
    MAX_MODEL_ID_LENGTH,
    MAX_PROMPT_LENGTH,
    MAX_TRACK_ID_LENGTH,
    MAX_URL_LENGTH,
    RESOLUTION_RANGE,
    SPECS,
)
from .sources import SOURCE_ITEMS

# Blender int properties are 32-bit signed; the API accepts seeds up to 2**32-1.
SEED_MAX = 2**31 - 1

# Job rows store times relative to this (float properties are single precision).
SESSION_EPOCH = time.time()

OUTPUT_FORMAT_ITEMS = [
    ("obj", "OBJ", "Wavefront OBJ with vertex colours (default)"),
    ("glb", "glTF Binary", "GLB with vertex colours"),
    ("ply", "PLY", "Stanford PLY with vertex colours"),
    ("stl", "STL", "STL (geometry only, no colours)"),
]

FACING_ITEMS = [
    ("-Y", "-Y", "The image's front faces -Y (Blender's front view)"),
    ("Y", "Y", "The image's front faces +Y"),
    ("X", "X", "The image's front faces +X"),
    ("-X", "-X", "The image's front faces -X"),
]


# No update= callbacks on these properties: bpy 4.2 crashes at exit once any Python update callback was
# registered. The sidebar's image check is keyed on the path and its stat, so a new path is checked afresh anyway.
class ModelsLabSceneSettings(bpy.types.PropertyGroup):
    """The panel's parameters; also the fallback for unset operator properties."""

    image_source: EnumProperty(name="Source", items=SOURCE_ITEMS, default="FILE")
    image_path: StringProperty(
        name="Image",
        description="Local image file; // paths are relative to the saved .blend",
        subtype="FILE_PATH",
    )
    image_url: StringProperty(name="Image URL", description="http(s) URL of the input image", maxlen=MAX_URL_LENGTH)
    foreground_ratio: FloatProperty(
        name="Foreground Ratio",
        description="How much of the frame the object fills (used when Remove Background is off)",
        default=0.85,
        min=FOREGROUND_RATIO_RANGE[0],
        max=FOREGROUND_RATIO_RANGE[1],
        subtype="FACTOR",
    )
    remove_bg: BoolProperty(
        name="Remove Background", description="Let the server cut the object out of its background", default=False
    )
    resolution: IntProperty(
        name="Resolution",
        description="Marching-cubes grid: higher gives finer meshes and takes longer",
        default=256,
        min=RESOLUTION_RANGE[0],
        max=RESOLUTION_RANGE[1],
    )
    chunk_size: IntProperty(
        name="Chunk Size",
        description="Server-side evaluation chunk size (higher is faster, more memory)",
        default=8192,
        min=CHUNK_SIZE_RANGE[0],
        max=CHUNK_SIZE_RANGE[1],
    )
    seed: IntProperty(name="Seed", description="0 = random", default=0, min=0, max=SEED_MAX)
    output_format: EnumProperty(name="Format", items=OUTPUT_FORMAT_ITEMS, default="obj")
    webhook: StringProperty(
        name="Webhook",
        description="Optional http(s) URL the server calls when the job is done",
        maxlen=MAX_URL_LENGTH,
    )
    track_id: StringProperty(
        name="Track ID", description="Optional id echoed back in the webhook call", maxlen=MAX_TRACK_ID_LENGTH
    )

    # --- sources from inside Blender and text to 3D (blender/sources.py) ---
    image_name: StringProperty(name="Image", description="An image of this file (bpy.data.images)")
    camera_name: StringProperty(name="Camera", description="The camera to render (empty: the scene's active camera)")
    prompt: StringProperty(name="Prompt", description=SPECS["prompt"].description, maxlen=MAX_PROMPT_LENGTH)
    negative_prompt: StringProperty(
        name="Negative Prompt", description=SPECS["negative_prompt"].description, maxlen=MAX_PROMPT_LENGTH
    )
    model_id: StringProperty(name="Model", description=SPECS["model_id"].description, maxlen=MAX_MODEL_ID_LENGTH)
    # Fields sent only when set: each has a use_<name> toggle, so a stored value survives switching it off and
    # "not set" never depends on a magic value.
    use_guidance_scale: BoolProperty(name="Guidance Scale", description="Send guidance_scale")
    guidance_scale: FloatProperty(
        name="Guidance Scale", description=SPECS["guidance_scale"].description, default=7.5, min=1.0, max=20.0
    )
    use_num_inference_steps: BoolProperty(name="Inference Steps", description="Send num_inference_steps")
    num_inference_steps: IntProperty(
        name="Inference Steps", description=SPECS["num_inference_steps"].description, default=30, min=1, max=50
    )
    use_ss_guidance_strength: BoolProperty(name="Structure Guidance", description="Send ss_guidance_strength")
    ss_guidance_strength: FloatProperty(
        name="Structure Guidance", description=SPECS["ss_guidance_strength"].description, default=7.5, min=0, max=10
    )
    use_ss_sampling_steps: BoolProperty(name="Structure Steps", description="Send ss_sampling_steps")
    ss_sampling_steps: IntProperty(
        name="Structure Steps", description=SPECS["ss_sampling_steps"].description, default=12, min=1, max=50
    )
    use_slat_guidance_strength: BoolProperty(name="Detail Guidance", description="Send slat_guidance_strength")
    slat_guidance_strength: FloatProperty(
        name="Detail Guidance", description=SPECS["slat_guidance_strength"].description, default=3.0, min=0, max=10
    )
    use_slat_sampling_steps: BoolProperty(name="Detail Steps", description="Send slat_sampling_steps")
    slat_sampling_steps: IntProperty(
        name="Detail Steps", description=SPECS["slat_sampling_steps"].description, default=12, min=1, max=50
    )
    use_mesh_simplify: BoolProperty(name="Simplify", description="Send mesh_simplify")
    mesh_simplify: FloatProperty(
        name="Simplify", description=SPECS["mesh_simplify"].description, default=0.95, min=0.9, max=0.98
    )
    use_render: BoolProperty(name="Preview Render", description="Send render")
    render: BoolProperty(name="Preview Render", description=SPECS["render"].description)
    use_temp: BoolProperty(name="Temporary Files", description="Send temp")
    temp: BoolProperty(name="Temporary Files", description=SPECS["temp"].description)

    # --- import options: how a result is placed and prepared in the scene (blender/placement.py) ---
    # bake_size 1..255 stays possible here: Generate refuses it with a clear error (placement.check_import_options).
    ground: BoolProperty(
        name="Ground",
        description="Origin at the bottom centre; the object stands on the 3D cursor",
        default=False,
    )
    target_height: FloatProperty(
        name="Height",
        description="Scale uniformly to this height in scene units (0 keeps the service's size)",
        default=0.0,
        min=0.0,
        soft_max=100.0,
        subtype="DISTANCE",
        unit="LENGTH",
    )
    fit_to_selected: BoolProperty(
        name="Fit to Selected",
        description="Replace the selected object: its place and rotation, scaled to fit its box; it is hidden",
        default=False,
    )
    facing: EnumProperty(name="Facing", items=FACING_ITEMS, default="-Y")
    as_asset: BoolProperty(
        name="Mark as Asset",
        description="Mark the object as an asset (preview, tags, ModelsLab catalog) for the Asset Browser",
        default=False,
    )
    bake_size: IntProperty(
        name="Bake Texture",
        description="Bake the vertex colours to a texture of this size (0 = off, else 256 to 4096)",
        default=0,
        min=0,
        max=4096,
        subtype="PIXEL",
    )


class ModelsLabJobRow(bpy.types.PropertyGroup):
    """One job as the UI shows it; rebuilt from the runner's events, never saved."""

    local_id: StringProperty()
    # `name` is PropertyGroup's built-in label property, used by the UIList filter: the job's name, numbered
    # when the list shows it more than once ("duck_512 (2)"); base_name is the job's own name.
    base_name: StringProperty()
    state: StringProperty()
    progress: FloatProperty(min=0.0, max=1.0, subtype="FACTOR")
    bar: FloatProperty(
        name="Progress",
        min=0.0,
        max=100.0,
        precision=0,
        subtype="PERCENTAGE",
        description="The bar as drawn before Blender 4.0 (percent): moves with elapsed/eta",
    )
    message: StringProperty()
    category: StringProperty()
    fix: StringProperty()
    created: FloatProperty(description="seconds since SESSION_EPOCH")
    finished: FloatProperty(description="seconds since SESSION_EPOCH when the job ended, 0 while running")
    took: FloatProperty(description="how long the job ran, submit to result (a later re-import does not count)")
    submitted: FloatProperty(description="seconds since SESSION_EPOCH when the server took the job, 0 before")
    due: FloatProperty(description="seconds since SESSION_EPOCH when the server should be done, 0 when unknown")
    eta: FloatProperty(default=-1.0)
    remote_id: StringProperty()
    source: StringProperty()
    file_path: StringProperty(subtype="FILE_PATH")
    object_name: StringProperty()
    result_url: StringProperty()
    was_submitted: BoolProperty()
    owner: StringProperty(description="mine, other (a live other Blender works on it) or recovered")
    blend_file: StringProperty(description="the .blend the job was started from")


CLASSES = (ModelsLabSceneSettings, ModelsLabJobRow)

# Words people see for API fields that are no scene property.
EXTRA_LABELS = {"init_image": "Image", "image_url": "Image URL", "base_url": "Server URL", "api_key": "API Key"}
_labels: dict[str, str] = {}


def field_labels() -> dict[str, str]:
    """API field name -> the label the sidebar shows for it (the scene properties' own names)."""
    if not _labels:
        properties = ModelsLabSceneSettings.bl_rna.properties  # type: ignore[attr-defined]
        _labels.update({prop.identifier: prop.name for prop in properties if prop.identifier != "rna_type"})
        _labels.update(EXTRA_LABELS)
    return _labels


def register_properties() -> None:
    """Attach the pointer/collection properties (classes must be registered first)."""
    bpy.types.Scene.modelslab = PointerProperty(type=ModelsLabSceneSettings)  # type: ignore[attr-defined]
    wm = bpy.types.WindowManager
    wm.modelslab_jobs = CollectionProperty(type=ModelsLabJobRow)  # type: ignore[attr-defined]
    wm.modelslab_jobs_index = IntProperty(default=-1, options={"SKIP_SAVE"})  # type: ignore[attr-defined]


def unregister_properties() -> None:
    """Remove what register_properties() added."""
    for owner, name in (
        (bpy.types.Scene, "modelslab"),
        (bpy.types.WindowManager, "modelslab_jobs"),
        (bpy.types.WindowManager, "modelslab_jobs_index"),
    ):
        if hasattr(owner, name):
            delattr(owner, name)
