"""Thumbnail of the chosen image file (bpy.utils.previews), loaded lazily and released on unregister."""

import os
from typing import Any

_collection: Any = None
_MAX_ENTRIES = 16


def preview_icon(path: str) -> int:
    """icon_id of a preview of the image file at path (0 when there is none)."""
    global _collection
    if not path or not os.path.isfile(path):
        return 0
    if _collection is None:
        import bpy.utils.previews

        _collection = bpy.utils.previews.new()
    key = f"{path}|{os.path.getmtime(path)}"
    preview = _collection.get(key)
    if preview is None:
        if len(_collection) >= _MAX_ENTRIES:
            _collection.clear()
        preview = _collection.load(key, path, "IMAGE")
    return int(preview.icon_id)


def release_previews() -> None:
    """Free the preview collection."""
    global _collection
    if _collection is not None:
        import bpy.utils.previews

        bpy.utils.previews.remove(_collection)
        _collection = None
