"""Mesh file -> one new object in the `ModelsLab` collection, with a vertex-colour material; a downloaded
job -> that object, with the job marked imported (import_job).

Lean by design (benchmarked against a bare wm.obj_import): no bmesh passes; a failed import
removes whatever it created and raises ModelsLabError(bad_mesh).
"""

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import bpy

from ..api import Category, ModelsLabError
from ..api.errors import invalid_input
from ..api.records import TERMINAL_STATES, JobState
from .assets import mark_asset
from .bake import bake_vertex_colors
from .placement import apply_placement, check_import_options
from .rows import update_row
from .session import OTHER, get_runner, ownership, settings
from .sources import drop_prepared_upload

COLLECTION_NAME = "ModelsLab"
COLOR_ATTRIBUTE = "Color"
MATERIAL_NAME = "ModelsLab Vertex Color"
UNDO_MESSAGE = "Import ModelsLab Mesh"

_LEGACY_AXIS = {"X": "X", "Y": "Y", "Z": "Z", "NEGATIVE_X": "-X", "NEGATIVE_Y": "-Y", "NEGATIVE_Z": "-Z"}


@dataclass(frozen=True)
class ImportOptions:
    """Per-import options (from the preferences)."""

    scale: float = 1.0
    forward_axis: str = "AUTO"
    up_axis: str = "AUTO"
    shade_smooth: bool = True
    decimate_ratio: float = 1.0
    undo_push: bool = True

    @classmethod
    def from_settings(cls, settings: Any) -> "ImportOptions":
        """Build from a preferences.Settings."""
        return cls(
            scale=float(settings.import_scale),
            forward_axis=settings.forward_axis,
            up_axis=settings.up_axis,
            shade_smooth=bool(settings.shade_smooth),
            decimate_ratio=float(settings.decimate_ratio),
        )


@dataclass
class Provenance:
    """Custom properties written on the object (never the key)."""

    job_id: str
    remote_id: str = ""
    source: str = ""
    params: dict = field(default_factory=dict)
    created: str = ""

    def apply(self, obj: bpy.types.Object) -> None:
        """Write the modelslab_* custom properties."""
        obj["modelslab_job_id"] = self.job_id
        obj["modelslab_remote_id"] = self.remote_id or ""
        obj["modelslab_source"] = self.source
        obj["modelslab_params"] = json.dumps(self.params, sort_keys=True, default=str)
        obj["modelslab_created"] = self.created or datetime.now(timezone.utc).isoformat(timespec="seconds")


def bad_mesh(message: str) -> ModelsLabError:
    """The error for a file Blender cannot turn into a mesh."""
    return ModelsLabError(Category.BAD_MESH, message)


