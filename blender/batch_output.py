"""What a headless batch leaves behind: its result rows in OUT/results.jsonl, the imported objects laid out in a
row, a copy of each mesh and a small preview render in the output folder, and the saved .blend.

Kept apart from the engine (blender/batch.py): none of this changes which jobs run or how they end, and the
script API's run() does without it.
"""

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import IO, Any

import bpy
from mathutils import Vector

from ..api.cache import safe_name
from . import assets
from .export import export_object

PREVIEW_SIZE = 256
PREVIEW_SAMPLES = 12
ROW_GAP = 0.4  # scene units between imported objects laid out in a row


class ResultsLog:
    """OUT/results.jsonl: one JSON line appended (and flushed) per result, so a batch of any size costs the same
    per row. A later line for the same job (or, before it had one, the same input) supersedes an earlier one.

    keep_previous (--resume) keeps what earlier runs wrote; otherwise the file starts empty at the first row.
    """

    def __init__(self, out_dir: Path, keep_previous: bool) -> None:
        self.path = out_dir / "results.jsonl"
        self.rows: dict[str, dict[str, Any]] = read_results(self.path) if keep_previous else {}
        self.keep_previous = keep_previous
        self._handle: IO[str] | None = None

    def reported_imports(self) -> set[str]:
        """Job ids an earlier run reported as imported."""
        return {str(row["job_id"]) for row in self.rows.values() if row.get("status") == "imported"}

    def append(self, row: dict[str, Any]) -> None:
        """Write one row at the end of the file, flushed (a killed batch keeps every row reported before)."""
        if self._handle is None:
            self._handle = self._open()
        if row.get("job_id"):
            self.rows.pop(_image_key(row), None)
        self.rows[result_key(row)] = row
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        """Close the file (rows are already flushed)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _open(self) -> IO[str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.keep_previous:
            return open(self.path, "w", encoding="utf-8")
        lines = _line_count(self.path)
        if lines > len(self.rows):
            # Earlier runs left superseded lines: write the current rows once, so resumes never pile them up.
            tmp = self.path.with_name(f".results.{os.getpid()}.tmp")
            try:
                with open(tmp, "w", encoding="utf-8") as handle:
                    handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in self.rows.values())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        handle = open(self.path, "a+", encoding="utf-8")
        if handle.tell() > 0:
            handle.seek(handle.tell() - 1)
            if handle.read(1) != "\n":  # a run killed in the middle of a line: start on a fresh one
                handle.write("\n")
        return handle


def result_key(row: dict[str, Any]) -> str:
    """What a result row is about: its job, or its input while it has no job."""
    return str(row.get("job_id") or _image_key(row))


def _image_key(row: dict[str, Any]) -> str:
    return f"image:{row.get('image')}"


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    """The rows of a results file by result_key(), later lines superseding earlier ones; damaged lines skipped."""
    rows: dict[str, dict[str, Any]] = {}
    try:
        handle = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return rows
    with handle:
        for line in handle:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                if row.get("job_id"):
                    rows.pop(_image_key(row), None)
                rows[result_key(row)] = row
    return rows


def _line_count(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return sum(1 for line in handle if line.strip())
    except FileNotFoundError:
        return 0


class BatchOutput:
    """Decorates each imported object's row: places the object, copies its mesh, renders a preview and exports it
    (export_format: glb|fbx|obj, through Blender's exporters into OUT/exports) if asked; keeps the objects for an
    asset library written at the end."""

    def __init__(self, out_dir: Path, render: bool, export_format: str | None = None) -> None:
        self.out_dir = out_dir
        self.render = render
        self.export_format = export_format
        self.row_edge: float | None = None  # right edge of the row of imported objects
        self.objects: list[bpy.types.Object] = []

    def __call__(self, obj: bpy.types.Object, row: dict[str, Any]) -> None:
        self.place_in_row(obj)
        self.objects.append(obj)
        if row.get("file"):
            row["file"] = str(self.copy_mesh(Path(row["file"]), obj.name))
        if self.render:
            try:
                row["preview"] = str(render_preview(obj, self.out_dir / "previews" / f"{safe_name(obj.name)}.png"))
            except Exception as exc:  # a preview is a bonus: the object is imported all the same
                row["preview_error"] = f"{type(exc).__name__}: {exc}"
        if self.export_format:
            target = self.out_dir / "exports" / f"{safe_name(obj.name)}.{self.export_format}"
            try:
                row["export"] = str(export_object(obj, target, self.export_format))
            except Exception as exc:  # the object is imported (and in the saved .blend) all the same
                row["export_error"] = f"{type(exc).__name__}: {exc}"

    def write_asset_library(self, directory: str) -> Path | None:
        """The imported objects as assets in a new .blend in directory (catalog file beside it); None if none."""
        objects = [obj for obj in self.objects if obj.name in bpy.data.objects]
        return assets.write_asset_library(objects, directory) if objects else None

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


def money_line(after: dict | None, money: dict) -> str:
    """The batch's closing money line: jobs that may have been charged, the wallet after them, the ledger."""
    balance = f"; wallet now {after['balance']:.2f} {after['currency']}" if after else ""
    return f"{money['charged_jobs']} job(s) may have been charged{balance}; ledger {money['ledger']}"
