"""One object -> a .glb, .fbx or .obj file through Blender's own exporters, its textures embedded (glb, fbx) or
written beside it (obj)."""

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bpy

from ..api.errors import invalid_input

EXPORT_FORMATS = ("glb", "fbx", "obj")


def check_export_format(fmt: str) -> str:
    """The normalised export format; ModelsLabError(invalid_input) naming the field when unknown."""
    text = (fmt or "").strip().lower().lstrip(".")
    if text == "gltf":
        text = "glb"
    if text not in EXPORT_FORMATS:
        raise invalid_input(
            f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}.", "Use glb, fbx or obj."
        )
    return text


def export_object(obj: bpy.types.Object, path: str | Path, fmt: str | None = None) -> Path:
    """Write obj alone (modifiers applied, world transform kept) to path in fmt (default: path's suffix).

    Baked textures are embedded in .glb/.fbx; for .obj they are written beside it and named in its .mtl.
    Returns the written file's path.
    """
    target = Path(path).expanduser().absolute()
    kind = check_export_format(fmt or target.suffix)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _only_selected(obj), _images_beside(obj, target, kind == "obj"):
        kwargs: dict[str, Any]
        if kind == "glb":
            gltf: Any = bpy.ops.export_scene.gltf
            kwargs = {"filepath": str(target), "export_format": "GLB", "use_selection": True, "export_apply": True}
            if _object_images(obj):  # baked: the texture alone (importers multiply COLOR_0 into it)
                kwargs.update(_no_vertex_colors(gltf))
            result = gltf(**kwargs)
        elif kind == "fbx":
            result = bpy.ops.export_scene.fbx(
                filepath=str(target),
                use_selection=True,
                use_mesh_modifiers=True,
                path_mode="COPY",
                embed_textures=True,
            )
        else:
            op: Any = bpy.ops.wm.obj_export
            kwargs = {
                "filepath": str(target),
                "export_selected_objects": True,
                "apply_modifiers": True,
                "export_materials": True,
                "path_mode": "STRIP",
            }
            props = {p.identifier for p in op.get_rna_type().properties}
            if "export_colors" in props:
                kwargs["export_colors"] = True
            result = op(**{k: v for k, v in kwargs.items() if k in props})
    if "FINISHED" not in result or not target.is_file():
        raise invalid_input(f"Blender's {kind.upper()} exporter did not write {target.name} ({sorted(result)}).")
    return target


def _no_vertex_colors(gltf: Any) -> dict[str, Any]:
    """The glTF exporter's switch for leaving vertex colours out (renamed in Blender 4.2)."""
    props = {p.identifier for p in gltf.get_rna_type().properties}
    if "export_vertex_color" in props:
        return {"export_vertex_color": "NONE"}
    return {"export_colors": False} if "export_colors" in props else {}


def _object_images(obj: bpy.types.Object) -> list[Any]:
    images = []
    for slot in obj.material_slots:
        tree = slot.material.node_tree if slot.material is not None else None
        for node in tree.nodes if tree is not None else ():
            image = getattr(node, "image", None) if node.type == "TEX_IMAGE" else None
            if image is not None and image not in images:
                images.append(image)
    return images


@contextmanager
def _images_beside(obj: bpy.types.Object, target: Path, enabled: bool) -> Iterator[None]:
    """For OBJ: write each texture as <stem>_<image>.png beside target and point the image there meanwhile."""
    restore: list[tuple[Any, str]] = []
    try:
        for image in _object_images(obj) if enabled else []:
            beside = target.with_name(f"{target.stem}_{_file_part(image.name)}.png")
            if image.packed_file is not None:
                beside.write_bytes(image.packed_file.data)
            else:
                source = Path(bpy.path.abspath(image.filepath))
                if not source.is_file():
                    continue
                beside = beside.with_suffix(source.suffix)
                shutil.copyfile(source, beside)
            restore.append((image, image.filepath_raw))
            image.filepath_raw = str(beside)
        yield
    finally:
        for image, previous in restore:
            image.filepath_raw = previous


def _file_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "texture"


@contextmanager
def _only_selected(obj: bpy.types.Object) -> Iterator[None]:
    view_layer: Any = bpy.context.view_layer
    selected = [ob for ob in view_layer.objects if ob.select_get()]
    active = view_layer.objects.active
    hidden = obj.hide_get()
    for ob in selected:
        ob.select_set(False)
    if hidden:
        obj.hide_set(False)
    obj.select_set(True)
    view_layer.objects.active = obj
    try:
        yield
    finally:
        obj.select_set(False)
        if hidden:
            obj.hide_set(True)
        for ob in selected:
            try:
                ob.select_set(True)
            except ReferenceError:
                continue
        view_layer.objects.active = active
