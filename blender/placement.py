"""Import options: where a result lands and how big it is (ground, target height, fit to a placeholder, facing),
plus the options that travel with it (mark as asset, bake size).

The options travel with a job as record.extra["import_options"] and are applied again on every re-import.
check_import_options() needs no bpy (validation before any request); the placing itself runs on the main thread.
Sizes and heights are in world space: the OBJ/glTF importers keep their axis conversion as the object's
rotation, so the mesh's own coordinates are never taken for "up".
"""

import math
from typing import TYPE_CHECKING, Any

from ..api.errors import invalid_input

if TYPE_CHECKING:
    import bpy

FACINGS = ("-Y", "Y", "X", "-X")
# Rotation about world Z that turns the front (-Y after import) to the wanted axis.
FACING_ANGLES = {"-Y": 0.0, "Y": math.pi, "X": math.pi / 2, "-X": -math.pi / 2}
BAKE_SIZE_RANGE = (256, 4096)
DEFAULT_OPTIONS: dict[str, Any] = {
    "ground": False,
    "target_height": 0.0,
    "fit_to_selected": False,
    "facing": "-Y",
    "as_asset": False,
    "bake_size": 0,
}
OPTION_FIELDS = tuple(DEFAULT_OPTIONS)
PLACEHOLDER_KEY = "placeholder"  # the object chosen at submit time for fit_to_selected (its name)
_EPSILON = 1e-9


def check_import_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Validate and complete import options (no bpy); raises ModelsLabError(invalid_input) naming the field."""
    given = dict(options or {})
    unknown = sorted(set(given) - set(OPTION_FIELDS) - {PLACEHOLDER_KEY})
    if unknown:
        raise invalid_input(
            f"Unknown import option(s): {', '.join(unknown)}.", f"Use only: {', '.join(OPTION_FIELDS)}."
        )
    checked = dict(DEFAULT_OPTIONS)
    for name in ("ground", "fit_to_selected", "as_asset"):
        if name in given and given[name] is not None:
            checked[name] = _flag(name, given[name])
    if given.get("target_height") is not None:
        checked["target_height"] = _height(given["target_height"])
    if given.get("facing") is not None:
        checked["facing"] = _facing(given["facing"])
    if given.get("bake_size") is not None:
        checked["bake_size"] = _bake_size(given["bake_size"])
    placeholder = given.get(PLACEHOLDER_KEY)
    if checked["fit_to_selected"] and placeholder:
        checked[PLACEHOLDER_KEY] = str(placeholder)
    return checked


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise invalid_input(f"{name} must be true or false, got {value!r}.", f"Set {name} to True or False.")


def _height(value: Any) -> float:
    fix = "Set target_height to the wanted height in scene units (metres by default), or 0 to keep the size."
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_input(f"target_height must be a number, got {value!r}.", fix)
    height = float(value)
    if not math.isfinite(height) or height < 0:
        raise invalid_input(f"target_height must be 0 or more, got {value!r}.", fix)
    return height


def _facing(value: Any) -> str:
    text = str(value).strip().upper().replace("NEGATIVE_", "-").lstrip("+")
    if text not in FACINGS:
        raise invalid_input(
            f"facing must be one of {', '.join(FACINGS)}, got {value!r}.",
            "Choose the axis the front of the image should face (-Y is Blender's front view).",
        )
    return text


def _bake_size(value: Any) -> int:
    low, high = BAKE_SIZE_RANGE
    fix = f"Set bake_size to 0 (no texture) or a size from {low} to {high} pixels."
    if isinstance(value, bool) or not isinstance(value, int | float) or float(value) != int(value):
        raise invalid_input(f"bake_size must be a whole number of pixels, got {value!r}.", fix)
    size = int(value)
    if size != 0 and not low <= size <= high:
        raise invalid_input(f"bake_size must be 0 or from {low} to {high}, got {size}.", fix)
    return size


def collect_import_options(
    values: dict[str, Any], scene_settings: Any = None, context: "bpy.types.Context | None" = None
) -> dict[str, Any]:
    """The import options of one submit: explicit values, then the scene's settings (scene.modelslab), then the
    defaults; validated, with the placeholder for fit_to_selected taken from the selection now.

    Raises ModelsLabError(invalid_input) before any request (bad value, fit with nothing selected).
    """
    merged: dict[str, Any] = {}
    for name in OPTION_FIELDS:
        if values.get(name) is not None:
            merged[name] = values[name]
        elif scene_settings is not None and hasattr(scene_settings, name):
            merged[name] = getattr(scene_settings, name)
    options = check_import_options(merged)
    if options["fit_to_selected"]:
        options[PLACEHOLDER_KEY] = selected_placeholder(context).name
    return options


def selected_placeholder(context: "bpy.types.Context | None" = None) -> "bpy.types.Object":
    """The object a result replaces with fit_to_selected: the active object if selected, else the first selected."""
    import bpy

    context = context or bpy.context
    selected = list(getattr(context, "selected_objects", None) or [])
    active = getattr(context, "active_object", None)
    chosen = active if active is not None and active in selected else (selected[0] if selected else None)
    if chosen is None:
        raise invalid_input(
            "fit_to_selected is on, but no object is selected.",
            "Select the placeholder object the model should replace, or turn Fit to Selected off.",
        )
    if max(_placeholder_box(chosen)[1]) <= _EPSILON:
        raise invalid_input(
            f"fit_to_selected: the selected object {chosen.name!r} has no size to fit into.",
            "Select an object with a size (a mesh or a scaled empty), or turn Fit to Selected off.",
        )
    return chosen


# --- placing an imported object (main thread) ----------------------------------------------------------------------
def apply_placement(obj: "bpy.types.Object", options: dict[str, Any], scene: "bpy.types.Scene") -> dict[str, Any]:
    """Turn, scale and move a freshly imported object (no parent) per options; returns what was applied
    (facing, scale factor, world size, placeholder name)."""
    import bpy
    from mathutils import Matrix, Vector

    basis = Matrix.Rotation(FACING_ANGLES[options.get("facing") or "-Y"], 4, "Z") @ obj.matrix_basis
    basis.translation = Vector((0.0, 0.0, 0.0))
    mesh: Any = obj.data
    low, high = _world_bounds(mesh, basis)
    bottom: Any = Vector(((low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2]))
    applied: dict[str, Any] = {"facing": options.get("facing") or "-Y"}
    placeholder = _placeholder(options)
    scale = 1.0
    if placeholder is not None:
        view_layer: Any = bpy.context.view_layer
        view_layer.update()  # its matrix_world may be stale after script edits
        centre, size, frame = _placeholder_box(placeholder)
        scale = _fit_scale(size, high - low)
        target = Matrix.Translation(centre) @ frame @ Matrix.Scale(scale, 4)
        placeholder.hide_set(True)
        placeholder.hide_render = True
        applied["placeholder"] = placeholder.name
    else:
        height = float(options.get("target_height") or 0.0)
        extent = high[2] - low[2]
        if height > 0 and extent > _EPSILON:
            scale = height / extent
        cursor: Any = scene.cursor.location
        target = Matrix.Translation(cursor) @ Matrix.Scale(scale, 4)
    if options.get("ground") or placeholder is not None:
        # origin at the bottom centre: move the mesh under the object instead of the object over the mesh
        if options.get("ground"):
            mesh.transform(Matrix.Translation(-(basis.inverted_safe() @ bottom)))
            mesh.update()
            obj.matrix_basis = target @ basis
        else:
            obj.matrix_basis = target @ Matrix.Translation(-bottom) @ basis
    else:
        obj.matrix_basis = target @ basis
    applied["scale"] = round(scale, 6)
    applied["size"] = [round(v * scale, 6) for v in (high - low)]
    return applied


def _placeholder(options: dict[str, Any]) -> "bpy.types.Object | None":
    import bpy

    name = options.get(PLACEHOLDER_KEY)
    if not options.get("fit_to_selected") or not name:
        return None
    return bpy.data.objects.get(name)  # gone since submit: the result lands at the cursor instead


def _world_bounds(mesh: Any, basis: Any) -> tuple[Any, Any]:
    """Min and max corner of the mesh's vertices under basis (numpy, one pass)."""
    import numpy as np
    from mathutils import Vector

    count = len(mesh.vertices)
    coords = np.empty(count * 3, dtype=np.float32)  # Blender's own type: one block copy, not one per value
    mesh.vertices.foreach_get("co", coords)
    matrix = np.array(basis, dtype=np.float64)
    world = coords.reshape(count, 3).astype(np.float64) @ matrix[:3, :3].T + matrix[:3, 3]
    return Vector(world.min(axis=0)), Vector(world.max(axis=0))


