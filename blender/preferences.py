"""Add-on preferences and `get_settings()`, which works with or without registered preferences."""

# mypy: disable-error-code="valid-type"
import os
from typing import Any

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from . import ADDON_ID

DEFAULT_BASE_URL = "https://modelslab.com"

AXIS_ITEMS = [
    ("AUTO", "Automatic", "The importer's default for the file format"),
    ("X", "X", ""),
    ("Y", "Y", ""),
    ("Z", "Z", ""),
    ("NEGATIVE_X", "-X", ""),
    ("NEGATIVE_Y", "-Y", ""),
    ("NEGATIVE_Z", "-Z", ""),
]


_SETTING_DEFAULTS: dict[str, Any] = {
    "api_key": "",
    "base_url": DEFAULT_BASE_URL,
    "flavor": "enterprise",
    "ca_bundle": "",
    "proxy": "",
    "max_concurrent_jobs": 4,
    "poll_timeout": 3600.0,
    "cache_dir": "",
    "cache_retention_days": 30,
    "auto_import": True,
    "import_scale": 1.0,
    "forward_axis": "AUTO",
    "up_axis": "AUTO",
    "shade_smooth": True,
    "decimate_ratio": 1.0,
}


class Settings:
    """Effective settings: preferences when registered, else defaults; env fills an empty key / base URL.

    A plain slotted class (not a dataclass/NamedTuple): it is defined while the add-on is enabled, which must
    stay cheap.
    """

    FIELDS: tuple[str, ...] = tuple(_SETTING_DEFAULTS)
    __slots__ = FIELDS

    api_key: str
    base_url: str
    flavor: str
    ca_bundle: str
    proxy: str
    max_concurrent_jobs: int
    poll_timeout: float
    cache_dir: str
    cache_retention_days: int
    auto_import: bool
    import_scale: float
    forward_axis: str
    up_axis: str
    shade_smooth: bool
    decimate_ratio: float

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        for name, default in _SETTING_DEFAULTS.items():
            setattr(self, name, values.get(name, default))

    def replace(self, **changes: Any) -> "Settings":
        """A copy with some fields changed."""
        values = {name: getattr(self, name) for name in self.FIELDS}
        values.update(changes)
        return Settings(**values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and all(getattr(self, n) == getattr(other, n) for n in self.FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:  # never show the key
        key = "set" if self.api_key else "unset"
        return f"Settings(base_url={self.base_url!r}, flavor={self.flavor!r}, key={key})"


def addon_preferences(context: bpy.types.Context | None = None) -> "ModelsLabPreferences | None":
    """The registered preferences of this add-on, or None (e.g. the package was loaded without enabling)."""
    ctx = context or bpy.context
    prefs = getattr(ctx, "preferences", None)
    addon = prefs.addons.get(ADDON_ID) if prefs is not None else None
    found = getattr(addon, "preferences", None) if addon is not None else None
    return found if isinstance(found, ModelsLabPreferences) else None


def get_settings(context: bpy.types.Context | None = None) -> Settings:
    """Preferences if present, else defaults; MODELSLAB_API_KEY / MODELSLAB_BASE_URL fill empty values."""
    prefs = addon_preferences(context)
    settings = Settings()
    if prefs is not None:
        settings = Settings(
            api_key=prefs.api_key.strip(),
            base_url=prefs.base_url.strip(),
            flavor=prefs.flavor.lower(),
            ca_bundle=bpy.path.abspath(prefs.ca_bundle) if prefs.ca_bundle else "",
            proxy=prefs.proxy.strip(),
            max_concurrent_jobs=prefs.max_concurrent_jobs,
            poll_timeout=float(prefs.poll_timeout),
            cache_dir=bpy.path.abspath(prefs.cache_dir) if prefs.cache_dir else "",
            cache_retention_days=prefs.cache_retention_days,
            auto_import=prefs.auto_import,
            import_scale=prefs.import_scale,
            forward_axis=prefs.forward_axis,
            up_axis=prefs.up_axis,
            shade_smooth=prefs.shade_smooth,
            decimate_ratio=prefs.decimate_ratio,
        )
    api_key = settings.api_key or os.environ.get("MODELSLAB_API_KEY", "").strip()
    base_url = settings.base_url if prefs is not None else ""
    base_url = (base_url or os.environ.get("MODELSLAB_BASE_URL", "").strip() or DEFAULT_BASE_URL).rstrip("/")
    return settings.replace(api_key=api_key, base_url=base_url)


# The result of the last connection test, shown under the button (never saved).
connection_status: dict[str, str] = {}
# The enterprise server's actions (modelslab.server_action) and the last answer to each (never saved).
ADMIN_ACTION_ITEMS = [
    ("system_details", "System Details", "Show the server's hardware and software details"),
    ("clear_queue", "Clear Queue", "Drop your queued jobs on the server (running jobs go on)"),
    ("clear_cache", "Clear Cache", "Delete your finished outputs on the server (their links stop working)"),
    ("restart_server", "Restart Server", "Restart the server's workers (running jobs start again)"),
    ("update_server", "Update Server", "Update the server's software"),
]
admin_status: dict[str, str] = {}


def draw_admin(layout: Any) -> None:
    """The Enterprise Server box: one button per action (each asks first), then the server's last answers."""
    box = layout.box()
    box.label(text="Enterprise Server")
    grid = box.grid_flow(columns=2, even_columns=True, align=True)
    for identifier, label, _ in ADMIN_ACTION_ITEMS:
        grid.operator("modelslab.server_action", text=label).action = identifier
    for identifier, _label, _ in ADMIN_ACTION_ITEMS:
        if identifier in admin_status:
            box.label(text=admin_status[identifier])


class ModelsLabPreferences(bpy.types.AddonPreferences):
    """Edit > Preferences > Add-ons > ModelsLab."""

    bl_idname = ADDON_ID

    api_key: StringProperty(
        name="API Key",
        description="Your ModelsLab API key. Stored only in Blender's preferences; "
        "when empty, the MODELSLAB_API_KEY environment variable is used",
        subtype="PASSWORD",
    )
    base_url: StringProperty(
        name="Base URL",
        description="API server. Empty: MODELSLAB_BASE_URL, else https://modelslab.com. "
        "Enterprise customers may have a dedicated server URL",
        default="",
    )
    flavor: EnumProperty(
        name="API Flavour",
        items=[
            ("enterprise", "Enterprise", "/api/v1/enterprise/3d/image_to_3d"),
            ("standard", "Standard", "/api/v6/3d/image_to_3d (most accounts)"),
        ],
        default="enterprise",
    )
    ca_bundle: StringProperty(
        name="CA Bundle",
        description="Optional PEM file of extra certificate authorities (corporate networks). "
        "TLS verification is always on",
        subtype="FILE_PATH",
    )
    proxy: StringProperty(name="Proxy", description="Optional proxy URL, e.g. http://proxy:3128")
    max_concurrent_jobs: IntProperty(
        name="Concurrent Jobs",
        description="How many jobs run at once (your account's queue allows 5-15)",
        default=4,
        min=1,
        max=15,
    )
    poll_timeout: IntProperty(
        name="Poll Timeout (s)",
        description="Stop waiting for a job after this many seconds (3D jobs often take 5-15 minutes); "
        "a job still processing then is resumed by itself the next time the add-on starts",
        default=3600,
        min=10,
        max=86400,
    )
    cache_dir: StringProperty(
        name="Mesh Cache",
        description="Where downloaded meshes are kept. Empty: the add-on's user folder",
        subtype="DIR_PATH",
    )
    cache_retention_days: IntProperty(
        name="Keep Meshes (days)",
        description="Delete cached meshes older than this (0 = keep forever)",
        default=30,
        min=0,
        max=3650,
    )
    auto_import: BoolProperty(
        name="Import Automatically",
        description="Import each finished mesh into the current scene (also for jobs resumed after a restart)",
        default=True,
    )
    import_scale: FloatProperty(name="Scale", default=1.0, min=0.0001, max=10000.0, soft_min=0.01, soft_max=100.0)
    forward_axis: EnumProperty(name="Forward Axis", items=AXIS_ITEMS, default="AUTO")
    up_axis: EnumProperty(name="Up Axis", items=AXIS_ITEMS, default="AUTO")
    shade_smooth: BoolProperty(name="Shade Smooth", default=True)
    decimate_ratio: FloatProperty(
        name="Decimate Ratio",
        description="Adds a Decimate modifier with this ratio (1.0 = off)",
        default=1.0,
        min=0.01,
        max=1.0,
        subtype="FACTOR",
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout: Any = self.layout
        settings = get_settings(context)
        col = layout.column()
        col.prop(self, "api_key")
        if not self.api_key:
            col.label(
                text="Using MODELSLAB_API_KEY from the environment" if settings.api_key else "No API key set",
                icon="INFO" if settings.api_key else "ERROR",
            )
        col.prop(self, "base_url")
        if not self.base_url:
            col.label(text=f"Using {settings.base_url}", icon="INFO")
        col.prop(self, "flavor")
        row = col.row(align=True)
        row.operator("modelslab.test_connection", icon="URL")
        status = connection_status.get("text")
        if status:
            col.label(text=status, icon=connection_status.get("icon", "INFO"))
            if connection_status.get("fix"):
                col.label(text=connection_status["fix"])

        box = layout.box()
        box.label(text="Network")
        box.prop(self, "ca_bundle")
        box.prop(self, "proxy")
        box.prop(self, "max_concurrent_jobs")
        box.prop(self, "poll_timeout")

        box = layout.box()
        box.label(text="Cache")
        box.prop(self, "cache_dir")
        box.prop(self, "cache_retention_days")

        box = layout.box()
        box.label(text="Import")
        box.prop(self, "auto_import")
        box.prop(self, "import_scale")
        row = box.row()
        row.prop(self, "forward_axis")
        row.prop(self, "up_axis")
        box.prop(self, "shade_smooth")
        box.prop(self, "decimate_ratio")

        if settings.flavor == "enterprise":
            draw_admin(layout)


CLASSES = (ModelsLabPreferences,)
