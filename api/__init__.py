"""ModelsLab Image-to-3D client: pure Python (no bpy), usable from Blender, scripts and tests."""

from .errors import Category, ModelsLabError, redact, register_secret
from .params import GenerationParams

__version__ = "0.1.0"

__all__ = ["Category", "GenerationParams", "ModelsLabError", "__version__", "redact", "register_secret"]