def import_mesh(
    context: bpy.types.Context,
    filepath: str,
    fmt: str,
    *,
    name: str,
    options: ImportOptions | None = None,
    provenance: Provenance | None = None,
    import_options: dict[str, Any] | None = None,
) -> bpy.types.Object:
    """Import filepath (obj/glb/ply/stl) as one new selected, active object at the 3D cursor.

    import_options (placement.check_import_options): grounding, target height, fit to a placeholder, facing,
    then a baked texture and the asset mark. Raises ModelsLabError(bad_mesh) with nothing left behind when the
    file cannot be imported; a bake or asset step that fails leaves the object as imported, with a warning.
    """
    options = options or ImportOptions()
    fmt = (fmt or os.path.splitext(filepath)[1].lstrip(".")).lower()
    if fmt == "gltf":
        fmt = "glb"
    if not os.path.isfile(filepath) or os.path.getsize(filepath) == 0:
        raise bad_mesh(f"The mesh file is missing or empty: {os.path.basename(filepath)}")
    scene: Any = context.scene
    view_layer: Any = context.view_layer
    collection = _ensure_collection(scene)
    before = {ob.as_pointer() for ob in bpy.data.objects}
    created: list[bpy.types.Object] = []
    try:
        with _active_collection(view_layer, collection):
            scale_done = _run_importer(fmt, filepath, options)
        created = [ob for ob in bpy.data.objects if ob.as_pointer() not in before]
        obj = _single_mesh_object(context, created)
        mesh = obj.data
        if not isinstance(mesh, bpy.types.Mesh) or len(mesh.vertices) == 0:
            raise bad_mesh("The downloaded file contains no vertices.")
        if obj.name not in collection.objects:
            for coll in list(obj.users_collection):
                coll.objects.unlink(obj)
            collection.objects.link(obj)
        has_colors = _ensure_color_attribute(mesh, filepath, fmt)
        obj.name = name
        mesh.name = name
        obj.location = scene.cursor.location
        if not scale_done and options.scale != 1.0:
            obj.scale = obj.scale * options.scale
        if has_colors:
            _assign_material(mesh)
        if options.shade_smooth:
            _shade_smooth(mesh)
        if options.decimate_ratio < 1.0:
            modifier: Any = obj.modifiers.new("Decimate", "DECIMATE")
            modifier.ratio = options.decimate_ratio
        if provenance is not None:
            provenance.apply(obj)
        if import_options:
            applied = apply_placement(obj, import_options, scene)
            obj["modelslab_import"] = json.dumps(applied, sort_keys=True)
        for ob in context.selected_objects:
            if ob != obj:
                ob.select_set(False)
        obj.select_set(True)
        view_layer.objects.active = obj
    except ModelsLabError:
        _remove_objects(created or [ob for ob in bpy.data.objects if ob.as_pointer() not in before])
        raise
    except Exception as exc:  # an importer's own error: report it as a bad mesh, leave nothing behind
        _remove_objects(created or [ob for ob in bpy.data.objects if ob.as_pointer() not in before])
        raise bad_mesh(f"Blender could not import the {fmt.upper()} file: {_short(exc)}") from exc
    if import_options:
        _finish(context, obj, import_options, has_colors)
    if options.undo_push:
        push_undo(UNDO_MESSAGE)
    return obj


def _finish(context: bpy.types.Context, obj: bpy.types.Object, import_options: dict[str, Any], colors: bool) -> None:
    """Bake and mark as asset; a failure here keeps the imported object and is reported as a warning."""
    warnings = []
    size = int(import_options.get("bake_size") or 0)
    if size:
        try:
            if not colors:
                raise bad_mesh("the mesh has no vertex colours to bake")
            bake_vertex_colors(obj, size, COLOR_ATTRIBUTE, context)
        except (ModelsLabError, RuntimeError) as exc:
            warnings.append(f"texture not baked: {_short(exc)}")
    if import_options.get("as_asset"):
        try:
            if not mark_asset(obj):
                warnings.append("not marked as an asset: this Blender has no asset API")
        except (ModelsLabError, RuntimeError) as exc:
            warnings.append(f"not marked as an asset: {_short(exc)}")
    if warnings:
        obj["modelslab_warning"] = "; ".join(warnings)
        print(f"ModelsLab: {obj.name}: {'; '.join(warnings)}", file=sys.stderr)


def push_undo(message: str) -> None:
    """One undo step for the whole import, where an undo stack exists."""
    try:
        bpy.ops.ed.undo_push(message=message)
    except RuntimeError:
        pass  # no undo stack or context for it (some background setups): nothing to record into


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:200]


def _ensure_collection(scene: bpy.types.Scene) -> bpy.types.Collection:
    collection = bpy.data.collections.get(COLLECTION_NAME)
    if collection is None or collection.library is not None:
        collection = bpy.data.collections.new(COLLECTION_NAME)
    if scene.collection.children.get(collection.name) is None and not _in_scene(scene, collection):
        scene.collection.children.link(collection)
    return collection


def _in_scene(scene: bpy.types.Scene, collection: bpy.types.Collection) -> bool:
    return any(c == collection for c in scene.collection.children_recursive)


