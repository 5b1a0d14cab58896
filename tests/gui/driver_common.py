"""What the drivers that run INSIDE a Blender window share (sidebar_driver.py, sources_window_driver.py and
jobs_driver.py in Debian's Blender 3.4, blender52_driver.py in Blender 5.2): the config and the result file, the
log, a phase machine advanced by one bpy.app.timers callback (SidebarDriver adds the ModelsLab sidebar: draw
records, redraw marks and the Ctrl+Tab walk to its tab), the 3D viewport lookups, the Info log, and
the RecordingLayout that writes down what a panel draws.

A driver puts its own folder on sys.path and imports this file as a sibling module; test_gui_blender52.py copies
it into the 5.2 root filesystem next to blender52_driver.py. The config is the JSON file named after `--` on
Blender's command line; `--python DRIVER.py` names the driver, whose file name prefixes the log lines.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bpy
import mathutils

CONFIG: dict[str, Any] = json.loads(Path(sys.argv[sys.argv.index("--") + 1]).read_text(encoding="utf-8"))
RESULT: dict[str, Any] = {"blender_version": bpy.app.version_string, "errors": [], "phases": {}}
T0 = time.perf_counter()
TAG = Path(sys.argv[sys.argv.index("--python") + 1]).stem
RUNNING_STATES = {"queued", "uploading", "submitting", "submitted", "processing", "downloading"}
JOB_ROW_FIELDS = ("name", "state", "progress", "message", "category", "fix", "eta", "object_name")


def now() -> float:
    """Seconds since the driver started."""
    return time.perf_counter() - T0


def log(message: str) -> None:
    print(f"[{TAG}] {now():7.2f}s {message}", flush=True)


def error(message: str) -> None:
    """Record an error for the result file (and echo it so Blender's output shows it too)."""
    log(f"ERROR: {message}")
    RESULT["errors"].append(message)


def write_result() -> None:
    """Write RESULT atomically to the configured path."""
    path = Path(CONFIG["result"])
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(RESULT, indent=1, default=str), encoding="utf-8")
    os.replace(partial, path)


def job_rows() -> list[dict[str, Any]]:
    """The add-on's job list (WindowManager.modelslab_jobs) as plain dicts."""
    rows = getattr(bpy.context.window_manager, "modelslab_jobs", None) or []
    return [{name: getattr(row, name, None) for name in JOB_ROW_FIELDS} for row in rows]


def collection_objects() -> list[Any]:
    """The mesh objects in the add-on's collection (none until the first import)."""
    collection = bpy.data.collections.get(CONFIG.get("collection", "ModelsLab"))
    return [obj for obj in collection.objects if obj.type == "MESH"] if collection else []


def spread_in_a_row(objects: list[Any], region_3d: Any, gap: float) -> tuple[Any, float]:
    """Put objects (imports all land on the 3D cursor) side by side along the view's horizontal, each taking the
    largest one's size times `gap`; returns the row's centre and that spacing."""
    right = region_3d.view_rotation @ mathutils.Vector((1.0, 0.0, 0.0))
    right.z = 0.0
    right.normalize()
    spacing = max(max(obj.dimensions) for obj in objects) * gap
    for index, obj in enumerate(objects):
        obj.location += right * ((index - (len(objects) - 1) / 2) * spacing)
    return sum((obj.location for obj in objects), mathutils.Vector()) / len(objects), spacing


class RecordingLayout:
    """Wraps the UILayout Blender hands a draw function: every call goes to the real layout (so the window shows
    exactly what it would) and is also written down — what it drew, its text, icon, whether it is enabled and
    active, and which row/column/box/split it sits in (`container`: that sub-layout's `id`, 0 for the panel).

    (UILayout.introspect() would say the same, but in 5.2 it crashes Blender once a layout holds a
    template_icon, which the sidebar's thumbnail is.)"""

    def __init__(
        self, layout: Any, items: list[dict[str, Any]], enabled: bool = True, active: bool = True, container: int = 0
    ):
        object.__setattr__(self, "_layout", layout)
        object.__setattr__(self, "_items", items)
        object.__setattr__(self, "_parent_enabled", enabled)
        object.__setattr__(self, "_parent_active", active)
        object.__setattr__(self, "_container", container)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._layout, name, value)

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._layout, name)
        if not callable(real):
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            # `self` of the recorded draw function is a PanelView: Blender wants the panel / preferences itself.
            args = tuple(arg._panel if isinstance(arg, PanelView) else arg for arg in args)
            outcome = real(*args, **kwargs)
            enabled = bool(self._parent_enabled and self._layout.enabled)
            active = bool(self._parent_active and self._layout.active)
            entry: dict[str, Any] = {"call": name, "enabled": enabled, "active": active, "container": self._container}
            for key in ("text", "icon", "factor", "type"):
                if key in kwargs:
                    entry[key] = kwargs[key]
            if name == "operator":
                entry["operator"] = args[0] if args else kwargs.get("operator")
                if "text" not in entry:
                    entry["text"] = operator_label(entry["operator"])
            elif name == "prop" and len(args) >= 2:
                self.describe_prop(entry, args[0], args[1])
            elif name == "template_list":
                entry["list"] = args[0] if args else kwargs.get("listtype_name")
            if name in ("row", "column", "box", "split"):
                entry["kind"] = name
                entry["id"] = len(self._items) + 1
            self._items.append(entry)
            if isinstance(outcome, bpy.types.UILayout):
                return type(self)(outcome, self._items, enabled, active, entry.get("id", self._container))
            return outcome

        return call

    @staticmethod
    def describe_prop(entry: dict[str, Any], data: Any, prop: str) -> None:
        """The property's name and value; a password field's value only as whether it holds something."""
        definition = data.bl_rna.properties.get(prop)
        value = str(getattr(data, prop, ""))
        secret = definition is not None and definition.subtype == "PASSWORD"  # the field draws dots
        entry["prop"] = prop
        entry["value"] = ("<set>" if value else "") if secret else value


