"""Results as Asset Browser assets: marked, with a Workbench-rendered preview, tags and a description, in a
"ModelsLab" catalog; and a library .blend of several of them with its catalog file beside it.

Catalogs live in `blender_assets.cats.txt` beside the .blend (Blender's asset library format). Blender's Python
API has no catalog functions, so the file is written here: beside the saved .blend at once, or when an unsaved
file is saved for the first time. Asset marking needs Blender 3.0+ (the add-on's legacy floor, 3.4, has it);
on a Blender without it, marking is skipped with a note.
"""

import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import bpy

CATALOG_NAME = "ModelsLab"
# One fixed id, so every file and library the add-on writes shares the same "ModelsLab" catalog.
CATALOG_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://modelslab.com/blender/asset-catalog/ModelsLab"))
CATALOG_FILE = "blender_assets.cats.txt"
PREVIEW_SIZE = 128
MAX_TAG_LENGTH = 63  # Blender's tag names hold 64 bytes
LIBRARY_NAME = "ModelsLab Assets"
_CATALOG_HEADER = (
    "# This is an Asset Catalog Definition file for Blender.\n"
    "#\n"
    "# Empty lines and lines starting with `#` will be ignored.\n"
    "# The first non-ignored line should be the version indicator.\n"
    '# Other lines are of the format "UUID:catalog/path/for/assets:simple catalog name"\n'
    "\nVERSION 1\n\n"
)


def can_mark_assets() -> bool:
    """Whether this Blender has the asset API (3.0+)."""
    rna: Any = bpy.types.ID.bl_rna
    return "asset_mark" in rna.functions


def mark_asset(obj: bpy.types.Object, *, preview: bool = True) -> bool:
    """Mark obj as an asset in the ModelsLab catalog with tags and a description taken from its modelslab_*
    properties (source, seed, job id, resolution) and a rendered preview; False when this Blender cannot."""
    if not can_mark_assets():
        return False
    obj.asset_mark()
    data: Any = obj.asset_data
    info = _provenance(obj)
    data.catalog_id = CATALOG_ID
    data.description = info["description"]
    if hasattr(data, "author"):
        data.author = "ModelsLab"
    existing = {tag.name for tag in data.tags}
    for tag in info["tags"]:
        if tag not in existing:
            data.tags.new(tag, skip_if_exists=True)
    if preview:
        render_preview(obj)
    write_catalog_when_saved()
    return True


def _provenance(obj: bpy.types.Object) -> dict[str, Any]:
    """Tags and description from the custom properties the importer wrote."""
    try:
        params = json.loads(str(obj.get("modelslab_params") or "{}"))
    except ValueError:
        params = {}
    source = str(obj.get("modelslab_source") or "")
    source_name = os.path.basename(source.split("?", 1)[0].rstrip("/")) or source
    prompt = str(params.get("prompt") or "")
    seed = params.get("seed")
    job_id = str(obj.get("modelslab_job_id") or "")
    resolution = params.get("resolution")
    tags = ["ModelsLab"]
    if prompt:
        tags.append(f"prompt: {prompt}")
    if source_name:
        tags.append(f"source: {source_name}")
    tags.append(f"seed: {seed}" if seed else "seed: random")
    if job_id:
        tags.append(f"job: {job_id}")
    if resolution:
        tags.append(f"resolution: {resolution}")
    what = f'prompt "{prompt}"' if prompt else (source_name or "an image")
    details = ", ".join(
        part for part in (f"resolution {resolution}" if resolution else "", f"seed {seed}" if seed else "") if part
    )
    description = f"ModelsLab image-to-3D from {what}" + (f" ({details})" if details else "")
    if job_id:
        description += f"; job {job_id}"
    return {"tags": [tag[:MAX_TAG_LENGTH] for tag in tags], "description": description}


