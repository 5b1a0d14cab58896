"""ModelsLab Image-to-3D client: pure Python (no bpy), usable from Blender, scripts and tests.

Only the light modules (errors, params) load eagerly; the HTTP client and the job runner are
imported on first use (PEP 562), so enabling the add-on does not pay for `requests`.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import Category, ModelsLabError, redact, register_secret
from .params import GenerationParams

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "ClientConfig": "transport",
    "ModelsLabClient": "client",
    "JobStatus": "responses",
    "parse_response": "responses",
    "check_image_file": "images",
    "JobJournal": "journal",
    "MeshCache": "cache",
    "JobState": "records",
    "JobRecord": "records",
    "JobEvent": "records",
    "JobRunner": "jobs",
}

__all__ = ["Category", "GenerationParams", "ModelsLabError", "__version__", "redact", "register_secret", *_LAZY]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value
