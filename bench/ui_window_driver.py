"""Runs INSIDE a real Blender window (Debian's 3.4 under Xvfb, or Blender 5.2 in scripts/blender52_root.sh's
root filesystem): the main-loop stall ratio and the time from the server finishing a job to its object.

    blender [--enable-event-simulate] --python-exit-code 3 --python ui_window_driver.py -- CONFIG.json

A 20 ms timer records when it fires for the whole session. The add-on is installed the way users of that
Blender install it (the legacy zip through addon_install in 3.4, the extension zip through Blender's own
extension installer in 5.2), and the sidebar is opened at the ModelsLab tab: simulated Ctrl+Tab presses in
3.4 until one of its panels draws; in 5.2, whose window takes no simulated events, real X clicks (xdotool)
down the tab strip until Blender reports the tab in front. Then ROUNDS times: IDLE_SECONDS of the same window
idle, then JOBS jobs started through the N-panel operator until every object is imported (the objects are
then removed, so each round starts alike). Then the bare redraw trials, with no job: idle seconds, then the
same seconds with the sidebar (with the job list, then with its rows cleared), the 3D view's header, the
Properties editor, or (no redraw) a window-manager property tagged or set every 0.1 s, which is Blender's own
cost of a region redraw in this window. Every gap is split with the kernel's per-thread accounting (Clocks).
Last, SINGLE jobs one after the other: the epoch time each object
was first seen in the scene (checked on every timer firing) with its remote id, for the bench to compare with
the server's finished_at.

Config keys: install ("legacy" or "extension"), zip, module (legacy) or extension_id, images, jobs, rounds,
idle_seconds, single, category, keys ("xdotool" or simulated), result, timeout (per phase), deadline.
"""

from __future__ import annotations

import cProfile
import faulthandler
import io
import json
import os
import pstats
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import bpy

CONFIG: dict[str, Any] = json.loads(Path(sys.argv[sys.argv.index("--") + 1]).read_text(encoding="utf-8"))
RESULT: dict[str, Any] = {"blender_version": bpy.app.version_string, "errors": [], "rounds": [], "single": []}
T0 = time.perf_counter()
FIRINGS: list[float] = []  # perf_counter of every 20 ms timer firing
OBJECT_COUNTS: list[int] = []  # ModelsLab mesh objects in the scene at each firing
PANEL_DRAWS: list[float] = []  # now() of each ModelsLab panel's draw()
VIEWPORT_DRAWS: list[float] = []  # now() at the end of each 3D-viewport main region redraw
SIDEBAR_ENDS: list[float] = []  # now() at the end of each 3D-viewport sidebar redraw (its POST_PIXEL handler)
PUMPS: list[tuple[float, float]] = []  # (perf_counter start, seconds) of each call of the add-on's pump()
PY_DRAWS: list[tuple[float, float]] = []  # (perf_counter start, seconds) of each add-on panel/list draw call
PROFILE = cProfile.Profile()  # the add-on's draw code while jobs are in flight


def now() -> float:
    return time.perf_counter() - T0


def log(message: str) -> None:
    print(f"[ui_window_driver] {now():7.2f}s {message}", flush=True)


def error(message: str) -> None:
    log(f"ERROR: {message}")
    RESULT["errors"].append(message)


def write_result() -> None:
    path = Path(CONFIG["result"])
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(RESULT, indent=1, default=str), encoding="utf-8")
    os.replace(partial, path)


def addon_objects() -> list[Any]:
    collection = bpy.data.collections.get(CONFIG.get("collection", "ModelsLab"))
    return [obj for obj in collection.objects if obj.type == "MESH"] if collection else []


def job_states() -> list[str]:
    rows = getattr(bpy.context.window_manager, "modelslab_jobs", None) or []
    return [str(getattr(row, "state", "")) for row in rows]


SEEN: dict[str, float] = {}  # object name -> epoch time first seen


