"""Blender-side helpers: preferences, compat shims, scene properties, importer, runtime and script API.

Nothing here runs at import time beyond defining classes; network code is imported on first use.
"""

# The add-on's own module name: "modelslab_3d" (legacy add-on / loaded from a checkout) or
# "bl_ext.<repo>.modelslab_3d" (extension). AddonPreferences.bl_idname must be exactly this.
ADDON_ID: str = __package__.rpartition(".")[0] if __package__ else "modelslab_3d"
ADDON_NAME = "modelslab_3d"
