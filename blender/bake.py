"""Vertex colours -> an image texture: Smart UV Project, a Cycles (CPU) emission bake of the `Color`
attribute, the object's material switched to the image, the image packed into the .blend.

Game engines and most exporters do not carry vertex colours reliably; an image texture they all understand.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import bpy

from ..api import Category, ModelsLabError

BAKE_MARGIN = 8  # pixels of colour bled past each UV island, so mipmaps and filtering keep the island colour
ISLAND_MARGIN = 0.003


def bake_vertex_colors(
    obj: bpy.types.Object, size: int, color_attribute: str = "Color", context: Any = None
) -> bpy.types.Image:
    """Unwrap obj (Smart UV Project), bake its vertex colours into a new packed size x size image and make its
    material use that image instead of the attribute. Raises ModelsLabError when it cannot be done."""
    context = context or bpy.context
    mesh: Any = obj.data
    colors = getattr(mesh, "color_attributes", None)
    if colors is None or colors.get(color_attribute) is None:
        raise ModelsLabError(
            Category.BAD_MESH,
            f"{obj.name} has no vertex colours to bake.",
            "Bake needs a format with colours (OBJ, GLB or PLY); turn Bake Texture off for STL.",
        )
    _smart_uv_project(obj, context)
    material = _baking_material(obj, color_attribute)
    tree: Any = material.node_tree
    image = bpy.data.images.new(f"{obj.name} Color", width=size, height=size, alpha=False)
    texture = tree.nodes.new("ShaderNodeTexImage")
    texture.image = image
    texture.location = (-600, 300)
    for node in tree.nodes:
        node.select = node == texture
    tree.nodes.active = texture  # the bake writes into the active image node
    with _cycles_cpu(context.scene), _only_selected(obj, context) as override, _emitting(tree, color_attribute):
        with context.temp_override(**override):
            result = bpy.ops.object.bake(type="EMIT", margin=BAKE_MARGIN, use_clear=True)
    if "FINISHED" not in result:
        raise ModelsLabError(Category.BAD_MESH, f"Baking {obj.name}'s colours did not finish ({sorted(result)}).")
    image.pack()
    principled = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    tree.links.new(texture.outputs["Color"], principled.inputs["Base Color"])
    for node in [n for n in tree.nodes if n.type == "ATTRIBUTE"]:
        tree.nodes.remove(node)
    return image


def _smart_uv_project(obj: bpy.types.Object, context: Any) -> None:
    """Blender's own Smart UV Project on every face (edit mode entered and left again)."""
    mesh: Any = obj.data
    if not mesh.uv_layers:
        mesh.uv_layers.new(name="UVMap")
    with _only_selected(obj, context) as override, context.temp_override(**override):
        bpy.ops.object.mode_set(mode="EDIT")
        try:
            bpy.ops.mesh.select_all(action="SELECT")
            bpy.ops.uv.smart_project(island_margin=ISLAND_MARGIN)
        finally:
            bpy.ops.object.mode_set(mode="OBJECT")


def _baking_material(obj: bpy.types.Object, color_attribute: str) -> bpy.types.Material:
    """The object's own copy of its vertex-colour material (the shared one stays for other imports)."""
    mesh: Any = obj.data
    source = mesh.materials[0] if len(mesh.materials) and mesh.materials[0] is not None else None
    if source is None or source.node_tree is None:
        raise ModelsLabError(Category.BAD_MESH, f"{obj.name} has no vertex-colour material to bake from.")
    material = source.copy()
    material.name = f"{obj.name} Baked"
    mesh.materials[0] = material
    tree: Any = material.node_tree
    if not any(n.type == "ATTRIBUTE" and n.attribute_name == color_attribute for n in tree.nodes):
        raise ModelsLabError(Category.BAD_MESH, f"{obj.name}'s material does not read the {color_attribute} colours.")
    return material


@contextmanager
def _emitting(tree: Any, color_attribute: str) -> Iterator[None]:
    """The attribute straight into an Emission shader on the output while baking: the bake then holds exactly the
    vertex colours (a diffuse-colour bake of the Principled BSDF is slightly darkened by its specular layer)."""
    output = next((n for n in tree.nodes if n.type == "OUTPUT_MATERIAL" and n.is_active_output), None)
    output = output or next(n for n in tree.nodes if n.type == "OUTPUT_MATERIAL")
    attribute = next(n for n in tree.nodes if n.type == "ATTRIBUTE" and n.attribute_name == color_attribute)
    surface = output.inputs["Surface"]
    previous = [link.from_socket for link in surface.links]
    emission = tree.nodes.new("ShaderNodeEmission")
    tree.links.new(attribute.outputs["Color"], emission.inputs["Color"])
    tree.links.new(emission.outputs["Emission"], surface)
    try:
        yield
    finally:
        tree.nodes.remove(emission)
        for socket in previous:
            tree.links.new(socket, surface)


@contextmanager
def _only_selected(obj: bpy.types.Object, context: Any) -> Iterator[dict[str, Any]]:
    """obj alone selected and active (restored afterwards); yields a context override naming it."""
    view_layer = context.view_layer
    selected = [ob for ob in view_layer.objects if ob.select_get()]
    active = view_layer.objects.active
    for ob in selected:
        ob.select_set(False)
    obj.select_set(True)
    view_layer.objects.active = obj
    try:
        yield {"active_object": obj, "object": obj, "selected_objects": [obj], "selected_editable_objects": [obj]}
    finally:
        obj.select_set(False)
        for ob in selected:
            try:
                ob.select_set(True)
            except ReferenceError:
                continue
        view_layer.objects.active = active


@contextmanager
def _cycles_cpu(scene: Any) -> Iterator[None]:
    """Cycles on the CPU with one sample for the bake (a colour pass needs no more); the scene's own render
    settings are put back afterwards."""
    render = scene.render
    previous_engine = render.engine
    try:
        render.engine = "CYCLES"
    except TypeError as exc:
        raise ModelsLabError(
            Category.BAD_MESH, "Cycles is not available to bake textures.", "Enable the Cycles add-on."
        ) from exc
    cycles = scene.cycles
    previous = (cycles.device, cycles.samples)
    cycles.device = "CPU"
    cycles.samples = 1
    try:
        yield
    finally:
        cycles.device, cycles.samples = previous
        render.engine = previous_engine
