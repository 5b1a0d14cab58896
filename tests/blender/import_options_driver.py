"""Scenarios of the import-options test, run INSIDE a fresh Blender process (the bpy module).

Two ways in:
- `<bpy venv python> import_options_driver.py SPEC.json`: like scenario_driver.py (installs and enables the built
  extension, applies the preferences), running one scenario function of this module;
- `<bpy venv python> import_options_driver.py --inspect KIND PATH [REFERENCE]`: a clean bpy without the add-on
  reads back a file the add-on wrote (a .glb, or an asset library .blend) and reports what it finds.
Every scenario measures and reports numbers from the scene; the test module asserts.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
INSPECT_MARKER = "@@MODELSLAB_INSPECT@@ "


# --- measuring (both kinds of process) --------------------------------------------------------------------------
def world_vertices(obj: Any) -> Any:
    """The object's evaluated vertices in world space (numpy N x 3)."""
    import bpy
    import numpy as np

    bpy.context.view_layer.update()
    mesh = obj.data
    coords = np.empty(len(mesh.vertices) * 3)
    mesh.vertices.foreach_get("co", coords)
    matrix = np.array(obj.matrix_world)
    return coords.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]


def to_srgb(linear: Any) -> Any:
    import numpy as np

    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)


def box_report(obj: Any) -> dict[str, Any]:
    """World bounding box, dimensions, origin, scale and rotation of obj."""
    import numpy as np

    world = world_vertices(obj)
    low, high = world.min(axis=0), world.max(axis=0)
    return {
        "name": obj.name,
        "low": low.tolist(),
        "high": high.tolist(),
        "size": (high - low).tolist(),
        "centre_xy": ((low[:2] + high[:2]) / 2).tolist(),
        "origin": list(obj.matrix_world.translation),
        "scale": list(obj.matrix_world.to_scale()),
        "rotation_z_degrees": math.degrees(obj.matrix_world.to_euler()[2]),
        "vertex_mean": np.asarray(world.mean(axis=0)).tolist(),
        "import_info": json.loads(obj.get("modelslab_import", "{}")),
        "warning": obj.get("modelslab_warning"),
        "job_id": obj.get("modelslab_job_id"),
    }


def sample_texture(image: Any, uvs: Any) -> Any:
    """The image's pixels (as stored, sRGB for byte images) at the given UVs (nearest texel)."""
    import numpy as np

    width, height = image.size
    pixels = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    pixels = pixels.reshape(height, width, 4)
    x = np.clip((uvs[:, 0] % 1.0) * width, 0, width - 1).astype(int)
    y = np.clip((uvs[:, 1] % 1.0) * height, 0, height - 1).astype(int)
    return pixels[y, x, :3]


def material_images(obj: Any) -> list[dict[str, Any]]:
    """Images of the object's materials that feed a Base Color, with their size and packing."""
    found = []
    for slot in obj.material_slots:
        material = slot.material
        if material is None or material.node_tree is None:
            continue
        for node in _upstream(material.node_tree, "Base Color"):
            if node.type == "TEX_IMAGE" and node.image is not None:
                image = node.image
                found.append(
                    {
                        "material": material.name,
                        "image": image.name,
                        "size": list(image.size),
                        "packed": image.packed_file is not None,
                        "has_data": bool(image.has_data) or image.packed_file is not None,
                    }
                )
    return found


