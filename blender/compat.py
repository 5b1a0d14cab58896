"""Small shims over Blender APIs that differ between 3.4 and 5.x."""

import os
from pathlib import Path
from urllib.parse import urlparse

import bpy

from ..api import Category, ModelsLabError
from . import ADDON_ID, ADDON_NAME

OFFLINE_FIX = (
    "Allow online access in Preferences > System > Network (or start Blender with --online-mode), "
    "or use a local server URL such as http://127.0.0.1:8765."
)


def online_access_allowed() -> bool:
    """bpy.app.online_access (4.2+); older Blender has no such switch, so access is allowed."""
    return bool(getattr(bpy.app, "online_access", True))


def is_loopback_url(url: str) -> bool:
    """True for http(s) URLs whose host is localhost, 127.0.0.0/8 or ::1 (not online access)."""
    import ipaddress  # only when a URL is checked: keeps enabling the add-on cheap

    host = (urlparse(url).hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_online_access(url: str) -> None:
    """Raise ModelsLabError(offline) when url needs online access and Blender does not allow it."""
    if online_access_allowed() or is_loopback_url(url):
        return
    host = urlparse(url).hostname or url
    raise ModelsLabError(
        Category.OFFLINE, f"Online access is disabled in Blender, so {host} cannot be contacted.", OFFLINE_FIX
    )


def user_dir() -> Path:
    """The add-on's writable directory (journal, cache, prepared uploads); created if missing.

    MODELSLAB_USER_DIR overrides it (tests, pipelines that share a journal between runs).
    """
    override = os.environ.get("MODELSLAB_USER_DIR")
    if override:
        path = Path(override).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path
    extension_path_user = getattr(bpy.utils, "extension_path_user", None)
    if extension_path_user is not None and ADDON_ID.startswith("bl_ext."):
        return Path(extension_path_user(ADDON_ID, create=True))
    return Path(bpy.utils.user_resource("CONFIG", path=ADDON_NAME, create=True))


def draw_progress(layout: bpy.types.UILayout, factor: float, text: str) -> None:
    """A progress bar (layout.progress, 4.0+) or, before that, the percentage as text."""
    progress = getattr(layout, "progress", None)
    if progress is not None:
        progress(factor=max(0.0, min(1.0, factor)), type="BAR", text=text)
    else:
        layout.label(text=f"{text} {int(round(factor * 100))}%")


def version_at_least(major: int, minor: int) -> bool:
    """True when the running Blender is at least major.minor."""
    return tuple(bpy.app.version[:2]) >= (major, minor)
