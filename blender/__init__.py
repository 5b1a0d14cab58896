"""Blender-side modules (not operators/panels): preferences, compat, props, session, inputs, rows, importer,
runtime, results, batch (+ batch_output) and the script API (scripting). docs/ARCHITECTURE.md has the map.

Nothing here runs at import time beyond defining classes; network code is imported on first use.
"""

# The add-on's own module name: "modelslab_3d" (legacy add-on / loaded from a checkout) or
# "bl_ext.<repo>.modelslab_3d" (extension). AddonPreferences.bl_idname must be exactly this.
ADDON_ID: str = __package__.rpartition(".")[0] if __package__ else "modelslab_3d"
ADDON_NAME = "modelslab_3d"