class Clocks:
    """The kernel's per-thread accounting (/proc/<pid>/task/<tid>/schedstat: ns on a CPU, ns runnable but waiting
    for one), read at every timer firing so that each gap splits into the main thread computing, waiting for a
    CPU (the machine's load) and blocked (sleeping on a lock, the GIL, the X server or a poll); with the CPU time
    of Mesa's llvmpipe rasterizer threads, of the process's other threads and of the X server over the same gap."""

    def __init__(self) -> None:
        self.main_tid = threading.get_native_id()
        self.fds: dict[str, int] = {}
        self.gl_threads: set[str] = set()  # Mesa's llvmpipe rasterizer threads (named llvmpipe-N)
        self.listed_at = 0.0
        self.xserver = self.open(_xserver_schedstat())

    @staticmethod
    def open(path: str | None) -> int | None:
        try:
            return os.open(path, os.O_RDONLY) if path else None
        except OSError:
            return None

    @staticmethod
    def read(fd: int | None) -> tuple[int, int]:
        if fd is None:
            return 0, 0
        try:
            fields = os.pread(fd, 128, 0).split()
            return int(fields[0]), int(fields[1])
        except (OSError, ValueError, IndexError):
            return 0, 0

    def sample(self) -> tuple[int, int, int, int, int, int]:
        """(main thread ns on CPU, main thread ns waiting for a CPU, llvmpipe threads' ns on CPU, the other
        threads' ns on CPU, X server ns on CPU, llvmpipe threads' ns waiting for a CPU)."""
        at = time.perf_counter()
        if at - self.listed_at > 0.5:  # threads come and go with the jobs
            self.listed_at = at
            try:
                tids = set(os.listdir("/proc/self/task"))
            except OSError:
                tids = set(self.fds)
            for tid in set(self.fds) - tids:
                os.close(self.fds.pop(tid))
                self.gl_threads.discard(tid)
            for tid in tids - set(self.fds):
                fd = self.open(f"/proc/self/task/{tid}/schedstat")
                if fd is not None:
                    self.fds[tid] = fd
                    try:
                        if Path(f"/proc/self/task/{tid}/comm").read_text().startswith("llvmpipe"):
                            self.gl_threads.add(tid)
                    except OSError:
                        pass
        main = self.read(self.fds.get(str(self.main_tid)))
        gl = gl_waiting = others = 0
        for tid, fd in self.fds.items():
            if tid in self.gl_threads:
                on_cpu, waiting = self.read(fd)
                gl, gl_waiting = gl + on_cpu, gl_waiting + waiting
            elif tid != str(self.main_tid):
                others += self.read(fd)[0]
        return main[0], main[1], gl, others, self.read(self.xserver)[0], gl_waiting


def _xserver_schedstat() -> str | None:
    """The schedstat file of the X server this window draws on (Xvfb serving $DISPLAY), if it can be found."""
    display = os.environ.get("DISPLAY", "").split(".")[0]
    if not display:
        return None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"Xvfb") and display.encode() in argv:
            return f"/proc/{entry}/schedstat"
    return None


CLOCKS: Clocks | None = None
SCHED: list[tuple[int, int, int, int, int, int]] = []  # Clocks.sample() at each firing


def record() -> float:
    """The 20 ms timer: its firing times, and the objects that appeared since the last firing."""
    FIRINGS.append(time.perf_counter())
    SCHED.append(CLOCKS.sample() if CLOCKS is not None else (0, 0, 0, 0, 0, 0))
    objects = addon_objects()
    OBJECT_COUNTS.append(len(objects))
    if len(objects) != len(SEEN):
        epoch = time.time()
        for obj in objects:
            SEEN.setdefault(obj.name, epoch)
    return 0.02


def python_draw_per_redraw(start: float, end: float) -> float | None:
    """Median over the sidebar redraws inside [start, end] of the add-on's own Python draw time (ms) in each."""
    totals, previous = [], -1.0
    for finish in SIDEBAR_ENDS:
        end_at = T0 + finish
        if start <= end_at <= end:
            spent = sum(sec for at, sec in PY_DRAWS if previous < at <= end_at)
            if spent:
                totals.append(spent * 1000.0)
        previous = end_at
    return _median(totals)


