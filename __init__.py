"""ModelsLab Image to 3D for Blender: registration only (the work lives in blender/, operators/, panels/, api/)."""

bl_info = {
    "name": "ModelsLab Image to 3D",
    "author": "ModelsLab add-on contributors",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "View3D > Sidebar > ModelsLab",
    "description": "Turn an image into a vertex-coloured 3D mesh with ModelsLab's Image-to-3D API",
    "doc_url": "https://docs.modelslab.com",
    "category": "3D View",
}

import sys  # noqa: E402

from . import operators, panels  # noqa: E402
from .blender import preferences, props, runtime, scripting  # noqa: E402

SCRIPT_MODULE_ALIAS = "modelslab"
# Installed as an extension (module bl_ext.<repository>.modelslab_3d), Blender's policy forbids adding top-level
# modules: scripts reach the API as this package's `scripting` attribute (see README). The legacy add-on keeps
# the `import modelslab` alias, where no such policy applies.
_ADD_SCRIPT_ALIAS = not (__package__ or __name__).startswith("bl_ext.")

_CLASSES = (*preferences.CLASSES, *props.CLASSES, *operators.CLASSES, *panels.CLASSES)


def register() -> None:
    """Register classes, properties, handlers and (legacy add-on only) the `import modelslab` alias."""
    import bpy

    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    props.register_properties()
    runtime.register()
    if _ADD_SCRIPT_ALIAS:
        sys.modules.setdefault(SCRIPT_MODULE_ALIAS, scripting)


def unregister() -> None:
    """Stop jobs (no threads left) and remove everything register() added."""
    import bpy

    if sys.modules.get(SCRIPT_MODULE_ALIAS) is scripting:
        del sys.modules[SCRIPT_MODULE_ALIAS]
    runtime.unregister()
    operators.connection.shutdown()
    panels.release_previews()
    props.unregister_properties()
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