def _upstream(tree: Any, socket_name: str) -> list[Any]:
    """Every node feeding the Principled BSDF's socket, directly or through other nodes."""
    principled = [n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"]
    found: list[Any] = []
    todo = [link.from_node for link in tree.links if link.to_node in principled and link.to_socket.name == socket_name]
    while todo:
        node = todo.pop()
        if node not in found:
            found.append(node)
            todo.extend(link.from_node for link in tree.links if link.to_node == node)
    return found


def attribute_nodes_linked(obj: Any) -> bool:
    return any(
        node.type == "ATTRIBUTE" and any(output.is_linked for output in node.outputs)
        for slot in obj.material_slots
        if slot.material is not None and slot.material.node_tree is not None
        for node in slot.material.node_tree.nodes
    )


# --- scenarios (the extension enabled) ----------------------------------------------------------------------------
def _script_api(context: Any) -> Any:
    """The script API (`import modelslab` in the legacy add-on; the package's `scripting` for an extension)."""
    return sys.modules[f"{context.module}.blender.scripting"]


def _new_objects(before: set[str]) -> list[Any]:
    import bpy

    return [bpy.data.objects[name] for name in sorted({o.name for o in bpy.data.objects} - before)]


def _generate(props: dict[str, Any]) -> dict[str, Any]:
    """Run the operator; report its result or error and the objects it made."""
    import bpy

    before = {o.name for o in bpy.data.objects}
    outcome: dict[str, Any] = {"result": None, "error": None}
    try:
        outcome["result"] = sorted(bpy.ops.modelslab.image_to_3d("EXEC_DEFAULT", **props))
    except (RuntimeError, TypeError, ValueError) as exc:
        outcome["error"] = str(exc)
    outcome["objects"] = [obj.name for obj in _new_objects(before)]
    return outcome


def placement(context: Any, image: str, params: dict[str, Any], cursor: list[float]) -> dict[str, Any]:
    """Ground + height, facing X, fit to a rotated placeholder, a re-import, and refused values."""
    import bpy

    modelslab = _script_api(context)
    scene = bpy.context.scene
    scene.cursor.location = cursor
    out: dict[str, Any] = {}
    # nothing else selected: the default scene of the bpy module may have a selected cube
    for obj in bpy.context.selected_objects:
        obj.select_set(False)
    plain = _generate({"image": image, **params})
    out["plain"] = {**plain, "box": box_report(bpy.data.objects[plain["objects"][0]])}
    grounded = _generate({"image": image, **params, "ground": True, "target_height": 1.5})
    out["grounded"] = {**grounded, "box": box_report(bpy.data.objects[grounded["objects"][0]])}
    placing = importlib.import_module(f"{context.module}.blender.placement")
    out["grounded"]["size_text"] = placing.applied_size_text(bpy.data.objects[grounded["objects"][0]])
    facing = _generate({"image": image, **params, "ground": True, "target_height": 1.5, "facing": "X"})
    out["facing_x"] = {**facing, "box": box_report(bpy.data.objects[facing["objects"][0]])}

    # re-import: the job's stored options are applied again (the cursor moved meanwhile)
    scene.cursor.location = (cursor[0] + 2.0, cursor[1], cursor[2] + 0.25)
    job_id = bpy.data.objects[grounded["objects"][0]]["modelslab_job_id"]
    again = modelslab.import_job(job_id)
    out["reimported"] = {"box": box_report(again), "cursor": list(scene.cursor.location)}

    # a placeholder: a box rotated 30 degrees about Z, not uniformly scaled, lifted off the floor
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(3.0, -1.0, 0.4), rotation=(0.0, 0.0, math.radians(30)))
    placeholder = bpy.context.active_object
    placeholder.name = "Placeholder"
    placeholder.scale = (0.6, 0.9, 1.4)
    bpy.context.view_layer.update()
    fit = _generate({"image": image, **params, "fit_to_selected": True, "ground": True})
    result = bpy.data.objects[fit["objects"][0]]
    frame = placeholder.matrix_world.to_quaternion().to_matrix()
    local = (world_vertices(result) - list(placeholder.matrix_world.translation)) @ list(map(list, frame))
    # local: the vertices along the placeholder's own axes, relative to its centre
    out["fit"] = {
        **fit,
        "box": box_report(result),
        "in_placeholder_frame": {"low": local.min(axis=0).tolist(), "high": local.max(axis=0).tolist()},
        "placeholder_size": list(placeholder.dimensions),
        "placeholder_hidden": placeholder.hide_get(),
        "placeholder_hidden_render": placeholder.hide_render,
        "placeholder_exists": "Placeholder" in bpy.data.objects,
        "selected_after": [o.name for o in bpy.context.selected_objects],
    }

    return out


def refusals(context: Any, image: str, params: dict[str, Any]) -> dict[str, Any]:
    """Bad import options through the operator and the validation function: each refused, nothing sent."""
    import bpy

    modelslab = _script_api(context)
    out: dict[str, Any] = {}
    for obj in bpy.context.selected_objects:
        obj.select_set(False)
    bpy.context.view_layer.objects.active = None
    bad = {
        "negative_height": {"target_height": -1.0},
        "bake_too_small": {"bake_size": 100},
        "bake_too_large": {"bake_size": 8192},
        "fit_nothing_selected": {"fit_to_selected": True},
        "facing_unknown": {"facing": "Z"},
    }
    out["bad"] = {name: _generate({"image": image, **params, **values}) for name, values in bad.items()}
    out["script_check"] = {}
    checks = sys.modules[f"{context.module}.blender.placement"]
    for name, values in {
        "negative_height": {"target_height": -2},
        "bake": {"bake_size": 4097},
        "facing": {"facing": "Z"},
    }.items():
        try:
            checks.check_import_options(values)
            out["script_check"][name] = None
        except modelslab.ModelsLabError as exc:
            out["script_check"][name] = {"category": str(exc.category), "message": exc.message, "fix": exc.fix}
    out["objects_at_end"] = len(bpy.data.objects)
    return out


