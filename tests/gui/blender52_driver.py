"""Driver that runs INSIDE a real Blender 5.2 window (Debian sid's Blender in scripts/blender52_root.sh's root
filesystem, under Xvfb), started by tests/gui/test_gui_blender52.py:

    blender --python-exit-code 3 --python blender52_driver.py -- CONFIG.json

It does what a user does and records what Blender itself says at each step, for the test to assert:

1. install the extension zip with Blender's own installer (extensions.package_install_files into the
   user_default repository, enabled on install); record the extension platform's warnings;
2. open the 3D viewport's sidebar and click the ModelsLab tab with xdotool (Region.active_panel_category is
   read-only in 5.2): the lowest tab of the strip, found on a screenshot; if Blender then reports another
   category in front, walk up the strip click by click;
3. put the key (from MODELSLAB_API_KEY) and the server URL into the add-on's preferences, press Test Connection;
4. choose an image in the sidebar; one job that fails (the server fails its first submit), three that import
   (then measure how soon the viewport shows them by itself: screenshots until their pixels differ from the
   background), then three more that stay running with their progress bars;
5. select the failed job's row, frame the imported objects, take a screenshot from the X server and check in
   Blender, on the screenshot's pixels, that every imported object is visible in the viewport (retaking it
   until they are, within a bound);
6. open Preferences > Add-ons at the ModelsLab entry, screenshot that window;
7. write the result JSON and quit.

What the panels show is recorded as they draw: each ModelsLab panel's (and the job list's and the preferences')
draw function runs with a RecordingLayout that forwards every call to Blender's layout and writes down the
label, button, property and progress bar it made, with its text and enabled state.
The config (JSON, written by the test) holds no secret: keys zip, extension_id, images, failing_image,
server_url, category, result, screenshot, screenshot_preferences, timeout (per phase), deadline (the whole run:
past it, faulthandler prints every thread's stack and Blender exits).
"""

from __future__ import annotations

import faulthandler
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import addon_utils
import bpy
import mathutils
from bpy_extras import view3d_utils

sys.path.insert(0, str(Path(__file__).resolve().parent))  # driver_common.py, copied in next to this file
from driver_common import (
    CONFIG,
    RESULT,
    RUNNING_STATES,
    PhaseDriver,
    RecordingLayout,
    collection_objects,
    error,
    job_rows,
    log,
    now,
    recorded_draw,
    recorded_draw_item,
    spread_in_a_row,
    start,
    write_result,
)

RESULT.update({"python_version": sys.version.split()[0], "panels": {}, "screenshots": {}})
SHOWN_PANELS = ("MODELSLAB_PT_generate", "MODELSLAB_PT_jobs", "MODELSLAB_UL_jobs")  # open by default


class NamedPropLayout(RecordingLayout):
    """A RecordingLayout that gives a property drawn without text its name, as Blender labels the field."""

    @staticmethod
    def describe_prop(entry: dict[str, Any], data: Any, prop: str) -> None:
        RecordingLayout.describe_prop(entry, data, prop)
        if "text" not in entry:
            definition = data.bl_rna.properties.get(prop)
            entry["text"] = definition.name if definition is not None else prop