def operator_label(idname: str) -> str:
    """An operator's label as a button shows it when the draw code gives no text."""
    module, name = idname.split(".", 1)
    try:
        return getattr(getattr(bpy.ops, module), name).get_rna_type().name
    except (AttributeError, KeyError):
        return idname


class PanelView:
    """What a recorded draw function sees as `self`: the panel, with its layout wrapped."""

    def __init__(self, panel: Any, layout: RecordingLayout):
        self.layout = layout
        self._panel = panel

    def __getattr__(self, name: str) -> Any:
        return getattr(self._panel, name)


def texts(items: list[dict[str, Any]]) -> list[str]:
    """The texts of recorded layout items, in draw order."""
    return [item["text"] for item in items if item.get("text")]


def recorded_draw(
    original: Callable[..., None],
    name: str,
    draws: dict[str, dict[str, Any]],
    layout_type: type[RecordingLayout] = RecordingLayout,
) -> Callable[[Any, Any], None]:
    """A draw function (panel or preferences) that draws the same through a RecordingLayout and keeps its newest
    draw in draws[name]. Exactly two arguments: Blender passes a registered method as many as it declares."""

    def draw(panel: Any, context: Any) -> None:
        items: list[dict[str, Any]] = []
        original(PanelView(panel, layout_type(panel.layout, items)), context)
        draws[name] = {"at": now(), "items": items, "texts": texts(items)}

    return draw


def recorded_draw_item(
    original: Callable[..., None],
    keep: Callable[[Any, list[dict[str, Any]]], None],
    layout_type: type[RecordingLayout] = RecordingLayout,
) -> Callable[..., None]:
    """A UIList.draw_item that draws the same through a RecordingLayout and hands keep(item, recorded items)."""

    # Blender passes UIList.draw_item's arguments by the count the function declares: spell them all.
    def draw_item(
        ui_list: Any, context: Any, layout: Any, data: Any, item: Any, icon: Any, active_data: Any,
        active_property: Any, index: Any = 0, flt_flag: Any = 0,
    ) -> None:  # fmt: skip
        items: list[dict[str, Any]] = []
        original(ui_list, context, layout_type(layout, items), data, item, icon, active_data, active_property,
                 index, flt_flag)  # fmt: skip
        keep(item, items)

    return draw_item


class PhaseDriver:
    """A state machine advanced by one bpy.app.timers callback (step): phase NAME runs method phase_NAME, which
    returns the delay until the next step (None ends the timer). Subclasses define finish()."""

    def __init__(self) -> None:
        self.phase = "ui"
        self.phase_started = now()

    @staticmethod
    def window() -> Any:
        return bpy.context.window_manager.windows[0]

    def view3d(self) -> tuple[Any, Any, Any]:
        """(VIEW_3D area, its sidebar region, its main region) of the main window."""
        for area in self.window().screen.areas:
            if area.type == "VIEW_3D":
                regions = {region.type: region for region in area.regions}
                return area, regions["UI"], regions["WINDOW"]
        raise RuntimeError("no VIEW_3D area in the main window")

    def override(self, region_type: str = "UI") -> Any:
        """A context override for the main window's 3D viewport: its sidebar ("UI") or main region ("WINDOW")."""
        window = self.window()
        area, sidebar, main = self.view3d()
        region = sidebar if region_type == "UI" else main
        return bpy.context.temp_override(window=window, screen=window.screen, area=area, region=region)

    def press_ctrl_tab(self, region: Any) -> None:
        """Ctrl+Tab over the sidebar: its next tab comes to the front (and the last wraps to the first)."""
        window = self.window()
        x, y = region.x + region.width // 2, region.y + region.height // 2
        window.event_simulate(type="MOUSEMOVE", value="NOTHING", x=x, y=y)
        window.event_simulate(type="TAB", value="PRESS", ctrl=True, x=x, y=y)
        window.event_simulate(type="TAB", value="RELEASE", ctrl=True, x=x, y=y)

    def copy_info_log(self, area: Any) -> list[str]:
        """Every report in the Info log (what the status bar showed), copied with Blender's own info.report_copy
        from `area`, an Info editor."""
        region = next(region for region in area.regions if region.type == "WINDOW")
        window = self.window()
        wm = bpy.context.window_manager
        wm.clipboard = ""
        with bpy.context.temp_override(window=window, screen=window.screen, area=area, region=region):
            bpy.ops.info.select_all(action="SELECT")
            bpy.ops.info.report_copy()
        return wm.clipboard.splitlines()

    def step(self) -> float | None:
        try:
            return getattr(self, "phase_" + self.phase)()
        except Exception:
            error(f"phase {self.phase} raised:\n{traceback.format_exc()}")
            return self.finish()

    def enter(self, phase: str) -> None:
        RESULT["phases"][self.phase] = round(now() - self.phase_started, 3)
        log(f"phase {phase}")
        self.phase = phase
        self.phase_started = now()

    def timed_out(self, what: str, seconds: float | None = None) -> bool:
        """True (after recording the error) once the phase took longer than `seconds` (the config's timeout)."""
        if now() - self.phase_started <= (seconds or float(CONFIG.get("timeout", 60))):
            return False
        error(f"timed out in phase {self.phase}: {what}")
        return True

    def finish(self) -> None:
        raise NotImplementedError