def _find_layer_collection(
    layer: bpy.types.LayerCollection, collection: bpy.types.Collection
) -> bpy.types.LayerCollection | None:
    if layer.collection == collection:
        return layer
    for child in layer.children:
        found = _find_layer_collection(child, collection)
        if found is not None:
            return found
    return None


@contextmanager
def _active_collection(view_layer: bpy.types.ViewLayer, collection: bpy.types.Collection) -> Iterator[None]:
    """Make the importer link its objects straight into `collection`."""
    previous = view_layer.active_layer_collection
    layer = _find_layer_collection(view_layer.layer_collection, collection)
    if layer is not None:
        if layer.exclude:
            layer.exclude = False
        view_layer.active_layer_collection = layer
    try:
        yield
    finally:
        if layer is not None and previous is not None:
            view_layer.active_layer_collection = previous


def _operator_properties(op: Any) -> set[str]:
    return {p.identifier for p in op.get_rna_type().properties}


def _run_importer(fmt: str, filepath: str, options: ImportOptions) -> bool:
    """Run Blender's importer for fmt; return True when it applied options.scale itself."""
    version = bpy.app.version
    legacy_axes = False
    legacy_ops: Any = bpy.ops  # import_mesh.* (3.x PLY/STL add-ons) is not in newer stubs
    op: Any
    if fmt == "obj":
        op = bpy.ops.wm.obj_import
    elif fmt == "glb":
        op = bpy.ops.import_scene.gltf
    elif fmt == "ply":
        op = bpy.ops.wm.ply_import if version >= (4, 0, 0) else legacy_ops.import_mesh.ply
        legacy_axes = version < (4, 0, 0)
    elif fmt == "stl":
        op = bpy.ops.wm.stl_import if version >= (4, 1, 0) else legacy_ops.import_mesh.stl
        legacy_axes = version < (4, 1, 0)
    else:
        raise bad_mesh(f"Unsupported mesh format {fmt!r}.")
    kwargs: dict[str, Any] = {"filepath": filepath}
    props = _operator_properties(op) if (options.scale != 1.0 or options.forward_axis != "AUTO") else set()
    scale_done = False
    if options.scale != 1.0 and "global_scale" in props:
        kwargs["global_scale"] = options.scale
        scale_done = True
    if options.forward_axis != "AUTO" and options.up_axis != "AUTO":
        if legacy_axes and "axis_forward" in props:
            kwargs["axis_forward"] = _LEGACY_AXIS[options.forward_axis]
            kwargs["axis_up"] = _LEGACY_AXIS[options.up_axis]
        elif "forward_axis" in props:
            kwargs["forward_axis"] = options.forward_axis
            kwargs["up_axis"] = options.up_axis
    result = op(**kwargs)
    if "FINISHED" not in result:
        raise bad_mesh(f"Blender's {fmt.upper()} importer did not finish ({', '.join(sorted(result))}).")
    return scale_done


def _single_mesh_object(context: bpy.types.Context, created: list[bpy.types.Object]) -> bpy.types.Object:
    meshes = [ob for ob in created if ob.type == "MESH"]
    if not meshes:
        raise bad_mesh("The downloaded file contains no mesh.")
    for ob in meshes:
        if ob.parent is not None:
            world = ob.matrix_world.copy()
            ob.parent = None
            ob.matrix_world = world
    for ob in created:
        if ob.type != "MESH":
            bpy.data.objects.remove(ob, do_unlink=True)
    created[:] = meshes
    if len(meshes) == 1:
        return meshes[0]
    with context.temp_override(active_object=meshes[0], selected_editable_objects=meshes):  # type: ignore[attr-defined]
        bpy.ops.object.join()
    survivors = [ob for ob in meshes if ob.name in bpy.data.objects]
    created[:] = survivors
    return survivors[0]