def screen_pixels(path: str) -> Any:
    """A screenshot's RGB pixels as a numpy array [row][column] (rows from the top, like X), read by Blender."""
    import numpy

    image = bpy.data.images.load(path, check_existing=False)
    try:
        width, height = image.size
        pixels = numpy.empty(width * height * 4, dtype=numpy.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return pixels.reshape(height, width, 4)[::-1, :, :3]


class Driver(PhaseDriver):
    """Each phase does one step of what a user does and returns the delay until the next."""

    def __init__(self) -> None:
        super().__init__()
        self.module = ""
        self.tab_y = 0
        self.tab_clicks = 0
        self.panel_layouts: dict[str, dict[str, Any]] = {}
        self.view_draws: list[float] = []
        self.imported_at: float | None = None
        self.shot_attempts = 0
        self.prefs_window: Any = None
        self.countdown_mark = 0.0

    # --- Blender lookups ----------------------------------------------------------------------------
    def addon_package(self) -> Any:
        return sys.modules[self.module]

    @staticmethod
    def to_screen(window: Any, region: Any, x: float, y: float) -> tuple[int, int]:
        """Region pixel (origin bottom-left) -> X screen pixel (origin top-left)."""
        return int(window.x + region.x + x), int(window.y + window.height - (region.y + y))

    # --- recording what the panels draw -----------------------------------------------------------
    def record_draws(self, cls: type, name: str, method: str = "draw") -> None:
        """Replace a registered UI class's draw function by one that draws the same through a RecordingLayout
        and keeps what it drew (the newest draw of each panel; a UIList's rows are kept per row)."""
        layouts = self.panel_layouts
        if method != "draw_item":
            setattr(cls, method, recorded_draw(getattr(cls, method), name, layouts, NamedPropLayout))
            return

        def keep(item: Any, items: list[dict[str, Any]]) -> None:
            rows = layouts.setdefault(name, {"at": now(), "rows": {}})
            rows["at"] = now()
            rows["rows"][item.local_id] = {"name": item.name, "items": items}

        setattr(cls, method, recorded_draw_item(getattr(cls, method), keep, NamedPropLayout))

    def view_draw_recorder(self) -> None:
        self.view_draws.append(now())

    # --- the timer ----------------------------------------------------------------------------------
    def phase_ui(self) -> float | None:
        area, sidebar, _ = self.view3d()
        space = area.spaces.active
        space.show_region_ui = True
        space.shading.type = "SOLID"
        space.shading.color_type = "VERTEX"  # the imported meshes carry vertex colours
        space.overlay.show_floor = True
        cube = bpy.data.objects.get("Cube")
        if cube is not None:  # the factory cube sits where the imports land (the 3D cursor)
            bpy.data.objects.remove(cube)
        package = self.addon_package()
        sidebar_module = sys.modules[f"{self.module}.panels.sidebar"]
        panels = [
            cls
            for cls in vars(sidebar_module).values()
            if isinstance(cls, type) and issubclass(cls, bpy.types.Panel) and getattr(cls, "is_registered", False)
        ]
        RESULT["panel_classes"] = sorted(cls.__name__ for cls in panels)
        for cls in panels:
            self.record_draws(cls, cls.__name__)
        self.record_draws(sidebar_module.MODELSLAB_UL_jobs, "MODELSLAB_UL_jobs", "draw_item")
        bpy.types.SpaceView3D.draw_handler_add(self.view_draw_recorder, (), "WINDOW", "POST_PIXEL")
        RESULT["addon_package"] = package.__name__
        sidebar.tag_redraw()
        self.tab_y = 0  # region pixels from the bottom
        self.enter("tab")
        return 0.3

    def lowest_tab(self, sidebar: Any) -> int | None:
        """Region y (from the bottom) just inside the lowest tab of the sidebar's tab strip, found on a screenshot:
        the strip's column is background below its last tab. None when no tab shows there."""
        shot = str(Path(CONFIG["result"]).with_name("tabs.png"))
        self.take_screenshot(shot)
        pixels = screen_pixels(shot)
        window = self.window()
        x, _ = self.to_screen(window, sidebar, sidebar.width - 9, 0)
        column = [self.to_screen(window, sidebar, 0, y)[1] for y in range(sidebar.height)]  # region y -> X row
        background = pixels[column[2], x]
        for y in range(2, sidebar.height):
            if abs(pixels[column[y], x] - background).sum() > 0.05:
                return y + 12  # the lowest tab's bottom edge is at y; its label starts a little above
        return None

    def phase_tab(self) -> float | None:
        # Click the lowest tab of the strip on the sidebar's right edge, like a user: the add-on's tab comes after
        # Blender's own. If another tab comes to the front, walk up the strip click by click (clicking the tab
        # already in front folds the sidebar; the next click unfolds it). Blender reports which tab is in front.
        _, sidebar, _ = self.view3d()
        category = CONFIG["category"]
        RESULT.setdefault("tab_log", []).append([self.tab_y, sidebar.width, sidebar.active_panel_category])
        if sidebar.active_panel_category == category and sidebar.width > 100:
            RESULT["tab_clicks"] = self.tab_clicks
            RESULT["sidebar"] = {"width": sidebar.width, "height": sidebar.height}
            self.enter("connection")
            return 0.1
        if self.tab_y > sidebar.height or self.tab_clicks > 120:
            error(f"clicking along the sidebar's tab strip never brought {category!r} to the front")
            return self.finish()
        if self.tab_clicks == 0:
            self.tab_y = self.lowest_tab(sidebar) or 0
            RESULT["lowest_tab_y"] = self.tab_y
        elif sidebar.width > 100:
            self.tab_y += 14
        x, y = self.to_screen(self.window(), sidebar, sidebar.width - 9, self.tab_y)
        subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", "1"], check=True)
        self.tab_clicks += 1
        return 0.15

    def phase_connection(self) -> float | None:
        addon = bpy.context.preferences.addons[self.module]
        if not RESULT.get("connection_started"):
            addon.preferences.api_key = os.environ["MODELSLAB_API_KEY"]
            addon.preferences.base_url = CONFIG["server_url"]
            with self.override():
                RESULT["connection_started"] = sorted(bpy.ops.modelslab.test_connection())
            return 0.1
        status = dict(sys.modules[f"{self.module}.blender.preferences"].connection_status)
        if status.get("icon") == "TIME" and not self.timed_out("Test Connection never answered", 20):
            return 0.1
        RESULT["connection_status"] = status
        settings = bpy.context.scene.modelslab
        settings.image_source = "FILE"
        settings.image_path = CONFIG["images"][0]
        self.submit(CONFIG["failing_image"])
        self.enter("failed")
        return 0.1

    def submit(self, image: str) -> None:
        with self.override():
            outcome = sorted(bpy.ops.modelslab.image_to_3d("INVOKE_DEFAULT", image=image))
        RESULT.setdefault("calls", []).append({"image": image, "return": outcome, "at": round(now(), 3)})

    def phase_failed(self) -> float | None:
        rows = job_rows()
        if rows and rows[0]["state"] == "failed":
            RESULT["failed_row"] = rows[0]
            for image in CONFIG["images"]:
                self.submit(image)
            self.enter("imports")
            return 0.1
        if rows and rows[0]["state"] not in RUNNING_STATES:
            error(f"the first job ended {rows[0]['state']!r}, expected 'failed': {rows[0]}")
            return self.finish()
        return None if self.timed_out(f"the first job did not fail: {rows}") else 0.1

    def phase_imports(self) -> float | None:
        rows = job_rows()[1:]
        if len(rows) == len(CONFIG["images"]) and all(row["state"] == "imported" for row in rows):
            self.imported_at = now()
            RESULT["imported_rows"] = rows
            self.enter("sight")
            return 0.0
        ended = [row for row in rows if row["state"] not in RUNNING_STATES | {"imported", "downloaded"}]
        if ended:
            error(f"jobs ended without an object: {ended}")
            return self.finish()
        return self.finish() if self.timed_out(f"three jobs did not import: {rows}") else 0.1

    def phase_sight(self) -> float | None:
        # How soon the viewport shows what the add-on imported, by itself (nothing here asks for a redraw):
        # screenshots until every object's centre (all at the 3D cursor) differs from the background.
        shot = str(Path(CONFIG["result"]).with_name("sight.png"))
        self.take_screenshot(shot)
        visibility = self.visible_objects(shot)
        seen = all(entry["visible"] for entry in visibility.values())
        if seen or now() - self.phase_started > 30:
            RESULT["first_sight"] = {
                "visible": seen,
                "seconds_after_import": round(now() - self.imported_at, 2) if self.imported_at else None,
                "screenshots": RESULT.get("first_sight_attempts", 0) + 1,
                "objects": visibility,
            }
            for image in CONFIG["images"]:
                self.submit(image)
            self.enter("running")
            return 0.1
        RESULT["first_sight_attempts"] = RESULT.get("first_sight_attempts", 0) + 1
        return 0.25

    def phase_running(self) -> float | None:
        rows = job_rows()[1 + len(CONFIG["images"]) :]
        moving = [row for row in rows if row["state"] in RUNNING_STATES and row["progress"] > 0]
        if len(moving) == len(CONFIG["images"]):
            self.enter("countdown")
            return 0.0
        if any(row["state"] not in RUNNING_STATES for row in rows):
            error(f"a job finished before all three were seen running with progress: {rows}")
            return self.finish()
        return self.finish() if self.timed_out(f"three jobs never ran with progress: {rows}") else 0.05

    def phase_countdown(self) -> float | None:
        # The first running job's details, drawn twice a second apart: its time left counts down, its bar moves.
        wm = bpy.context.window_manager
        first_running = 1 + len(CONFIG["images"])
        samples = RESULT.setdefault("countdown", [])
        if wm.modelslab_jobs_index != first_running:
            wm.modelslab_jobs_index = first_running
            self.countdown_mark = now()
            self.view3d()[1].tag_redraw()
            return 0.05
        drawn_at = self.panel_layouts.get("MODELSLAB_PT_jobs", {}).get("at", 0)
        if drawn_at <= self.countdown_mark:
            self.view3d()[1].tag_redraw()
            return self.finish() if self.timed_out("the job list never redrew", 20) else 0.05
        layout = json.loads(json.dumps(self.panel_layouts["MODELSLAB_PT_jobs"], default=str))
        row = job_rows()[first_running]
        samples.append({"at": round(now(), 3), "state": row["state"], "texts": layout["texts"],
                        "bars": [item for item in layout["items"] if item["call"] == "progress"]})  # fmt: skip
        if len(samples) >= 2:
            self.arrange()
            self.enter("shot")
            return 0.1
        self.countdown_mark = now() + 1.0
        return 1.05

    def measure_widths(self) -> None:
        """Every text the panels drew must fit the sidebar at its width: each label/button/bar text measured with
        Blender's UI font (blf) against the sidebar's width less its margins."""
        import blf

        _, sidebar, _ = self.view3d()
        scale = bpy.context.preferences.view.ui_scale
        style = bpy.context.preferences.ui_styles[0]
        blf.size(0, (getattr(style, "widget_label", None) or style.widget).points * scale)
        overflow = []
        layouts = {name: self.panel_layouts.get(name, {}).get("items", []) for name in SHOWN_PANELS[:2]}
        for local_id, drawn_row in self.panel_layouts.get("MODELSLAB_UL_jobs", {}).get("rows", {}).items():
            layouts[f"row {local_id}"] = drawn_row["items"]
        for where, items in layouts.items():
            list_row = where.startswith("row ")  # a list row's items share one line; a panel's are one per line
            room = sidebar.width - (50 if list_row else 30) * scale
            shared = 0.0
            for item in items:
                text = item.get("text") or ""
                icon = item.get("icon", "NONE")
                if item["call"] not in ("label", "operator", "progress") or not (text or icon != "NONE"):
                    continue
                needed = blf.dimensions(0, text)[0] + 10 * scale if text else 0.0
                needed += 22 * scale if (icon and icon != "NONE") or item.get("type") == "RING" else 0
                shared += needed
                if (shared if list_row else needed) > room:
                    overflow.append({"where": where, "text": text, "needed": round(needed), "room": round(room)})
        RESULT["widths"] = {"sidebar_width": sidebar.width, "overflow": overflow}

    def phase_info(self) -> float | None:
        # The status bar shows the newest report, the Info log keeps them: copy them with Blender's own operator
        # from an Info editor (the 3D view turned into one for a moment).
        area, _, _ = self.view3d() if not hasattr(self, "info_area") else (self.info_area, None, None)
        if not hasattr(self, "info_area"):
            self.info_area = area
            area.type = "INFO"
            return 0.3
        RESULT["info_log"] = self.copy_info_log(area)
        area.type = "VIEW_3D"
        self.enter("preferences")
        return 0.3

    def arrange(self) -> None:
        """Show the failed job's details; put the imported objects side by side in front of the view."""
        bpy.context.window_manager.modelslab_jobs_index = 0
        objects = collection_objects()
        RESULT["objects"] = [
            {
                "name": obj.name,
                "vertices": len(obj.data.vertices),
                "collections": [collection.name for collection in obj.users_collection],
                "color_attributes": [attr.name for attr in obj.data.color_attributes],
                "location": [round(value, 4) for value in obj.location],
                "remote_id": str(obj.get("modelslab_remote_id", "")),
            }
            for obj in objects
        ]
        area, _, main = self.view3d()
        region_3d = area.spaces.active.region_3d
        if objects:
            center, spacing = spread_in_a_row(objects, region_3d, 1.15)
            region_3d.view_location = center
            region_3d.view_distance = spacing * len(objects) * 1.1
        for window_area in self.window().screen.areas:
            window_area.tag_redraw()

    def visible_objects(self, shot: str) -> dict[str, Any]:
        """Per imported object: does the screenshot, at the object's projected centre, differ from the viewport
        background on the same row (the left edge of the viewport, where nothing stands)?"""
        import numpy

        area, _, main = self.view3d()
        region_3d = area.spaces.active.region_3d
        pixels = screen_pixels(shot)
        height, width = pixels.shape[:2]
        window = self.window()
        found: dict[str, Any] = {}
        for obj in collection_objects():
            corners = [obj.matrix_world @ mathutils.Vector(corner) for corner in obj.bound_box]
            center = sum(corners, mathutils.Vector()) / 8
            point = view3d_utils.location_3d_to_region_2d(main, region_3d, center)
            if point is None:
                found[obj.name] = {"visible": False, "why": "behind the view"}
                continue
            x, y = self.to_screen(window, main, point.x, point.y)
            bx, _ = self.to_screen(window, main, 12, point.y)
            if not (0 <= x < width and 0 <= y < height):
                found[obj.name] = {"visible": False, "why": f"outside the screen at {x},{y}"}
                continue
            patch = pixels[max(0, y - 3) : y + 4, max(0, x - 3) : x + 4].reshape(-1, 3)
            background = numpy.median(pixels[max(0, y - 4) : y + 5, bx : bx + 3].reshape(-1, 3), axis=0)
            difference = float(numpy.abs(patch - background).sum(axis=1).max())
            found[obj.name] = {
                "visible": difference > 0.15,
                "screen": [x, y],
                "difference": round(difference, 3),
                "colour": [round(float(value), 3) for value in numpy.median(patch, axis=0)],
                "background": [round(float(value), 3) for value in background],
            }
        return found

    @staticmethod
    def x_windows_named(part: str) -> list[str]:
        """Ids of the X server's windows whose title contains `part` (all named ones for '')."""
        found = subprocess.run(["xdotool", "search", "--name", f".*{part}.*"], capture_output=True, text=True)
        ids = []
        for window_id in found.stdout.split():
            name = subprocess.run(["xdotool", "getwindowname", window_id], capture_output=True, text=True)
            if name.stdout.strip() and part in name.stdout:
                ids.append(window_id)
        RESULT.setdefault("x_windows", {})[part] = ids
        return ids

    def take_screenshot(self, path: str) -> None:
        """The whole X screen, as a user sees it (bpy.ops.screen.screenshot gives a black image in 5.2 here)."""
        subprocess.run(f"xwd -root -silent | convert xwd:- png:{path}", shell=True, check=True)

    def phase_shot(self) -> float | None:
        # Wait for the sidebar to draw the state we assert, and for the viewport to draw after the arrangement.
        layouts = self.panel_layouts
        if (
            any(layouts.get(name, {}).get("at", 0) < self.phase_started for name in SHOWN_PANELS)
            or not self.view_draws
            or self.view_draws[-1] < self.phase_started
        ):
            self.view3d()[1].tag_redraw()
            return None if self.timed_out("the sidebar or the viewport never redrew", 20) else 0.1
        target = CONFIG["screenshot"]
        self.take_screenshot(target)
        self.shot_attempts += 1
        visibility = self.visible_objects(target)
        shot_at = now()
        if not all(entry["visible"] for entry in visibility.values()) and not self.timed_out(
            f"the viewport did not show every imported object: {visibility}", 60
        ):
            for window_area in self.window().screen.areas:
                window_area.tag_redraw()
            return 0.5
        rows = job_rows()
        RESULT["screenshots"]["main"] = {
            "path": target,
            "attempts": self.shot_attempts,
            "seconds_after_import": round(shot_at - (self.imported_at or 0.0), 2),
            "objects": visibility,
            "rows": rows,
            "view_draws": len(self.view_draws),
        }
        RESULT["panels"]["main"] = json.loads(json.dumps(layouts, default=str))  # as drawn for this screenshot
        RESULT["panels"]["main"]["shot_at"] = shot_at
        self.measure_widths()
        self.enter("info")
        return 0.05

    def phase_preferences(self) -> float | None:
        if self.prefs_window is None:
            bpy.context.preferences.active_section = "ADDONS"
            bpy.context.window_manager.addon_search = "ModelsLab"
            bpy.ops.preferences.addon_expand(module=self.module)
            before = set(bpy.context.window_manager.windows[:])
            with self.override():
                bpy.ops.screen.userpref_show(section="ADDONS")
            new = [window for window in bpy.context.window_manager.windows if window not in before]
            if not new:
                error("Preferences did not open a window")
                return self.finish()
            self.prefs_window = new[0]
            self.record_draws(type(bpy.context.preferences.addons[self.module].preferences), "preferences")
            return 0.3
        layout = self.panel_layouts.get("preferences")
        if layout is None or layout["at"] < self.phase_started + 0.3:
            for area in self.prefs_window.screen.areas:
                area.tag_redraw()
            return None if self.timed_out("the add-on's preferences never drew", 20) else 0.2
        # Just the Preferences window, captured by its X window id. (Resizing it with xdotool does not help: with
        # no window manager Blender keeps drawing at the size it opened with.)
        ids = self.x_windows_named("Preferences")
        if not ids:
            error(f"no X window named like 'Preferences' among {self.x_windows_named('')}")
            return self.finish()
        target = CONFIG["screenshot_preferences"]
        subprocess.run(f"xwd -id {ids[-1]} -silent | convert xwd:- png:{target}", shell=True, check=True)
        geometry = f"{self.prefs_window.width}x{self.prefs_window.height}"
        RESULT["screenshots"]["preferences"] = {"path": target, "window": geometry}
        RESULT["panels"]["preferences"] = layout
        RESULT["preferences_section"] = bpy.context.preferences.active_section
        return self.finish()

    def finish(self) -> None:
        RESULT["phases"][self.phase] = round(now() - self.phase_started, 3)
        RESULT["rows"] = job_rows() if self.module else []
        RESULT["scene_objects"] = sorted(obj.name for obj in bpy.context.scene.objects)
        RESULT["warnings_at_end"] = {key: list(value) for key, value in addon_utils._extensions_warnings_get().items()}
        RESULT["total_seconds"] = round(now(), 3)
        write_result()
        log(f"result written to {CONFIG['result']}; quitting")
        bpy.ops.wm.quit_blender()
        return None


def install(driver: Driver) -> None:
    """Blender's own installer, as Preferences > Get Extensions > Install from Disk does it."""
    preferences = bpy.context.preferences
    preferences.view.show_splash = False
    preferences.use_preferences_save = False  # the key set below stays in this session
    preferences.system.use_region_overlap = False  # the viewport ends where the sidebar begins
    started = time.perf_counter()
    outcome = bpy.ops.extensions.package_install_files(
        repo="user_default", filepath=CONFIG["zip"], enable_on_install=True
    )
    enabled = [addon.module for addon in preferences.addons if addon.module.endswith("." + CONFIG["extension_id"])]
    RESULT["install"] = {
        "return": sorted(outcome),
        "seconds": round(time.perf_counter() - started, 3),
        "enabled": enabled,
        "warnings": {key: list(value) for key, value in addon_utils._extensions_warnings_get().items()},
    }
    if not enabled:
        raise RuntimeError(f"the extension is not enabled after package_install_files: {outcome}")
    driver.module = enabled[0]


def main() -> None:
    # A hung main loop must not outlive the test: print every thread's stack and exit.
    faulthandler.dump_traceback_later(float(CONFIG.get("deadline", 240)), exit=True)
    log(f"Blender {bpy.app.version_string}, Python {sys.version.split()[0]}")
    import gpu

    RESULT["gpu"] = {
        "backend": gpu.platform.backend_type_get(),
        "renderer": gpu.platform.renderer_get(),
        "version": gpu.platform.version_get(),
    }
    driver = Driver()
    start(driver, lambda: install(driver), first_interval=0.5)


main()
