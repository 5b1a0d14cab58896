"""The "Import" sub-panel: how results are placed and prepared (the scene's import options)."""

from typing import Any

import bpy

from .sidebar import _SidebarPanel, scene_settings


class MODELSLAB_PT_import_options(_SidebarPanel):
    """Grounding, height, fit to a placeholder, facing, asset mark and texture bake (remembered per scene)."""

    bl_idname = "MODELSLAB_PT_import_options"
    bl_label = "Import"
    bl_parent_id = "MODELSLAB_PT_generate"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout: Any = self.layout
        settings = scene_settings(context)
        if settings is None:
            return
        layout.use_property_split = True
        layout.use_property_decorate = False
        col = layout.column()
        col.prop(settings, "ground")
        row = col.row()
        row.active = not settings.fit_to_selected  # the placeholder's box sets the size then
        row.prop(settings, "target_height")
        col.prop(settings, "fit_to_selected")
        if settings.fit_to_selected and not context.selected_objects:
            col.label(text="Select the object to replace", icon="INFO")
        col.row().prop(settings, "facing", expand=True)
        col.separator()
        col.prop(settings, "as_asset")
        col.prop(settings, "bake_size")