def _ensure_color_attribute(mesh: bpy.types.Mesh, filepath: str, fmt: str) -> bool:
    """Put the vertex colours in an attribute called `Color`, make it the active/render one; False if none."""
    colors = getattr(mesh, "color_attributes", None)
    if colors is None:
        return False
    attribute = colors.get(COLOR_ATTRIBUTE)
    if attribute is None and len(colors):
        attribute = colors[0]
        attribute.name = COLOR_ATTRIBUTE
    if attribute is None and fmt == "obj":
        attribute = _colors_from_obj(mesh, filepath)
    if attribute is None:
        return False
    colors.active_color = attribute
    if hasattr(colors, "render_color_index"):
        for index, candidate in enumerate(colors):
            if candidate.name == attribute.name:
                colors.render_color_index = index
                colors.active_color_index = index
                break
    return True


_OBJ_VERTEX_LINE = re.compile(rb"^v[ \t]+([^\r\n]*)", re.MULTILINE)


def _colors_from_obj(mesh: bpy.types.Mesh, filepath: str) -> Any:
    """Older OBJ importers drop `v x y z r g b` colours: read them from the file (numpy, one pass)."""
    import numpy as np

    with open(filepath, "rb") as handle:
        head = handle.read(1 << 16)
        first = _OBJ_VERTEX_LINE.search(head)
        if first is None or len(first.group(1).split()) < 6:
            return None
        data = head + handle.read()
    rows = _OBJ_VERTEX_LINE.findall(data)
    if len(rows) != len(mesh.vertices):
        return None
    text = b" ".join(rows).decode("ascii", "replace")
    values = np.fromstring(text, dtype=np.float32, sep=" ")  # text mode: C parsing, much faster than split()
    if values.size % len(rows):
        return None
    values = values.reshape(len(rows), -1)
    if values.shape[1] < 6:
        return None
    srgb = np.clip(values[:, 3:6], 0.0, 1.0)
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    rgba = np.ones((len(rows), 4), dtype=np.float32)
    rgba[:, :3] = linear
    attribute: Any = mesh.color_attributes.new(COLOR_ATTRIBUTE, "FLOAT_COLOR", "POINT")
    attribute.data.foreach_set("color", rgba.ravel())
    return attribute


def _vertex_color_material() -> bpy.types.Material:
    """One shared material: Attribute `Color` -> Principled Base Color (viewport and render)."""
    material = bpy.data.materials.get(MATERIAL_NAME)
    if material is not None and material.library is None and material.node_tree is not None:
        nodes = material.node_tree.nodes
        if any(n.type == "ATTRIBUTE" and n.attribute_name == COLOR_ATTRIBUTE for n in nodes):  # type: ignore[attr-defined]
            return material
    material = bpy.data.materials.new(MATERIAL_NAME)
    if material.node_tree is None:
        material.use_nodes = True
    tree = material.node_tree
    assert tree is not None
    nodes = tree.nodes
    principled = next((n for n in nodes if n.type == "BSDF_PRINCIPLED"), None)
    if principled is None:
        principled = nodes.new("ShaderNodeBsdfPrincipled")
        output = next((n for n in nodes if n.type == "OUTPUT_MATERIAL"), None) or nodes.new("ShaderNodeOutputMaterial")
        tree.links.new(principled.outputs[0], output.inputs[0])
    attribute = nodes.new("ShaderNodeAttribute")
    attribute.attribute_name = COLOR_ATTRIBUTE  # type: ignore[attr-defined]
    attribute.location = (principled.location.x - 300, principled.location.y)
    tree.links.new(attribute.outputs["Color"], principled.inputs["Base Color"])
    material.diffuse_color = (0.8, 0.8, 0.8, 1.0)  # type: ignore[assignment]
    return material


def _assign_material(mesh: bpy.types.Mesh) -> None:
    material = _vertex_color_material()
    mesh.materials.clear()
    mesh.materials.append(material)