def timed(table: list[tuple[float, float]], function: Any, profiled: Any = None) -> Any:
    """function wrapped to note (start, seconds) of each call in table (and to run under PROFILE while
    profiled() is true)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            if profiled is not None and profiled():
                try:
                    PROFILE.enable()
                except ValueError:  # another profiler is active
                    return function(*args, **kwargs)
                try:
                    return function(*args, **kwargs)
                finally:
                    PROFILE.disable()
            return function(*args, **kwargs)
        finally:
            table.append((started, time.perf_counter() - started))

    return wrapper


def profile_text(limit: int = 25) -> str:
    stream = io.StringIO()
    try:
        stats = pstats.Stats(PROFILE, stream=stream).sort_stats("cumulative")
        stats.print_stats(r"modelslab_3d/(panels|blender)|bpy", limit)  # the profiler sees worker threads too
    except TypeError:  # nothing profiled
        return ""
    return stream.getvalue()[-6000:]


def sidebar_redraws_ms(start: float, end: float) -> list[float]:
    """Durations (ms) of the sidebar redraws inside [start, end] (perf_counter) that drew a ModelsLab panel: from
    its first panel's draw() to the end of the region's drawing."""
    spans, previous_end = [], -1.0
    for finish in SIDEBAR_ENDS:
        first = next((at for at in PANEL_DRAWS if previous_end < at <= finish), None)
        if first is not None and start <= T0 + first and T0 + finish <= end:
            spans.append((finish - first) * 1000.0)
        previous_end = finish
    return spans


def gaps_without_a_sidebar_draw(start: float, end: float) -> list[float]:
    """Gaps (ms) between firings inside [start, end] during which no ModelsLab panel drew."""
    draws = sorted(T0 + at for at in PANEL_DRAWS)
    found, cursor = [], 0
    for index in range(1, len(FIRINGS)):
        begin, finish = FIRINGS[index - 1], FIRINGS[index]
        if begin < start or finish > end:
            continue
        while cursor < len(draws) and draws[cursor] < begin:
            cursor += 1
        if cursor >= len(draws) or draws[cursor] > finish:
            found.append((finish - begin) * 1000.0)
    return found


def gaps_between(start: float, end: float) -> tuple[list[float], list[float]]:
    """(plain gaps, gaps during which an object was imported) in ms between firings inside [start, end]."""
    plain, imports = [], []
    for index in range(1, len(FIRINGS)):
        if FIRINGS[index - 1] < start or FIRINGS[index] > end:
            continue
        gap = (FIRINGS[index] - FIRINGS[index - 1]) * 1000.0
        (imports if OBJECT_COUNTS[index] != OBJECT_COUNTS[index - 1] else plain).append(gap)
    return plain, imports


def addon_ms(table: list[tuple[float, float]], begin: float, finish: float) -> float:
    """Sum of the (perf_counter start, seconds) calls in `table` that started inside [begin, finish], in ms."""
    return round(sum(seconds for at, seconds in table if begin <= at <= finish) * 1000.0, 1)


QUIET_SECONDS = 3.0  # an idle baseline starts once the window has not redrawn for this long


def window_drew_within(seconds: float) -> bool:
    """Whether the window redrew anything during the last `seconds` (Mesa's llvmpipe threads used a CPU)."""
    since = time.perf_counter() - seconds
    recent = [sample for at, sample in zip(FIRINGS, SCHED, strict=False) if at >= since]
    return len(recent) < 2 or recent[-1][2] > recent[0][2]


def load_average() -> list[float]:
    """The machine's 1-, 5- and 15-minute load averages (2 cores here: other work competes for them)."""
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []


def breakdown(index: int) -> dict[str, Any]:
    """What the main thread did during the gap ending at firing `index` (Clocks), and whether a sidebar drew."""
    begin, finish = FIRINGS[index - 1], FIRINGS[index]
    before, after = SCHED[index - 1], SCHED[index]
    gap = (finish - begin) * 1000.0
    cpu, runnable = (after[0] - before[0]) / 1e6, (after[1] - before[1]) / 1e6
    return {
        "gap_ms": round(gap, 1),
        "main_on_cpu_ms": round(cpu, 1),
        "main_waiting_for_a_cpu_ms": round(runnable, 1),
        "main_blocked_ms": round(max(0.0, gap - cpu - runnable), 1),
        "llvmpipe_threads_on_cpu_ms": round((after[2] - before[2]) / 1e6, 1),
        "llvmpipe_threads_waiting_for_a_cpu_ms": round((after[5] - before[5]) / 1e6, 1),
        "other_threads_on_cpu_ms": round((after[3] - before[3]) / 1e6, 1),
        "xserver_on_cpu_ms": round((after[4] - before[4]) / 1e6, 1),
        "sidebar_drew": any(begin <= T0 + at <= finish for at in PANEL_DRAWS),
        "sidebar_region_draws": sum(1 for at in SIDEBAR_ENDS if begin <= T0 + at <= finish),
        "addon_tick_ms": addon_ms(PUMPS, begin, finish),
        "addon_panel_python_ms": addon_ms(PY_DRAWS, begin, finish),
    }


def largest_gaps(start: float, end: float, count: int = 3, undrawn: bool = False) -> list[dict[str, Any]]:
    """breakdown() of the largest gaps inside [start, end] (perf_counter), largest first (undrawn: only those
    during which no ModelsLab panel drew)."""
    inside = [i for i in range(1, len(FIRINGS)) if FIRINGS[i - 1] >= start and FIRINGS[i] <= end]
    if undrawn:
        inside = [i for i in inside if not any(FIRINGS[i - 1] <= T0 + at <= FIRINGS[i] for at in PANEL_DRAWS)]
    inside.sort(key=lambda i: FIRINGS[i] - FIRINGS[i - 1], reverse=True)
    return [breakdown(i) for i in inside[:count]]


def time_shares(start: float, end: float) -> dict[str, float]:
    """Over [start, end]: the main thread's ms on a CPU, waiting for one, and blocked; other threads' and the X
    server's ms on a CPU (from the firings nearest the ends)."""
    inside = [i for i in range(len(FIRINGS)) if start <= FIRINGS[i] <= end]
    if len(inside) < 2:
        return {}
    first, last = inside[0], inside[-1]
    wall = (FIRINGS[last] - FIRINGS[first]) * 1000.0
    cpu = (SCHED[last][0] - SCHED[first][0]) / 1e6
    runnable = (SCHED[last][1] - SCHED[first][1]) / 1e6
    return {
        "wall_ms": round(wall, 1),
        "main_on_cpu_ms": round(cpu, 1),
        "main_waiting_for_a_cpu_ms": round(runnable, 1),
        "main_blocked_or_idle_ms": round(max(0.0, wall - cpu - runnable), 1),
        "llvmpipe_threads_on_cpu_ms": round((SCHED[last][2] - SCHED[first][2]) / 1e6, 1),
        "llvmpipe_threads_waiting_for_a_cpu_ms": round((SCHED[last][5] - SCHED[first][5]) / 1e6, 1),
        "other_threads_on_cpu_ms": round((SCHED[last][3] - SCHED[first][3]) / 1e6, 1),
        "xserver_on_cpu_ms": round((SCHED[last][4] - SCHED[first][4]) / 1e6, 1),
    }


class Driver:
    def __init__(self, module: str) -> None:
        self.module = module
        self.phase = "tab"
        self.phase_started = now()
        self.round_started = 0.0
        self.busy_started = 0.0
        self.calls_ended = 0.0
        self.presses = 0
        self.pressed_at = 0.0
        self.tab_y = 0
        self.single_started = 0.0
        self.trials = list(BARE_TRIALS)  # bare redraw trials still to run
        self.trial = ""

    def enter(self, phase: str) -> None:
        self.phase = phase
        self.phase_started = now()

    def timed_out(self) -> bool:
        return now() - self.phase_started > float(CONFIG.get("timeout", 120))

    @staticmethod
    def view3d() -> tuple[Any, Any, Any, Any]:
        window = bpy.context.window_manager.windows[0]
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                regions = {region.type: region for region in area.regions}
                return window, area, regions["UI"], regions["WINDOW"]
        raise RuntimeError("no VIEW_3D area in the main window")

    def submit(self, image: str) -> None:
        window, area, sidebar, _ = self.view3d()
        with bpy.context.temp_override(window=window, screen=window.screen, area=area, region=sidebar):
            outcome = bpy.ops.modelslab.image_to_3d("INVOKE_DEFAULT", image=image)
        if "RUNNING_MODAL" not in outcome and "FINISHED" not in outcome:
            error(f"the operator returned {sorted(outcome)}")

    def step(self) -> float | None:
        try:
            delay = getattr(self, f"phase_{self.phase}")()
        except Exception:
            error(f"phase {self.phase} raised:\n{traceback.format_exc()}")
            return self.finish()
        return delay

    def phase_tab(self) -> float | None:
        window, area, sidebar, _ = self.view3d()
        area.spaces.active.show_region_ui = True
        if CONFIG.get("keys") == "xdotool":
            return self.click_tab(window, sidebar)
        if PANEL_DRAWS and PANEL_DRAWS[-1] > self.pressed_at:
            RESULT["tab_presses"] = self.presses
            self.enter("settle")
            return 0.05
        if self.pressed_at and now() - self.pressed_at < 0.6:
            sidebar.tag_redraw()
            return 0.05
        if self.presses >= 14:
            error("the ModelsLab sidebar tab never came to the front (Ctrl+Tab)")
            return self.finish()
        x, y = sidebar.x + sidebar.width // 2, sidebar.y + sidebar.height // 2
        window.event_simulate(type="MOUSEMOVE", value="NOTHING", x=x, y=y)
        window.event_simulate(type="TAB", value="PRESS", ctrl=True, x=x, y=y)
        window.event_simulate(type="TAB", value="RELEASE", ctrl=True, x=x, y=y)
        self.presses += 1
        self.pressed_at = now()
        return 0.1

    def click_tab(self, window: Any, sidebar: Any) -> float | None:
        """5.2 takes no simulated events here: click down the tab strip on the sidebar's right edge with real X
        events until Blender reports the ModelsLab tab in front (clicking the tab already in front folds the
        sidebar; the next click at the same place unfolds it)."""
        if sidebar.active_panel_category == CONFIG.get("category", "ModelsLab") and sidebar.width > 100:
            RESULT["tab_presses"] = self.presses
            self.enter("settle")
            return 0.05
        if sidebar.width > 100 and self.presses:
            self.tab_y += 14
        if self.tab_y > sidebar.height or self.presses > 150:
            error("clicking down the sidebar's tab strip never brought the ModelsLab tab to the front")
            return self.finish()
        region_y = sidebar.height - 12 - self.tab_y
        screen_x = int(window.x + sidebar.x + sidebar.width - 9)
        screen_y = int(window.y + window.height - (sidebar.y + region_y))
        subprocess.run(["xdotool", "mousemove", str(screen_x), str(screen_y), "click", "1"], check=True)
        self.presses += 1
        return 0.15

    def phase_settle(self) -> float | None:
        if now() - self.phase_started < 2.0:  # first draws, shader compilation
            return 0.1
        if window_drew_within(QUIET_SECONDS) and now() - self.phase_started < 12.0:
            return 0.1  # e.g. the status bar's report of the last import still animating: not idle yet
        RESULT.setdefault("settle_seconds", []).append(round(now() - self.phase_started, 2))
        self.start_round()
        return 0.1

    def start_round(self) -> None:
        RESULT.setdefault("load_average_at_round_start", []).append(load_average())
        self.round_started = time.perf_counter()
        self.enter("idle")

    def phase_idle(self) -> float | None:
        if now() - self.phase_started < float(CONFIG.get("idle_seconds", 3.0)):
            return 0.1
        self.busy_started = time.perf_counter()
        for index in range(int(CONFIG["jobs"])):
            self.submit(CONFIG["images"][index % len(CONFIG["images"])])
        self.calls_ended = time.perf_counter()
        self.enter("busy")
        return 0.1

    def phase_busy(self) -> float | None:
        jobs = int(CONFIG["jobs"])
        states = job_states()
        if len(addon_objects()) >= jobs and not any(s in RUNNING for s in states):
            end = time.perf_counter()
            first_import = next(
                FIRINGS[i - 1]
                for i in range(1, len(FIRINGS))
                if FIRINGS[i - 1] >= self.calls_ended and OBJECT_COUNTS[i] != OBJECT_COUNTS[i - 1]
            )
            idle_plain, idle_imports = gaps_between(self.round_started, self.busy_started)
            in_flight, _ = gaps_between(self.calls_ended, first_import)  # all jobs running, none imported yet
            undrawn = gaps_without_a_sidebar_draw(self.calls_ended, first_import)
            draws = [at for at in PANEL_DRAWS if self.calls_ended <= T0 + at <= first_import]
            redraws = sidebar_redraws_ms(self.calls_ended, first_import)
            idle_redraws = sidebar_redraws_ms(self.round_started, self.busy_started)
            later_plain, later_imports = gaps_between(first_import, end)
            RESULT["rounds"].append(
                {
                    "idle_max_ms": round(max(idle_plain + idle_imports), 2),
                    "idle_gaps": len(idle_plain) + len(idle_imports),
                    "busy_max_ms": round(max(in_flight), 2) if in_flight else None,
                    "busy_p99_ms": round(sorted(in_flight)[int(0.99 * (len(in_flight) - 1))], 2) if in_flight else None,
                    "busy_gaps": len(in_flight),
                    "busy_stalled_ms": round(sum(max(0.0, g - max(idle_plain + idle_imports)) for g in in_flight), 1),
                    "busy_max_without_sidebar_draw_ms": round(max(undrawn), 2) if undrawn else None,
                    "sidebar_panel_draws": len(draws),
                    "sidebar_redraws": len(redraws),
                    "sidebar_redraw_ms_median": round(sorted(redraws)[len(redraws) // 2], 2) if redraws else None,
                    "sidebar_redraw_ms_max": round(max(redraws), 2) if redraws else None,
                    "idle_sidebar_redraws": len(idle_redraws),
                    "viewport_redraws": sum(1 for at in VIEWPORT_DRAWS if self.calls_ended <= T0 + at <= first_import),
                    "idle_viewport_redraws": sum(
                        1 for at in VIEWPORT_DRAWS if self.round_started <= T0 + at <= self.busy_started
                    ),
                    "busy_seconds": round(first_import - self.calls_ended, 3),
                    "importing_max_plain_ms": round(max(later_plain), 2) if later_plain else None,
                    "import_gaps_ms": [round(g, 1) for g in later_imports],
                    "importing_seconds": round(end - first_import, 3),
                    "calls_ms": round((self.calls_ended - self.busy_started) * 1000.0, 2),
                    "idle_largest_gaps": largest_gaps(self.round_started, self.busy_started, 2),
                    "busy_largest_gaps": largest_gaps(self.calls_ended, first_import, 4),
                    "busy_largest_undrawn_gaps": largest_gaps(self.calls_ended, first_import, 2, undrawn=True),
                    "addon_ticks": len([1 for at, _ in PUMPS if self.calls_ended <= at <= first_import]),
                    "addon_tick_ms_max": max(
                        (sec * 1000.0 for at, sec in PUMPS if self.calls_ended <= at <= first_import), default=None
                    ),
                    "addon_panel_python_ms_per_redraw": python_draw_per_redraw(self.calls_ended, first_import),
                    "idle_time": time_shares(self.round_started, self.busy_started),
                    "busy_time": time_shares(self.calls_ended, first_import),
                }
            )
            log(f"round {len(RESULT['rounds'])}: {RESULT['rounds'][-1]}")
            self.clear_objects()
            if len(RESULT["rounds"]) < int(CONFIG.get("rounds", 3)):
                self.enter("settle")  # the removal redraws the window: the next idle seconds start after it
            else:
                self.enter("bare_settle")
            return 0.2
        failed = [s for s in states if s in ("failed", "cancelled", "timed_out")]
        if failed:
            error(f"jobs ended without an object: {states}")
            return self.finish()
        if self.timed_out():
            error(f"the jobs did not import in time: {states}")
            return self.finish()
        return 0.1

    def clear_objects(self) -> None:
        for obj in addon_objects():
            mesh = obj.data
            bpy.data.objects.remove(obj)
            if mesh is not None and mesh.users == 0:
                bpy.data.meshes.remove(mesh)
        SEEN.clear()

    def phase_bare_settle(self) -> float | None:
        """Before each bare redraw trial: let the window settle, then its idle seconds (the baseline)."""
        if now() - self.phase_started < 1.5 or (window_drew_within(QUIET_SECONDS) and now() - self.phase_started < 12):
            return 0.1
        RESULT.setdefault("bare", [])
        if not self.trials:
            self.enter("single")
            return 0.1
        self.trial = self.trials.pop(0)
        if self.trial != "property" and self.trial_region(self.trial) is None:
            return 0.1  # this window has no such region
        self.round_started = time.perf_counter()
        self.enter("bare_idle")
        return 0.1

    def phase_bare_idle(self) -> float | None:
        if now() - self.phase_started < float(CONFIG.get("idle_seconds", 3.0)):
            return 0.1
        self.busy_started = time.perf_counter()
        self.enter("bare_tagging")
        return 0.0

    def trial_region(self, trial: str) -> Any:
        """The region a bare trial redraws: the 3D view's sidebar or header, or the Properties editor's main
        region (about the sidebar's size, none of the add-on's panels); None for the property trial."""
        _, area, sidebar, _ = self.view3d()
        if trial in ("sidebar", "sidebar_without_job_rows"):
            return sidebar
        if trial == "header":
            return next(r for r in area.regions if r.type == "HEADER")
        if trial == "properties_editor":
            for other in bpy.context.window_manager.windows[0].screen.areas:
                if other.type == "PROPERTIES":
                    return next(r for r in other.regions if r.type == "WINDOW")
        return None

    def phase_bare_tagging(self) -> float | None:
        """Blender redrawing for a reason that is not the add-on's: no job runs, and every 0.1 s (the add-on's
        tick while jobs run) one region is tagged for redraw, or a property of the window manager is set."""
        trial = self.trial
        region = self.trial_region(trial)
        if now() - self.phase_started < float(CONFIG.get("idle_seconds", 3.0)):
            if region is not None:
                region.tag_redraw()
            else:
                wm: Any = bpy.context.window_manager
                wm.modelslab_jobs_index = wm.modelslab_jobs_index
            return 0.1
        end = time.perf_counter()
        idle_plain, idle_imports = gaps_between(self.round_started, self.busy_started)
        tagging, _ = gaps_between(self.busy_started, end)
        idle_max, tagged_max = max(idle_plain + idle_imports), max(tagging)
        RESULT["bare"].append(
            {
                "trial": trial,
                "region_size": [region.width, region.height] if region is not None else None,
                "load_average": load_average(),
                "idle_max_ms": round(idle_max, 2),
                "tagging_max_ms": round(tagged_max, 2),
                "ratio": round(tagged_max / idle_max, 3),
                "tagging_p50_ms": round(sorted(tagging)[len(tagging) // 2], 2),
                "sidebar_redraws": len(sidebar_redraws_ms(self.busy_started, end)),
                "sidebar_redraw_ms_median": _median(sidebar_redraws_ms(self.busy_started, end)),
                "largest_gaps": largest_gaps(self.busy_started, end, 3),
                "idle_largest_gaps": largest_gaps(self.round_started, self.busy_started, 2),
                "tagging_time": time_shares(self.busy_started, end),
                "idle_time": time_shares(self.round_started, self.busy_started),
            }
        )
        log(f"bare redraw trial: {RESULT['bare'][-1]}")
        if self.trials and self.trials[0] == "sidebar_without_job_rows":  # the job list empty (before the settle)
            bpy.context.window_manager.modelslab_jobs.clear()
        self.enter("bare_settle")
        return 0.1

    def phase_single(self) -> float | None:
        singles = RESULT["single"]
        objects = addon_objects()
        if self.single_started and objects:
            obj = objects[0]
            remote_id = str(obj.get("modelslab_remote_id", ""))
            singles.append(
                {
                    "remote_id": remote_id,
                    "seen_at": SEEN.get(obj.name),
                    "downloaded_at": downloaded_at(self.module, remote_id),
                }
            )
            self.clear_objects()
            self.single_started = 0.0
            return 0.3
        if self.single_started:
            if self.timed_out():
                error(f"a single job did not import in time: {job_states()}")
                return self.finish()
            return 0.05
        if len(singles) >= int(CONFIG.get("single", 3)):
            return self.finish()
        self.submit(CONFIG["images"][len(singles) % len(CONFIG["images"])])
        self.single_started = now()
        self.phase_started = now()
        return 0.05

    def finish(self) -> None:
        RESULT["total_seconds"] = round(now(), 3)
        RESULT["draw_profile"] = profile_text()
        RESULT["python_version"] = sys.version.split()[0]
        write_result()
        log(f"result written to {CONFIG['result']}; quitting")
        bpy.ops.wm.quit_blender()
        return None


def downloaded_at(module: str, remote_id: str) -> float | None:
    """When the add-on's runner had the job's mesh on disk (epoch), from its job record."""
    session = sys.modules.get(f"{module}.blender.session")
    runner = session.peek_runner() if session is not None else None
    if runner is None:
        return None
    for record in runner.records():
        if str(record.remote_id) == remote_id:
            return getattr(record, "downloaded_at", None)
    return None


BARE_TRIALS = ("sidebar", "header", "properties_editor", "property", "sidebar_without_job_rows")
DRIVER: Driver | None = None


def profiling() -> bool:
    return DRIVER is not None and DRIVER.phase == "busy"


def _median(values: list[float]) -> float | None:
    return round(sorted(values)[len(values) // 2], 2) if values else None


RUNNING = {"queued", "uploading", "submitting", "submitted", "processing", "downloading", "downloaded"}


def install() -> str:
    """The add-on as its users install it; returns its module name. Key and server from the environment."""
    preferences = bpy.context.preferences
    preferences.view.show_splash = False
    preferences.use_preferences_save = False
    preferences.system.use_region_overlap = False
    preferences.system.viewport_aa = "OFF"  # progressive AA would redraw each change several times
    if CONFIG["install"] == "extension":
        bpy.ops.extensions.package_install_files(repo="user_default", filepath=CONFIG["zip"], enable_on_install=True)
        modules = [a.module for a in preferences.addons if a.module.endswith("." + CONFIG["extension_id"])]
        if not modules:
            raise RuntimeError("the extension is not enabled after package_install_files")
        module = modules[0]
    else:
        bpy.ops.preferences.addon_install(overwrite=True, filepath=CONFIG["zip"])
        bpy.ops.preferences.addon_enable(module=CONFIG["module"])
        module = CONFIG["module"]
    prefs = preferences.addons[module].preferences
    prefs.api_key = os.environ["MODELSLAB_API_KEY"]
    prefs.base_url = CONFIG["server_url"]
    prefs.max_concurrent_jobs = int(CONFIG["jobs"])
    pending = list(bpy.types.Panel.__subclasses__())
    while pending:  # the whole tree: the add-on's panels share a mixin base
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if getattr(cls, "bl_category", "") == CONFIG.get("category", "ModelsLab") and cls.is_registered:
            # Blender looks draw up on the class at each draw (wrapped before append(), which replaces it); a
            # UIList's draw_item is not wrapped: Blender passes it as many arguments as its code object names
            if "draw" in cls.__dict__:
                cls.draw = timed(PY_DRAWS, cls.__dict__["draw"], profiling)
            cls.append(lambda _panel, _context: PANEL_DRAWS.append(now()))
    runtime = sys.modules.get(f"{module}.blender.runtime")
    if runtime is not None:  # the add-on's timer calls runtime.pump() by name
        runtime.pump = timed(PUMPS, runtime.pump)
    bpy.types.SpaceView3D.draw_handler_add(lambda: SIDEBAR_ENDS.append(now()), (), "UI", "POST_PIXEL")
    bpy.types.SpaceView3D.draw_handler_add(lambda: VIEWPORT_DRAWS.append(now()), (), "WINDOW", "POST_PIXEL")
    return module


def main() -> None:
    faulthandler.dump_traceback_later(float(CONFIG.get("deadline", 300)), exit=True)
    global CLOCKS, DRIVER
    log(f"Blender {bpy.app.version_string}, Python {sys.version.split()[0]}")
    CLOCKS = Clocks()
    bpy.app.timers.register(record, first_interval=0.02, persistent=True)
    try:
        driver = DRIVER = Driver(install())
    except Exception:
        error(f"installing the add-on raised:\n{traceback.format_exc()}")
        write_result()
        bpy.app.timers.register(lambda: bpy.ops.wm.quit_blender() and None, first_interval=0.1)
        return
    bpy.app.timers.register(driver.step, first_interval=0.5)


main()