# --- preview -------------------------------------------------------------------------------------------------------
def render_preview(obj: bpy.types.Object, size: int = PREVIEW_SIZE) -> None:
    """Render obj alone with Workbench (vertex or texture colours, transparent background) into its preview."""
    from mathutils import Vector

    scene = bpy.data.scenes.new("ModelsLab Preview")
    camera_data = bpy.data.cameras.new("ModelsLab Preview")
    camera = bpy.data.objects.new("ModelsLab Preview", camera_data)
    handle, path = tempfile.mkstemp(suffix=".png", prefix="modelslab-preview-")
    os.close(handle)
    image = None
    try:
        scene.collection.objects.link(obj)
        scene.collection.objects.link(camera)
        scene.camera = camera
        render: Any = scene.render
        render.engine = "BLENDER_WORKBENCH"
        render.resolution_x = render.resolution_y = size
        render.resolution_percentage = 100
        render.film_transparent = True
        render.image_settings.file_format = "PNG"
        render.image_settings.color_mode = "RGBA"
        render.filepath = path
        display: Any = scene.display
        shading: Any = display.shading
        shading.light = "STUDIO"
        shading.color_type = "TEXTURE" if _has_texture(obj) else "VERTEX"
        view_settings: Any = scene.view_settings
        view_settings.view_transform = "Standard"
        corners = [obj.matrix_world @ Vector(corner) for corner in obj.bound_box]
        centre = sum(corners, Vector()) / 8
        radius = max((c - centre).length for c in corners) or 1.0
        view = Vector((0.55, -1.0, 0.45)).normalized()  # three-quarter front view, from -Y
        camera_data.type = "ORTHO"
        camera_data.ortho_scale = radius * 2.05
        camera_data.clip_start = radius * 0.01
        camera_data.clip_end = radius * 10
        camera.location = centre + view * radius * 4
        camera.rotation_euler = (-view).to_track_quat("-Z", "Y").to_euler()
        bpy.ops.render.render(write_still=True, scene=scene.name)
        image = bpy.data.images.load(path)
        loaded: Any = image
        pixels = loaded.pixels[:]
        preview: Any = obj.preview_ensure()
        preview.image_size = tuple(loaded.size)
        preview.image_pixels_float.foreach_set(pixels)
    finally:
        if image is not None:
            bpy.data.images.remove(image)
        bpy.data.objects.remove(camera)
        bpy.data.cameras.remove(camera_data)
        bpy.data.scenes.remove(scene)
        os.unlink(path)


def _has_texture(obj: bpy.types.Object) -> bool:
    return any(
        node.type == "TEX_IMAGE" and getattr(node, "image", None) is not None
        for slot in obj.material_slots
        if slot.material is not None and slot.material.node_tree is not None
        for node in slot.material.node_tree.nodes
    )


# --- catalogs ------------------------------------------------------------------------------------------------------
def write_catalog_file(directory: str | Path) -> Path:
    """Make sure directory/blender_assets.cats.txt defines the ModelsLab catalog (other catalogs are kept)."""
    path = Path(directory) / CATALOG_FILE
    line = f"{CATALOG_ID}:{CATALOG_NAME}:{CATALOG_NAME}\n"
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        if CATALOG_ID not in text:
            path.write_text(text + ("" if text.endswith("\n") else "\n") + line, encoding="utf-8")
    else:
        path.write_text(_CATALOG_HEADER + line, encoding="utf-8")
    return path


def write_catalog_when_saved() -> None:
    """Write the catalog file beside the .blend now if it is saved, else once it is."""
    if bpy.data.filepath:
        write_catalog_file(Path(bpy.data.filepath).parent)
    elif _write_catalog_on_save not in bpy.app.handlers.save_post:
        bpy.app.handlers.save_post.append(_write_catalog_on_save)


@bpy.app.handlers.persistent
def _write_catalog_on_save(*_args: Any) -> None:
    if not bpy.data.filepath:
        return
    if any(ob.asset_data is not None and ob.asset_data.catalog_id == CATALOG_ID for ob in bpy.data.objects):
        write_catalog_file(Path(bpy.data.filepath).parent)
    unregister()


def unregister() -> None:
    """Remove the save handler (add-on disabled, or its work done)."""
    if _write_catalog_on_save in bpy.app.handlers.save_post:
        bpy.app.handlers.save_post.remove(_write_catalog_on_save)


# --- a library file ------------------------------------------------------------------------------------------------
def write_asset_library(objects: list[bpy.types.Object], directory: str | Path, name: str = LIBRARY_NAME) -> Path:
    """Write objects as ModelsLab assets (previews, tags, catalog) into a new .blend in directory, with the
    catalog file beside it; an existing .blend is never overwritten (a numbered name is used). Returns its path.

    Objects not marked yet are marked for the write and unmarked again afterwards.
    """
    folder = Path(directory).expanduser().absolute()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.blend"
    number = 2
    while target.exists():
        target = folder / f"{name} {number}.blend"
        number += 1
    was_asset = {ob.name: ob.asset_data is not None for ob in objects}
    try:
        for ob in objects:
            if ob.asset_data is None or ob.preview is None:
                mark_asset(ob)
        bpy.data.libraries.write(str(target), set(objects), fake_user=True, compress=True)
    finally:
        for ob in objects:
            if not was_asset.get(ob.name, True):
                ob.asset_clear()
    write_catalog_file(folder)
    return target
