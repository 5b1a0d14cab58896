"""Driver that runs INSIDE a real Blender window (Debian's Blender under Xvfb), started by tests/helpers/gui.py.

    blender --factory-startup --enable-event-simulate --python-exit-code 3 --python jobs_driver.py -- CONFIG.json

After the install at start-up, every step runs in `bpy.app.timers` callbacks, so Blender's main loop keeps
running (drawing, other timers, the add-on's own drain timer) the whole time:

1. install the legacy add-on zip into the (temporary) user dir and enable it;
2. open the 3D viewport sidebar, widen it, and bring the ModelsLab tab to the front (Ctrl+Tab events until a
   ModelsLab panel has drawn, since `Region.active_panel_category` does not exist before Blender 4.x);
3. set `scene.modelslab`, start a 20 ms recording timer, and start `jobs` generations through
   `bpy.ops.modelslab.image_to_3d('INVOKE_DEFAULT')` with a VIEW_3D/UI context override, timing each call;
4. poll (timer) until `jobs` objects are in the collection, recording every gap between recorder firings and
   whether an object appeared during that gap (an import happened in it);
5. frame the objects, let the panel redraw, take a screenshot, optionally save a .blend, write the result
   JSON and quit.

The config (JSON, written by tests/helpers/gui.py) holds no secret: the API key comes from MODELSLAB_API_KEY.
Keys: zip, module, jobs, images, operator_props, scene_settings, prefs, result, screenshot, save_blend,
timeout, record_interval, category, collection, sidebar_width, arrange, settle_seconds, viewport_aa,
screenshot_aa, baseline_seconds.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import bpy
import mathutils

sys.path.insert(0, str(Path(__file__).resolve().parent))  # driver_common.py sits next to this file
from driver_common import (
    CONFIG,
    RESULT,
    T0,
    PhaseDriver,
    collection_objects,
    error,
    job_rows,
    log,
    now,
    spread_in_a_row,
    start,
    write_result,
)

RESULT.update(
    {
        "config": {key: value for key, value in CONFIG.items() if key != "images"},
        "calls": [],
        "objects": [],
        "gaps": {},
        "screenshot": None,
        "saved_blend": None,
    }
)


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (no numpy needed inside Blender)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


class GapRecorder:
    """A timer firing every `interval` seconds that records when it actually ran: the gaps are main-loop stalls."""

    def __init__(self, interval: float):
        self.interval = interval
        self.stamps: list[float] = []
        self.object_counts: list[int] = []
        self.running = False

    def start(self) -> None:
        """Start recording (registers the timer once)."""
        if self.running:
            return
        self.running = True
        bpy.app.timers.register(self._fire, first_interval=self.interval)

    def stop(self) -> None:
        """Stop recording; the timer unregisters itself on its next firing."""
        self.running = False

    def _fire(self) -> float | None:
        if not self.running:
            return None
        self.stamps.append(time.perf_counter() - T0)
        self.object_counts.append(len(collection_objects()))
        return self.interval

    def stats(self, window: tuple[float, float], call_spans: list[tuple[float, float]]) -> dict[str, Any]:
        """Gap statistics in ms over `window` (first operator call .. last import, driver seconds).

        Each gap is classified: import (an object appeared during it), call (it contains the driver's own
        operator calls, whose durations are reported per call instead) or plain; `max_excl_import_ms` and
        `p99_excl_import_ms` cover the plain gaps only. Gaps before the window are the idle baseline.
        timeline rows: [end time, gap ms, flag] with flag 0 plain, 1 import, 2 call (only rows in the window).
        """
        start, end = window
        plain: list[float] = []
        import_gaps: list[float] = []
        call_gaps: list[float] = []
        baseline: list[float] = []
        timeline: list[list[float]] = []
        for index in range(1, len(self.stamps)):
            begin, finish = self.stamps[index - 1], self.stamps[index]
            gap_ms = (finish - begin) * 1000.0
            if finish <= start:
                baseline.append(gap_ms)
                continue
            if begin >= end:
                continue
            if self.object_counts[index] != self.object_counts[index - 1]:
                flag = 1
                import_gaps.append(gap_ms)
            elif any(call_start < finish and call_end > begin for call_start, call_end in call_spans):
                flag = 2
                call_gaps.append(gap_ms)
            else:
                flag = 0
                plain.append(gap_ms)
            timeline.append([round(finish, 4), round(gap_ms, 2), flag])
        every = plain + import_gaps + call_gaps
        return {
            "interval_ms": self.interval * 1000.0,
            "window": [round(start, 4), round(end, 4)],
            "count": len(every),
            "max_ms": max(every, default=None),
            "p50_ms": percentile(every, 0.50),
            "p99_ms": percentile(every, 0.99),
            "max_excl_import_ms": max(plain, default=None),
            "p99_excl_import_ms": percentile(plain, 0.99),
            "import_gaps_ms": [round(gap, 2) for gap in import_gaps],
            "call_gaps_ms": [round(gap, 2) for gap in call_gaps],
            "baseline": {
                "count": len(baseline),
                "max_ms": max(baseline, default=None),
                "p99_ms": percentile(baseline, 0.99),
            },
            "timeline": timeline,
        }


class Driver(PhaseDriver):
    """The step-by-step state machine, advanced by one timer."""

    def __init__(self) -> None:
        super().__init__()
        self.recorder = GapRecorder(float(CONFIG.get("record_interval", 0.02)))
        self.panel_draws: list[tuple[float, str]] = []
        self.tab_attempts = 0
        self.tab_pressed_at = 0.0
        self.drag_step = 0
        self.jobs_started_at = 0.0
        self.done_at = 0.0
        self.first_seen: dict[str, float] = {}

    # --- helpers ----------------------------------------------------------------------------------
    @staticmethod
    def sidebar_panel_classes() -> list[type]:
        """Every registered panel class of the 3D viewport's sidebar (built-in and the add-on's)."""
        found: list[type] = []
        pending = list(bpy.types.Panel.__subclasses__())
        while pending:  # walk the whole tree: add-ons often share a mixin base between their panels
            cls = pending.pop()
            pending.extend(cls.__subclasses__())
            if (
                getattr(cls, "is_registered", False)
                and hasattr(cls, "draw")
                and getattr(cls, "bl_space_type", "") == "VIEW_3D"
                and getattr(cls, "bl_region_type", "") == "UI"
            ):
                found.append(cls)
        return found

    def draw_recorder(self, category: str) -> Any:
        """A draw function for Panel.append (Blender's documented way to extend a panel): it draws nothing and
        only records which sidebar tab was drawn when, so the driver knows which tab is in front."""

        def record(_panel: Any, _context: Any) -> None:
            self.panel_draws.append((now(), category))

        return record

    def last_draw(self, category: str | None = None, after: float = 0.0) -> float | None:
        """When a sidebar panel (of `category`, if given) last drew after `after` (None: not since)."""
        for drawn_at, drawn_category in reversed(self.panel_draws):
            if drawn_at <= after:
                return None
            if category is None or drawn_category == category:
                return drawn_at
        return None

    # --- the timer --------------------------------------------------------------------------------
    def phase_ui(self) -> float | None:
        area, _, _ = self.view3d()
        space = area.spaces.active
        space.show_region_ui = True
        # Show the imported meshes' vertex colours; set before the jobs so its shaders compile up front.
        space.shading.color_type = "VERTEX"
        classes = self.sidebar_panel_classes()
        ours = [cls.__name__ for cls in classes if getattr(cls, "bl_category", "") == CONFIG["category"]]
        RESULT["panel_classes"] = ours
        if not ours:
            error(f"no VIEW_3D sidebar panel with bl_category {CONFIG['category']!r} is registered")
            return self.finish()
        for cls in classes:
            cls.append(self.draw_recorder(getattr(cls, "bl_category", "") or "Misc"))
        self.enter("widen")
        return 0.2

    def phase_widen(self) -> float:
        # Drag the sidebar's left edge with simulated mouse events (needs region overlap off, set at start-up).
        window = self.window()
        _, region, _ = self.view3d()
        target = int(CONFIG.get("sidebar_width", 0))
        x, y = region.x + 1, region.y + region.height // 2
        if self.drag_step == 0:
            if target <= region.width:
                self.enter("tab")
                return 0.05
            self.drag_from = (x, y, target - region.width)
            window.event_simulate(type="MOUSEMOVE", value="NOTHING", x=x, y=y)
        elif self.drag_step == 1:
            window.event_simulate(type="LEFTMOUSE", value="PRESS", x=self.drag_from[0], y=y)
        elif self.drag_step <= 4:
            x0, y0, distance = self.drag_from
            window.event_simulate(type="MOUSEMOVE", value="NOTHING", x=x0 - distance * (self.drag_step - 1) // 3, y=y0)
        else:
            x0, y0, distance = self.drag_from
            window.event_simulate(type="LEFTMOUSE", value="RELEASE", x=x0 - distance, y=y0)
            self.enter("tab")
            return 0.2
        self.drag_step += 1
        return 0.03

    def phase_tab(self) -> float | None:
        # Ctrl+Tab over the sidebar cycles its tabs (and wraps); after each press wait for the sidebar to redraw,
        # then look at which tab drew last.
        _, region, _ = self.view3d()
        RESULT["sidebar_width"] = region.width
        category = CONFIG["category"]
        if not self.tab_pressed_at:  # first visit: wait for a redraw to see which tab is in front now
            self.tab_pressed_at = now()
            region.tag_redraw()
            return 0.05
        if hasattr(region, "active_panel_category"):  # Blender 4.x has it; 3.4 does not
            region.active_panel_category = category
        drawn_at = self.last_draw(after=self.tab_pressed_at)
        if drawn_at is None and now() - self.tab_pressed_at < 1.0:  # C-defined panels (Item tab) do not report
            region.tag_redraw()
            return 0.05
        in_front = next((c for t, c in reversed(self.panel_draws) if t == drawn_at), None) if drawn_at else None
        RESULT.setdefault("tab_log", []).append([round(now(), 3), self.tab_attempts, in_front])
        if drawn_at is not None and self.last_draw(category, after=self.tab_pressed_at) == drawn_at:
            RESULT["tab_switches"] = self.tab_attempts
            self.enter("start")
            return 0.05
        if self.tab_attempts >= 12:
            error(f"the {category} sidebar tab never came to the front after {self.tab_attempts} Ctrl+Tab presses")
            return self.finish()
        self.press_ctrl_tab(region)
        self.tab_attempts += 1
        self.tab_pressed_at = now()
        return 0.05

    def phase_start(self) -> float | None:
        # Prepare, then record an idle baseline for a moment before the calls (phase "calls").
        scene = bpy.context.scene
        settings = getattr(scene, "modelslab", None)
        if settings is None:
            error("bpy.types.Scene.modelslab is not registered")
            return self.finish()
        for key, value in CONFIG.get("scene_settings", {}).items():
            setattr(settings, key, value)
        settings.image_path = CONFIG["images"][0]  # the first job takes its image (and the rest) from the scene
        default_cube = bpy.data.objects.get("Cube")
        if default_cube is not None:  # the factory scene's cube sits where imports land (the 3D cursor)
            bpy.data.objects.remove(default_cube)
        self.recorder.start()
        self.enter("calls")
        return float(CONFIG.get("baseline_seconds", 1.0))

    def phase_calls(self) -> float | None:
        settings = bpy.context.scene.modelslab
        images: list[str] = CONFIG["images"]
        self.jobs_started_at = now()
        for index in range(int(CONFIG["jobs"])):
            image = images[index % len(images)]
            props = dict(CONFIG.get("operator_props", {}))
            if index == 0:
                image = settings.image_path
            else:
                props["image"] = image
            call: dict[str, Any] = {"image": image, "props": props, "objects_before": len(collection_objects())}
            started = time.perf_counter()
            call["started_at"] = started - T0
            try:
                with self.override("UI"):
                    call["return"] = sorted(bpy.ops.modelslab.image_to_3d("INVOKE_DEFAULT", **props))
            except Exception as exc:  # an operator that reports an ERROR raises RuntimeError here
                call["return"] = ["EXCEPTION"]
                error(f"job {index} ({image}): operator raised {type(exc).__name__}: {exc}")
            call["seconds"] = time.perf_counter() - started
            call["objects_after"] = len(collection_objects())
            call["at"] = now()
            RESULT["calls"].append(call)
        self.enter("wait")
        return 0.05

    def phase_wait(self) -> float | None:
        objects = collection_objects()
        for obj in objects:
            self.first_seen.setdefault(obj.name, now())
        if len(objects) >= int(CONFIG["jobs"]):
            self.done_at = now()
            RESULT["jobs_seconds"] = round(self.done_at - self.jobs_started_at, 3)
            RESULT["jobs_window"] = [round(self.jobs_started_at, 4), round(self.done_at, 4)]
            self.enter("drain")
            return 0.01
        rows = job_rows()
        failed = [row for row in rows if row["state"] in ("failed", "cancelled", "timed_out")]
        if failed and len(rows) >= int(CONFIG["jobs"]):
            error(f"{len(failed)} job(s) ended without an object: {failed}")
            self.recorder.stop()
            self.enter("settle")
            return self.present()
        if now() - self.phase_started > float(CONFIG.get("timeout", 120)):
            error(f"timed out: {len(objects)} of {CONFIG['jobs']} objects in collection {CONFIG['collection']!r}")
            self.recorder.stop()
            self.enter("settle")
            return 0.05
        return 0.05

    def phase_drain(self) -> float:
        # Keep recording until the recorder has fired after the last import: that closes the import's gap.
        stamps = self.recorder.stamps
        if (not stamps or stamps[-1] <= self.done_at) and now() - self.phase_started < 5.0:
            return 0.01
        self.recorder.stop()
        self.enter("settle")
        return self.present()

    def present(self) -> float:
        """Record the imported objects, then frame them for the screenshot."""
        objects = collection_objects()
        for obj in objects:
            RESULT["objects"].append(
                {
                    "name": obj.name,
                    "vertices": len(obj.data.vertices),
                    "faces": len(obj.data.polygons),
                    "location": list(obj.location),
                    "collections": [collection.name for collection in obj.users_collection],
                    "color_attributes": [attr.name for attr in getattr(obj.data, "color_attributes", [])],
                    "materials": [slot.material.name for slot in obj.material_slots if slot.material],
                    "props": {key: str(obj[key])[:200] for key in obj.keys() if key.startswith("modelslab_")},
                    "selected": obj.select_get(),
                    "seen_at": round(self.first_seen.get(obj.name, -1.0) - self.jobs_started_at, 3),
                }
            )
        if CONFIG.get("arrange", True) and objects:
            # Imports all land on the 3D cursor; for the screenshot, spread them along the view's horizontal
            # and point the view at the row (their recorded locations above are where the add-on put them).
            region_3d = self.view3d()[0].spaces.active.region_3d
            center, spacing = spread_in_a_row(objects, region_3d, 1.1)
            region_3d.view_location = center + mathutils.Vector((0.0, 0.0, spacing * 0.25))
            region_3d.view_distance = spacing * (len(objects) + 1) * 0.75
        if CONFIG.get("screenshot"):
            bpy.context.preferences.system.viewport_aa = CONFIG.get("screenshot_aa", "8")
        for area in self.window().screen.areas:
            area.tag_redraw()
        return 0.1

    def phase_settle(self) -> float:
        # Let the panel redraw the finished state before the screenshot.
        if now() - self.phase_started < float(CONFIG.get("settle_seconds", 1.0)):
            self.view3d()[1].tag_redraw()
            return 0.1
        self.enter("shot")
        return 0.05

    def phase_shot(self) -> float | None:
        target = CONFIG.get("screenshot")
        if target:
            with self.override("UI"):
                outcome = bpy.ops.screen.screenshot(filepath=target, check_existing=False)
            RESULT["screenshot"] = {
                "path": target,
                "return": sorted(outcome),
                "panel_drawn_at": self.last_draw(CONFIG["category"]),
            }
        return self.finish()

    def finish(self) -> None:
        """Stats, optional .blend, result file, quit (always reached, also after an error)."""
        self.recorder.stop()
        calls = RESULT["calls"]
        window_start = min((call["started_at"] for call in calls), default=self.jobs_started_at)
        last_seen = max(self.first_seen.values(), default=0.0)
        window = (window_start, self.done_at or last_seen or now())
        spans = [(call["started_at"], call["at"]) for call in calls]
        RESULT["gaps"] = self.recorder.stats(window, spans)
        RESULT["phases"][self.phase] = round(now() - self.phase_started, 3)
        RESULT["job_rows"] = job_rows()
        RESULT["panel_draw_count"] = sum(1 for _, category in self.panel_draws if category == CONFIG["category"])
        save_blend = CONFIG.get("save_blend")
        if save_blend:
            try:
                bpy.ops.wm.save_as_mainfile(filepath=save_blend, copy=True)
                RESULT["saved_blend"] = save_blend
            except Exception as exc:
                error(f"saving {save_blend} failed: {exc}")
        RESULT["total_seconds"] = round(now(), 3)
        write_result()
        log(f"result written to {CONFIG['result']}; quitting")
        bpy.ops.wm.quit_blender()
        return None


def install_addon() -> None:
    """Install the legacy zip into the user scripts dir (HOME/XDG_CONFIG_HOME point at a temp dir) and enable."""
    preferences = bpy.context.preferences
    preferences.view.show_splash = False
    preferences.view.smooth_view = 0
    preferences.system.use_region_overlap = False  # an opaque sidebar, whose edge can be dragged
    # Workbench's progressive anti-aliasing redraws the viewport once per sample after every change; with
    # Xvfb's software OpenGL each sample is a 100-200 ms frame, which would swamp the add-on's own stalls.
    preferences.system.viewport_aa = CONFIG.get("viewport_aa", "OFF")
    started = time.perf_counter()
    bpy.ops.preferences.addon_install(overwrite=True, filepath=CONFIG["zip"])
    outcome = bpy.ops.preferences.addon_enable(module=CONFIG["module"])
    RESULT["enable"] = {"return": sorted(outcome), "seconds": round(time.perf_counter() - started, 4)}
    RESULT["user_scripts"] = bpy.utils.user_resource("SCRIPTS")
    addon = preferences.addons.get(CONFIG["module"])
    if addon is None:
        error(f"add-on {CONFIG['module']} is not enabled after addon_enable")
        return
    for key, value in CONFIG.get("prefs", {}).items():
        if addon.preferences is not None and hasattr(addon.preferences, key):
            setattr(addon.preferences, key, value)
        else:
            error(f"add-on preferences have no {key!r}")


def main() -> None:
    log(f"Blender {bpy.app.version_string}, background={bpy.app.background}")
    start(Driver(), install_addon, first_interval=0.3)


main()