class SidebarDriver(PhaseDriver):
    """A PhaseDriver for the ModelsLab sidebar in Blender 3.4: it opens the sidebar, records what the panels draw
    (record(), per driver), and brings the ModelsLab tab to the front with Ctrl+Tab (phase "tab"), then calls
    tab_in_front(region) for the next phase."""

    def __init__(self) -> None:
        super().__init__()
        self.draws: dict[str, dict[str, Any]] = {}
        self.list_rows: dict[str, dict[str, Any]] = {}
        self.tab_attempts = 0
        self.tab_pressed_at = 0.0
        self.mark_after_press = False
        self.mark = 0.0
        self.module = CONFIG["module"]

    def addon(self, name: str) -> Any:
        return sys.modules[f"{self.module}.{name}"]

    @staticmethod
    def rows() -> list[Any]:
        return list(bpy.context.window_manager.modelslab_jobs)

    def row(self, local_id: str) -> Any:
        return next(row for row in self.rows() if row.local_id == local_id)

    def redraw(self) -> None:
        self.mark = now()
        self.view3d()[1].tag_redraw()

    def drawn_since_mark(self, *names: str) -> bool:
        return all(self.draws.get(name, {}).get("at", -1) > self.mark for name in names)

    def snapshot(self, name: str) -> dict[str, Any]:
        """The newest recorded draw of a panel (its items and texts)."""
        return json.loads(json.dumps(self.draws[name]))

    def record(self) -> None:
        raise NotImplementedError

    def tab_in_front(self, region: Any) -> float | None:
        raise NotImplementedError

    def wait(self, what: str, delay: float = 0.05) -> float | None:
        """Come back after delay, or end the run when the phase has waited too long for `what`."""
        return self.finish() if self.timed_out(what) else delay

    def phase_ui(self) -> float | None:
        area, _, _ = self.view3d()
        area.spaces.active.show_region_ui = True
        self.record()
        cube = bpy.data.objects.get("Cube")
        if cube is not None:
            bpy.data.objects.remove(cube)
        self.enter("tab")
        return 0.3

    def phase_tab(self) -> float | None:
        # Ctrl+Tab over the sidebar cycles its tabs (3.4 has no Region.active_panel_category). After a press has
        # settled, ask for a redraw: only the tab in front draws, so a ModelsLab draw after that says it is ours.
        _, region, _ = self.view3d()
        if self.tab_pressed_at and not self.mark_after_press:
            if now() - self.tab_pressed_at < 0.4:
                return 0.05
            self.mark_after_press = True
            self.redraw()
            return 0.05
        if self.tab_pressed_at and self.drawn_since_mark("MODELSLAB_PT_generate"):
            RESULT["tab_presses"] = self.tab_attempts
            return self.tab_in_front(region)
        if self.tab_pressed_at and now() - self.mark < 0.6:
            return 0.05
        if self.tab_attempts >= 15:
            error("the ModelsLab tab never came to the front")
            return self.finish()
        self.press_ctrl_tab(region)
        self.tab_attempts += 1
        self.tab_pressed_at = now()
        self.mark_after_press = False
        return 0.1


def start(driver: PhaseDriver, install: Callable[[], None], first_interval: float) -> None:
    """Install the add-on (install() raises or records an error when it cannot), then advance the driver on a
    timer; after a failed install the timer only finishes (writes the result and quits)."""
    try:
        install()
    except Exception:
        error(f"installing the add-on raised:\n{traceback.format_exc()}")
    if RESULT["errors"]:
        driver.phase = "install"
        bpy.app.timers.register(driver.finish, first_interval=0.1)
        return
    bpy.app.timers.register(driver.step, first_interval=first_interval)
