"""What a headless batch leaves behind besides its result rows: the imported objects laid out in a row, a copy
of each mesh and a small preview render in the output folder, and the saved .blend.

Kept apart from the engine (blender/batch.py): none of this changes which jobs run or how they end, and the
script API's run() does without it.
"""

import shutil
from pathlib import Path
from typing import Any

import bpy
from mathutils import Vector

from ..api.cache import safe_name

PREVIEW_SIZE = 256
PREVIEW_SAMPLES = 12
ROW_GAP = 0.4  # scene units between imported objects laid out in a row


class BatchOutput:
    """Decorates each imported object's row: places the object, copies its mesh, renders a preview if asked."""

    def __init__(self, out_dir: Path, render: bool) -> None:
        self.out_dir = out_dir
        self.render = render
        self.row_edge: float | None = None  # right edge of the row of imported objects

    def __call__(self, obj: bpy.types.Object, row: dict[str, Any]) -> None:
        self.place_in_row(obj)
        if row.get("file"):
            row["file"] = str(self.copy_mesh(Path(row["file"]), obj.name))
        if self.render:
            try:
                row["preview"] = str(render_preview(obj, self.out_dir / "previews" / f"{safe_name(obj.name)}.png"))
            except Exception as exc:  # a preview is a bonus: the object is imported all the same
                row["preview_error"] = f"{type(exc).__name__}: {exc}"

    def place_in_row(self, obj: bpy.types.Object) -> None:
        """Side by side along X from the 3D cursor (the first one stays at the cursor), so none overlap."""
        view_layer: Any = bpy.context.view_layer
        view_layer.update()
        half_width = obj.dimensions.x / 2
        if self.row_edge is not None:
            obj.location.x = self.row_edge + ROW_GAP + half_width
            view_layer.update()  # matrix_world follows the new location (the preview frames it)
        self.row_edge = obj.location.x + half_width

    def copy_mesh(self, source: Path, object_name: str) -> Path:
        """A copy of the downloaded mesh in OUT/meshes (the cache keeps its own for re-imports)."""
        target = self.out_dir / "meshes" / f"{safe_name(object_name)}{source.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return target


def render_preview(obj: bpy.types.Object, target: Path) -> Path:
    """Render obj alone, framed by an orthographic camera with a sun and a grey world (Cycles CPU, low samples)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scene = bpy.data.scenes.new("ModelsLab preview")
    camera_data = bpy.data.cameras.new("ModelsLab preview camera")
    light_data: Any = bpy.data.lights.new("ModelsLab preview light", type="SUN")  # a SunLight
    world = bpy.data.worlds.new("ModelsLab preview world")
    camera = bpy.data.objects.new("ModelsLab preview camera", camera_data)
    light = bpy.data.objects.new("ModelsLab preview light", light_data)
    try:
        scene.collection.objects.link(obj)
        scene.collection.objects.link(camera)
        scene.collection.objects.link(light)
        scene.camera = camera
        scene.world = world
        world.color = (0.55, 0.57, 0.6)
        light_data.energy = 3.0
        light.rotation_euler = (0.75, 0.2, 0.6)

        corners = [obj.matrix_world @ Vector(corner) for corner in obj.bound_box]
        low = Vector((min(c.x for c in corners), min(c.y for c in corners), min(c.z for c in corners)))
        high = Vector((max(c.x for c in corners), max(c.y for c in corners), max(c.z for c in corners)))
        center = (low + high) / 2
        diagonal = max((high - low).length, 1e-3)
        view = Vector((0.55, -1.0, 0.4)).normalized()  # front-right, a little above (imported fronts face -Y)
        camera.location = center + view * diagonal * 2.0
        camera.rotation_euler = (-view).to_track_quat("-Z", "Y").to_euler()
        camera_data.type = "ORTHO"
        camera_data.ortho_scale = diagonal * 1.05
        camera_data.clip_end = diagonal * 10

        render: Any = scene.render
        render.engine = "CYCLES"
        render.resolution_x = render.resolution_y = PREVIEW_SIZE
        render.resolution_percentage = 100
        render.image_settings.file_format = "PNG"
        render.filepath = str(target)
        cycles: Any = getattr(scene, "cycles")  # noqa: B009  (registered by the Cycles add-on, not in the stubs)
        cycles.device = "CPU"
        cycles.samples = PREVIEW_SAMPLES
        cycles.use_denoising = False
        if hasattr(cycles, "use_adaptive_sampling"):
            cycles.use_adaptive_sampling = False
        bpy.ops.render.render(write_still=True, scene=scene.name)
    finally:
        bpy.data.scenes.remove(scene)
        bpy.data.objects.remove(camera)
        bpy.data.objects.remove(light)
        bpy.data.cameras.remove(camera_data)
        bpy.data.lights.remove(light_data)
        bpy.data.worlds.remove(world)
    if not target.exists() or target.stat().st_size == 0:
        raise RuntimeError(f"the renderer wrote no image to {target}")
    return target


def save_blend(path: str) -> Path:
    """Save the current scene (with the imported objects) as a .blend; the key is never part of it."""
    target = Path(path).expanduser().absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(target), check_existing=False)
    return target