def _placeholder_box(obj: "bpy.types.Object") -> tuple[Any, Any, Any]:
    """The placeholder's bounding box: bottom centre (world), size along its own axes, its rotation."""
    from mathutils import Vector

    corners = [Vector(corner) for corner in obj.bound_box]
    low = Vector(tuple(min(c[i] for c in corners) for i in range(3)))
    high = Vector(tuple(max(c[i] for c in corners) for i in range(3)))
    world = obj.matrix_world
    scale = world.to_scale()
    size: Any = Vector(tuple(abs((high[i] - low[i]) * scale[i]) for i in range(3)))
    if obj.type == "EMPTY" and max(size) <= _EPSILON:  # an empty: its drawn size (a cube of that half-width)
        size = Vector(tuple(abs(2 * obj.empty_display_size * scale[i]) for i in range(3)))
        low = Vector((-obj.empty_display_size,) * 3)
        high = Vector((obj.empty_display_size,) * 3)
    bottom = world @ Vector(((low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2]))
    frame = world.to_quaternion().to_matrix().to_4x4()
    return bottom, size, frame


def _fit_scale(box: Any, size: Any) -> float:
    """The largest uniform scale that keeps size inside box (axes where either is flat are ignored)."""
    ratios = [box[i] / size[i] for i in range(3) if box[i] > _EPSILON and size[i] > _EPSILON]
    return min(ratios) if ratios else 1.0


def applied_size_text(obj: "bpy.types.Object | None", scene: "bpy.types.Scene | None" = None) -> str:
    """An imported object's size (width x depth x height, world space, the scene's units) for a job row, e.g.
    "0.598 m x 0.321 m x 0.5 m"; "" when there is no such object."""
    import json

    import bpy

    if obj is None:
        return ""
    try:
        size = [float(v) for v in json.loads(str(obj.get("modelslab_import") or "{}")).get("size") or []]
    except (TypeError, ValueError):
        size = []
    if len(size) != 3:
        dimensions: Any = obj.dimensions
        size = list(dimensions)
    current: Any = scene or bpy.context.scene
    units = current.unit_settings
    return " x ".join(
        bpy.utils.units.to_string(units.system, "LENGTH", value * units.scale_length, precision=3) for value in size
    )
