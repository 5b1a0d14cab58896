"""The import's result measured against the downloaded file, run INSIDE a fresh Blender process (the bpy module).

`<bpy venv python> import_result_driver.py SPEC.json`: like scenario_driver.py (installs and enables the built
extension, applies the preferences), running one scenario function of this module. The scenario reads the
server's OBJ itself (plain Python, no Blender) and reports how far the object in the scene is from it; the test
module asserts.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def read_obj(path: str) -> tuple[list[tuple[float, float, float]], list[tuple[float, float, float]], int]:
    """(positions, sRGB colours, face count) of a `v x y z r g b` / `f a b c` OBJ, read line by line."""
    positions, colors, faces = [], [], 0
    with open(path, encoding="ascii") as handle:
        for line in handle:
            fields = line.split()
            if fields and fields[0] == "v":
                numbers = [float(value) for value in fields[1:]]
                positions.append((numbers[0], numbers[1], numbers[2]))
                colors.append((numbers[3], numbers[4], numbers[5]))
            elif fields and fields[0] == "f":
                faces += 1
    return positions, colors, faces


def srgb_to_linear(value: float) -> float:
    value = min(max(value, 0.0), 1.0)
    return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4


def import_result(context: Any, image: str, params: dict[str, Any]) -> dict[str, Any]:
    """Generate through the operator; compare the object with the file it was imported from."""
    import bpy
    import numpy as np
    import scenarios

    attempt = scenarios.run_operator(image=image, **params)
    out: dict[str, Any] = {"error": attempt["error"], "result": attempt["result"]}
    if attempt["error"] or len(attempt["new_objects"]) != 1:
        out["new_objects"] = [o["name"] for o in attempt["new_objects"]]
        return out
    obj = bpy.data.objects[attempt["new_objects"][0]["name"]]
    mesh = obj.data
    path = scenarios.journal_records(context)[0]["file_path"]
    positions, srgb, faces = read_obj(path)
    out["file"] = {"vertices": len(positions), "faces": faces}
    out["mesh"] = {"vertices": len(mesh.vertices), "faces": len(mesh.polygons)}

    smooth = np.zeros(len(mesh.polygons), dtype=bool)
    mesh.polygons.foreach_get("use_smooth", smooth)
    out["smooth_faces"] = int(smooth.sum())

    # The same file through Blender's own importer alone, for reference: the add-on's object has its positions, up
    # to the shift that puts the origin at the bottom (ground), so positions are compared relative to vertex 0.
    coords = np.empty(len(mesh.vertices) * 3, dtype=np.float64)
    mesh.vertices.foreach_get("co", coords)
    before = set(bpy.data.objects)
    bpy.ops.wm.obj_import(filepath=path)
    reference = next(o for o in bpy.data.objects if o not in before)
    expected = np.empty(len(reference.data.vertices) * 3, dtype=np.float64)
    reference.data.vertices.foreach_get("co", expected)
    out["reference_vertices"] = len(reference.data.vertices)
    if len(expected) == len(coords):
        coords, expected = coords.reshape(-1, 3), expected.reshape(-1, 3)
        out["max_position_error"] = float(np.abs((coords - coords[0]) - (expected - expected[0])).max())
    reference_mesh = reference.data
    bpy.data.objects.remove(reference)
    bpy.data.meshes.remove(reference_mesh)

    colors = mesh.color_attributes
    out["color_attributes"] = [(a.name, a.domain, a.data_type) for a in colors]
    out["active_color"] = colors.active_color.name if colors.active_color is not None else None
    if hasattr(colors, "render_color_index"):
        out["render_color"] = colors[colors.render_color_index].name if len(colors) else None
    linear = np.array([[srgb_to_linear(c) for c in rgb] + [1.0] for rgb in srgb], dtype=np.float64)
    attribute = colors.get("Color")
    if attribute is not None and len(linear) == len(mesh.vertices):
        values = np.empty(len(mesh.vertices) * 4, dtype=np.float32)
        attribute.data.foreach_get("color", values)
        out["max_color_error"] = float(np.abs(values.reshape(-1, 4) - linear).max())
        # The add-on's own reading of the file's colours (used where Blender's OBJ importer drops them) gives
        # the numbers Blender's importer gives.
        importer = importlib.import_module(f"{context.module}.blender.importer")
        bare = mesh.copy()
        bare.color_attributes.remove(bare.color_attributes["Color"])
        fallback = importer._colors_from_obj(bare, path)
        if fallback is not None:
            read = np.empty(len(bare.vertices) * 4, dtype=np.float32)
            fallback.data.foreach_get("color", read)
            out["fallback"] = {
                "name": fallback.name,
                "domain": fallback.domain,
                "data_type": fallback.data_type,
                "max_difference_from_blender": float(np.abs(read - values).max()),
            }
        else:
            out["fallback"] = None
        bpy.data.meshes.remove(bare)

    out["materials"] = [
        {
            "name": slot.material.name,
            "color_attribute_to_base_color": any(
                node.type == "ATTRIBUTE"
                and node.attribute_name == "Color"
                and any(link.to_socket.name == "Base Color" for link in node.outputs["Color"].links)
                for node in slot.material.node_tree.nodes
            ),
        }
        for slot in obj.material_slots
        if slot.material is not None and slot.material.node_tree is not None
    ]
    return out


if __name__ == "__main__":
    # Never run against a real user's Blender configuration: HOME must be the test's temporary one.
    if not os.environ.get("MODELSLAB_TEST_HOME") or os.environ.get("MODELSLAB_TEST_HOME") != os.environ.get("HOME"):
        sys.exit("import_result_driver.py: HOME is not the test's temporary user dir; refusing to run")
    sys.path.insert(0, str(HERE))
    import scenario_driver
    import scenarios

    scenarios.import_result = import_result  # type: ignore[attr-defined]  # scenario_driver runs scenarios.<name>
    sys.exit(scenario_driver.main())
