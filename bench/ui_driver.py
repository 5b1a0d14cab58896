"""Runs INSIDE Debian's Blender (a real window under Xvfb): tests/gui/jobs_driver.py plus a tick meter.

    blender ... --python bench/ui_driver.py -- CONFIG.json        (started through tests/helpers/gui.run_driver)

Before the gui layer's driver installs the add-on, `bpy.app.timers.register` is wrapped so that every timer
function the add-on registers (its module starts with the add-on's name) is timed on each call: duration,
whether an object appeared during it (an import tick) and the process's resident memory. The driver itself is
executed unchanged; its result file gets a `ticks` entry when it is written. CONFIG["ticks_module"] names the
add-on module (default modelslab_3d).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import bpy

CONFIG = json.loads(Path(sys.argv[sys.argv.index("--") + 1]).read_text(encoding="utf-8"))
ADDON_MODULE = CONFIG.get("ticks_module", "modelslab_3d")
DRIVER = Path(CONFIG.get("jobs_driver") or Path(__file__).resolve().parents[1] / "tests" / "gui" / "jobs_driver.py")
TICKS: list[list[float]] = []  # [start (perf_counter), wall ms, objects created, rss MB, main-thread CPU ms]
WRAPPED: dict[Any, Any] = {}
TIMER_NAMES: set[str] = set()
MEMORY: dict[str, float] = {}


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (or its peak with VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return -1.0


def _module_of(function: Any) -> str:
    inner = getattr(function, "func", function)  # functools.partial
    return getattr(inner, "__module__", "") or ""


def _name_of(function: Any) -> str:
    inner = getattr(function, "func", function)
    return f"{_module_of(function)}.{getattr(inner, '__qualname__', repr(inner))}"


_register = bpy.app.timers.register
_unregister = bpy.app.timers.unregister
_is_registered = bpy.app.timers.is_registered


WAITING_TICKS: list[dict[str, Any]] = []  # ticks that waited > 1 ms: what the other threads were doing right after


def _note_waiting_tick(started: float, wall_ms: float, cpu_ms: float) -> None:
    import threading
    import traceback

    names = {thread.ident: thread.name for thread in threading.enumerate()}
    main = threading.main_thread().ident
    stacks = {}
    for ident, frame in sys._current_frames().items():
        if ident == main:
            continue
        summary = traceback.extract_stack(frame)[-4:]
        stacks[names.get(ident, str(ident))] = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in summary]
    WAITING_TICKS.append({"at": started, "wall_ms": round(wall_ms, 3), "cpu_ms": round(cpu_ms, 3), "threads": stacks})


def _wrap(function: Any) -> Any:
    def timed(*args: Any, **kwargs: Any) -> Any:
        objects_before = len(bpy.data.objects)
        cpu_started = time.thread_time()
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            ended = time.perf_counter()
            cpu_ms = (time.thread_time() - cpu_started) * 1000.0
            if (ended - started) * 1000.0 - cpu_ms > 1.0:
                _note_waiting_tick(started, (ended - started) * 1000.0, cpu_ms)
            TICKS.append(
                [
                    started,
                    round((ended - started) * 1000.0, 4),
                    len(bpy.data.objects) - objects_before,
                    round(rss_mb(), 1),
                    round(cpu_ms, 4),
                ]
            )

    return timed


def register(function: Any, *args: Any, **kwargs: Any) -> Any:
    """bpy.app.timers.register, timing the add-on's own timer functions."""
    if _module_of(function).split(".")[0] == ADDON_MODULE or _module_of(function).startswith(
        "bl_ext." + "user_default." + ADDON_MODULE
    ):
        TIMER_NAMES.add(_name_of(function))
        if "before_first_tick_mb" not in MEMORY:
            MEMORY["before_first_tick_mb"] = round(rss_mb(), 1)
        wrapper = WRAPPED.get(function)
        if wrapper is None:
            wrapper = WRAPPED[function] = _wrap(function)
        return _register(wrapper, *args, **kwargs)
    return _register(function, *args, **kwargs)


def unregister(function: Any) -> Any:
    """bpy.app.timers.unregister that also finds the wrapper of a wrapped function."""
    return _unregister(WRAPPED.get(function, function))


def is_registered(function: Any) -> bool:
    """bpy.app.timers.is_registered that also finds the wrapper of a wrapped function."""
    return _is_registered(WRAPPED.get(function, function))


VIEWPORT_DRAWS: list[list[float]] = []  # [start, end] perf_counter of each 3D viewport (WINDOW region) draw
_draw_started: list[float] = []