def bake_export(context: Any, image: str, params: dict[str, Any], size: int, out_dir: str) -> dict[str, Any]:
    """Generate with a baked texture; report UVs, image and material; export glb/fbx/obj; save the reference
    colours (world position + sRGB colour per vertex) for the clean-bpy check."""
    import bpy
    import numpy as np

    engine_before = bpy.context.scene.render.engine
    made = _generate({"image": image, **params, "bake_size": size})
    out: dict[str, Any] = {"generate": made, "render_engine_before": engine_before}
    obj = bpy.data.objects[made["objects"][0]]
    mesh = obj.data
    out["uv_layers"] = [layer.name for layer in mesh.uv_layers]
    uvs = np.empty(len(mesh.loops) * 2, dtype=np.float32)
    if mesh.uv_layers:
        mesh.uv_layers[0].data.foreach_get("uv", uvs)
    uvs = uvs.reshape(-1, 2)
    out["uv_range"] = [uvs.min(axis=0).tolist(), uvs.max(axis=0).tolist()]
    out["images"] = material_images(obj)
    out["attribute_still_linked"] = attribute_nodes_linked(obj)
    out["warning"] = obj.get("modelslab_warning")
    out["render_engine_after"] = bpy.context.scene.render.engine
    colors = np.empty(len(mesh.vertices) * 4, dtype=np.float32)
    mesh.color_attributes["Color"].data.foreach_get("color", colors)
    srgb = to_srgb(colors.reshape(-1, 4)[:, :3])
    # the baked texture read back at each corner's UV, against that corner's vertex colour
    if out["images"]:
        baked = bpy.data.images[out["images"][0]["image"]]
        corner_vertices = np.empty(len(mesh.loops), dtype=np.int64)
        mesh.loops.foreach_get("vertex_index", corner_vertices)
        sampled = sample_texture(baked, uvs)
        difference = np.abs(sampled - srgb[corner_vertices]).mean(axis=1)
        out["in_scene_corner_difference"] = {
            "median": float(np.median(difference)),
            "p95": float(np.percentile(difference, 95)),
        }
    reference = Path(out_dir) / "reference.npz"
    np.savez(reference, positions=world_vertices(obj), colors=srgb)
    out["reference"] = str(reference)
    out["vertex_color_mean_srgb"] = srgb.mean(axis=0).tolist()
    exporter = importlib.import_module(f"{context.module}.blender.export")
    out["exports"] = {}
    for fmt in ("glb", "fbx", "obj"):
        path = exporter.export_object(obj, Path(out_dir) / f"model.{fmt}", fmt)
        out["exports"][fmt] = str(path)
    out["files"] = sorted(p.name for p in Path(out_dir).iterdir())
    mtl = Path(out_dir) / "model.mtl"
    out["mtl"] = mtl.read_text(encoding="utf-8") if mtl.is_file() else None
    return out


def assets(context: Any, image: str, params: dict[str, Any], blend_path: str, library_dir: str) -> dict[str, Any]:
    """Generate one result as an asset (unsaved file), save the file; generate another plainly; write both into
    an asset library folder."""
    import bpy

    marked = _generate({"image": image, **params, "as_asset": True, "seed": 42})
    plain = _generate({"image": image, **params})
    obj = bpy.data.objects[marked["objects"][0]]
    other = bpy.data.objects[plain["objects"][0]]
    data = obj.asset_data
    out: dict[str, Any] = {
        "marked": marked,
        "plain": plain,
        "asset": None
        if data is None
        else {
            "tags": [tag.name for tag in data.tags],
            "catalog_id": data.catalog_id,
            "description": data.description,
            "preview_size": list(obj.preview.image_size) if obj.preview else None,
        },
        "job_id": obj.get("modelslab_job_id"),
        "warning": obj.get("modelslab_warning"),
        "other_is_asset_before": other.asset_data is not None,
    }
    catalog = Path(blend_path).parent / "blender_assets.cats.txt"
    out["catalog_before_save"] = catalog.is_file()
    bpy.ops.wm.save_as_mainfile(filepath=blend_path)
    out["catalog_after_save"] = catalog.read_text(encoding="utf-8") if catalog.is_file() else None
    writer = importlib.import_module(f"{context.module}.blender.assets")
    library = writer.write_asset_library([obj, other], library_dir)
    out["library"] = str(library)
    out["other_is_asset_after"] = other.asset_data is not None
    out["catalog_id_constant"] = writer.CATALOG_ID
    return out