def _shade_smooth(mesh: bpy.types.Mesh) -> None:
    shade_smooth = getattr(mesh, "shade_smooth", None)
    if shade_smooth is not None:  # 4.1+
        shade_smooth()
        return
    import numpy as np  # a bool array is copied in one go; a list is read item by item

    mesh.polygons.foreach_set("use_smooth", np.ones(len(mesh.polygons), dtype=bool))
    mesh.update()


def _remove_objects(objects: list[bpy.types.Object]) -> None:
    """Undo a failed import: remove the objects and the meshes only they used."""
    meshes: list[Any] = []
    for ob in objects:
        try:
            if ob.type == "MESH" and ob.data is not None:
                meshes.append(ob.data)
            bpy.data.objects.remove(ob, do_unlink=True)
        except ReferenceError:
            continue
    for mesh in meshes:
        try:
            if mesh.users == 0:
                bpy.data.meshes.remove(mesh)
        except ReferenceError:
            continue


# --- a downloaded job -> the scene ---------------------------------------------------------------------------------
def import_job(local_id: str, context: bpy.types.Context | None = None, *, again: bool = False) -> bpy.types.Object:
    """Import a downloaded job's mesh on the main thread; mark it imported (or failed(bad_mesh)).

    again=True re-imports an already imported job from the cached file (a new object).
    """
    runner = get_runner()
    record = runner.get(local_id)
    if record is None:
        raise invalid_input(f"No job with id {local_id!r}.")
    foreign = ownership(record) == OTHER
    if foreign and not again:
        raise invalid_input(
            f"{record.name} is running in another Blender (or batch) that shares this folder.",
            "Import it there, or wait: when that Blender closes, this one takes the job over.",
        )
    allowed = (JobState.DOWNLOADED, JobState.IMPORTED) if again else (JobState.DOWNLOADED,)
    if record.state not in allowed or not record.file_path:
        raise invalid_input(
            f"Job {record.name} has no downloaded mesh to import (it is {record.state}).",
            "Wait for the download, or resume the job." if record.state not in TERMINAL_STATES else None,
        )
    if not os.path.isfile(record.file_path):
        raise ModelsLabError(
            Category.EXPIRED,
            f"The downloaded mesh of {record.name} is no longer in the cache.",
            "Resume the job to download it again (outputs stay on the server for 24 hours).",
        )
    fmt = str(record.params.get("output_format") or Path(record.file_path).suffix.lstrip(".") or "obj")
    provenance = Provenance(
        job_id=record.local_id,
        remote_id=record.remote_id or "",
        source=str(record.extra.get("original_source") or record.source),
        params={k: v for k, v in record.params.items() if k != "init_image"},
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created_at)),
    )
    try:
        with _main_window_context(context) as ctx:
            obj = import_mesh(
                ctx,
                record.file_path,
                fmt,
                name=record.name,
                options=ImportOptions.from_settings(settings()),
                provenance=provenance,
                import_options=check_import_options(record.extra.get("import_options")),
            )
    except ModelsLabError as exc:
        if record.state == JobState.DOWNLOADED:
            update_row(runner.mark_failed(local_id, exc))
        raise
    if foreign:  # a copy from the cache: the job and its journal record stay the other process's
        return obj
    update_row(runner.mark_imported(local_id, obj.name))
    drop_prepared_upload(record)
    return obj


class _main_window_context:
    """Yield a context with a window when one exists (timer callbacks run without one)."""

    def __init__(self, context: bpy.types.Context | None) -> None:
        self.context = context or bpy.context
        self.override: Any = None

    def __enter__(self) -> bpy.types.Context:
        ctx = self.context
        if getattr(ctx, "window", None) is None and not bpy.app.background:
            wm = ctx.window_manager
            if wm is not None and len(wm.windows):
                window = wm.windows[0]
                self.override = ctx.temp_override(window=window)  # type: ignore[attr-defined]
                self.override.__enter__()
                return bpy.context
        return ctx

    def __exit__(self, *exc: object) -> None:
        if self.override is not None:
            self.override.__exit__(*exc)
