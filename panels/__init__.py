"""View3D > Sidebar > ModelsLab: image, parameters, Generate, and the job list."""

from .import_options import MODELSLAB_PT_import_options
from .previews import release_previews
from .sidebar import (
    MODELSLAB_PT_advanced,
    MODELSLAB_PT_generate,
    MODELSLAB_PT_jobs,
    MODELSLAB_UL_jobs,
)

CLASSES = (
    MODELSLAB_UL_jobs,
    MODELSLAB_PT_generate,
    MODELSLAB_PT_import_options,
    MODELSLAB_PT_advanced,
    MODELSLAB_PT_jobs,
)

__all__ = ["CLASSES", "release_previews"]