# --- the clean bpy: read files back ------------------------------------------------------------------------------
def inspect_glb(path: str, reference: str) -> dict[str, Any]:
    """Import a .glb into an empty scene; its material's image sampled at every vertex's UVs against the nearest
    reference vertex's colour."""
    import bpy
    import numpy as np
    from mathutils import kdtree

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=path)
    meshes = [obj for obj in bpy.data.objects if obj.type == "MESH"]
    out: dict[str, Any] = {"meshes": [obj.name for obj in meshes]}
    obj = meshes[0]
    mesh = obj.data
    out["images"] = material_images(obj)
    out["color_attributes"] = [a.name for a in mesh.color_attributes]
    if not out["images"] or not mesh.uv_layers:
        return out
    image = bpy.data.images[out["images"][0]["image"]]
    uvs = np.empty(len(mesh.loops) * 2, dtype=np.float32)
    mesh.uv_layers[0].data.foreach_get("uv", uvs)
    corner_vertices = np.empty(len(mesh.loops), dtype=np.int64)
    mesh.loops.foreach_get("vertex_index", corner_vertices)
    sampled = sample_texture(image, uvs.reshape(-1, 2))
    data = np.load(reference)
    tree = kdtree.KDTree(len(data["positions"]))
    for index, position in enumerate(data["positions"]):
        tree.insert(position, index)
    tree.balance()
    world = world_vertices(obj)
    nearest = np.array([tree.find(world[v])[1] for v in corner_vertices])
    distances = np.array([tree.find(world[v])[2] for v in range(0, len(world), max(1, len(world) // 200))])
    expected = data["colors"][nearest]
    difference = np.abs(sampled - expected).mean(axis=1)
    out["position_match_max"] = float(distances.max())
    out["texture_mean_srgb"] = sampled.mean(axis=0).tolist()
    out["reference_mean_srgb"] = expected.mean(axis=0).tolist()
    out["mean_colour_difference"] = float(np.abs(sampled.mean(axis=0) - expected.mean(axis=0)).max())
    out["corner_difference"] = {"median": float(np.median(difference)), "p95": float(np.percentile(difference, 95))}
    return out


def inspect_library(path: str) -> dict[str, Any]:
    """Open an asset library .blend in a clean bpy: its asset objects (tags, catalog, description, preview)."""
    import bpy
    import numpy as np

    with bpy.data.libraries.load(path, assets_only=True) as (data_from, _data_to):
        listed = sorted(data_from.objects)
    bpy.ops.wm.open_mainfile(filepath=path)
    found = []
    for obj in bpy.data.objects:
        data = obj.asset_data
        preview = obj.preview
        pixels = np.array(preview.image_pixels_float[:]) if preview is not None else np.zeros(0)
        found.append(
            {
                "name": obj.name,
                "is_asset": data is not None,
                "tags": [tag.name for tag in data.tags] if data else [],
                "catalog_id": data.catalog_id if data else None,
                "description": data.description if data else None,
                "preview_size": list(preview.image_size) if preview is not None else None,
                "preview_opaque_fraction": float((pixels[3::4] > 0.5).mean()) if pixels.size else 0.0,
                "preview_colour_spread": float(pixels.reshape(-1, 4)[:, :3].std()) if pixels.size else 0.0,
                "vertices": len(obj.data.vertices) if obj.type == "MESH" else None,
            }
        )
    catalog = Path(path).parent / "blender_assets.cats.txt"
    return {
        "assets_listed": listed,
        "objects": found,
        "catalog_file": catalog.read_text(encoding="utf-8") if catalog.is_file() else None,
    }


def _inspect(kind: str, args: list[str]) -> int:
    import traceback

    payload: dict[str, Any] = {"ok": False}
    try:
        payload["result"] = inspect_glb(*args) if kind == "glb" else inspect_library(*args)
        payload["ok"] = True
    except BaseException:
        payload["traceback"] = traceback.format_exc()
    sys.stdout.write(INSPECT_MARKER + json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()
    return 0 if payload["ok"] else 1


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--inspect":
        sys.exit(_inspect(sys.argv[2], sys.argv[3:]))
    # Never run against a real user's Blender configuration: HOME must be the test's temporary one.
    if not os.environ.get("MODELSLAB_TEST_HOME") or os.environ.get("MODELSLAB_TEST_HOME") != os.environ.get("HOME"):
        sys.exit("import_options_driver.py: HOME is not the test's temporary user dir; refusing to run")
    sys.path.insert(0, str(HERE))
    import scenario_driver
    import scenarios

    for _name in ("placement", "refusals", "bake_export", "assets"):
        setattr(scenarios, _name, globals()[_name])  # scenario_driver runs scenarios.<name>
    sys.exit(scenario_driver.main())