def _viewport_pre() -> None:
    _draw_started[:] = [time.perf_counter()]


def _viewport_post() -> None:
    if _draw_started:
        VIEWPORT_DRAWS.append([_draw_started.pop(), time.perf_counter()])


# Profiling aid: when the 3D viewport draws (PRE_VIEW .. POST_PIXEL spans the scene drawing), to tell which
# main-loop gaps are viewport redraws (and how long they take) from the add-on's own work.
bpy.types.SpaceView3D.draw_handler_add(_viewport_pre, (), "WINDOW", "PRE_VIEW")
bpy.types.SpaceView3D.draw_handler_add(_viewport_post, (), "WINDOW", "POST_PIXEL")

bpy.app.timers.register = register
bpy.app.timers.unregister = unregister
bpy.app.timers.is_registered = is_registered
MEMORY["at_start_mb"] = round(rss_mb(), 1)

namespace: dict[str, Any] = {"__name__": "__main__", "__file__": str(DRIVER)}
code = compile(DRIVER.read_text(encoding="utf-8"), str(DRIVER), "exec")
exec(code, namespace)  # the gui layer's driver, unchanged: it registers its own timers and returns
_write_result = namespace["write_result"]

# Profiling aid for the sidebar: when the add-on's panels draw and how long their Python draw() code takes, and
# the end of each sidebar (UI region) draw, so that a gap can be attributed to redrawing the sidebar.
SIDEBAR_EVENTS: list[list[float]] = []  # [perf_counter, 0 = an add-on panel's draw() began, 1 = UI region done]
PANEL_DRAW_MS: list[list[Any]] = []  # [class name, Python ms] of each add-on panel draw() / UIList draw_item()


def _sidebar_done() -> None:
    SIDEBAR_EVENTS.append([time.perf_counter(), 1])


def _all_subclasses(cls: type) -> list[type]:
    found: list[type] = []
    sub: type
    for sub in cls.__subclasses__():
        found += [sub, *_all_subclasses(sub)]
    return found


def _timed_draw(method: Any, is_panel: bool, name: str) -> Any:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        if is_panel:
            SIDEBAR_EVENTS.append([started, 0])
        try:
            return method(*args, **kwargs)
        finally:
            PANEL_DRAW_MS.append([name, (time.perf_counter() - started) * 1000.0])

    return timed


_CATEGORY = namespace["CONFIG"].get("category", "ModelsLab")
for _cls in _all_subclasses(bpy.types.Panel):
    if getattr(_cls, "bl_category", "") == _CATEGORY and "draw" in vars(_cls):
        setattr(_cls, "draw", _timed_draw(vars(_cls)["draw"], True, _cls.__name__))  # noqa: B010
for _cls in _all_subclasses(bpy.types.UIList):
    if _module_of(_cls).split(".")[0] == ADDON_MODULE and "draw_item" in vars(_cls):
        setattr(_cls, "draw_item", _timed_draw(vars(_cls)["draw_item"], False, _cls.__name__))  # noqa: B010
bpy.types.SpaceView3D.draw_handler_add(_sidebar_done, (), "UI", "POST_PIXEL")


def write_result_with_ticks() -> None:
    """The driver's write_result, with the tick meter's data added to its RESULT."""
    MEMORY["peak_hwm_mb"] = round(rss_mb("VmHWM"), 1)
    MEMORY["at_end_mb"] = round(rss_mb(), 1)
    driver_t0 = namespace["T0"]  # the driver's clock: its timeline and calls count from here
    namespace["RESULT"]["ticks"] = {
        "timers": sorted(TIMER_NAMES),
        "rows": [[round(start - driver_t0, 4), *rest] for start, *rest in TICKS],
        "memory": MEMORY,
        "waiting_ticks": [{**tick, "at": round(tick["at"] - driver_t0, 4)} for tick in WAITING_TICKS],
        "viewport_draws": [[round(a - driver_t0, 4), round((b - a) * 1000.0, 2)] for a, b in VIEWPORT_DRAWS],
        "sidebar_events": [[round(at - driver_t0, 4), kind] for at, kind in SIDEBAR_EVENTS],
        "panel_draw_ms": [[name, round(ms, 3)] for name, ms in PANEL_DRAW_MS],
        "epoch_at_driver_t0": time.time() - (time.perf_counter() - driver_t0),
    }
    _write_result()


namespace["write_result"] = write_result_with_ticks
