"""ui_tick_p99_ms and ui_stall_max_ms: 8 jobs started from the N-panel operator in a real Blender window.

Debian's Blender 3.4 under Xvfb, driven by the gui layer's harness and driver (tests/helpers/gui.py,
tests/gui/jobs_driver.py: a 20 ms timer records main-loop gaps). bench/ui_driver.py runs that driver unchanged
and additionally times every call of the add-on's own timer callbacks (bpy.app.timers.register wrapped before
the add-on is enabled), with the process's memory. Also reported: Blender's resident memory with 8 jobs.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from server.process import start_server

from .common import API_KEY, BENCH_DIR, REPO_ROOT, Missing, Outcome, log, median, percentile, rounded

JOBS = 8
JOB_SECONDS = 3.0
UI_DRIVER = BENCH_DIR / "ui_driver.py"


def _harness() -> Any:
    """The gui layer's harness (tests/helpers/gui.py): Debian's Blender under Xvfb, the driver runner."""
    if not (REPO_ROOT / "tests" / "helpers" / "gui.py").exists():
        raise Missing("tests/helpers/gui.py (the gui layer's harness) is missing")
    from tests.helpers import gui

    return gui


def run(quick: bool = False) -> Outcome:
    """One Blender window session with JOBS jobs; both figures come from the same session."""
    harness = _harness()
    reason = harness.unavailable_reason()
    if reason:
        raise Missing(reason)
    for piece in ("__init__.py", "blender/runtime.py", "operators"):
        if not (REPO_ROOT / piece).exists():
            raise Missing(f"{piece} is missing (the extension)")
    outcome = Outcome()
    workdir = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    original_driver = harness.JOBS_DRIVER
    try:
        with start_server("--workers", str(JOBS), "--job-seconds", str(JOB_SECONDS)) as srv:
            harness.JOBS_DRIVER = UI_DRIVER  # our driver execs the gui layer's driver, unchanged
            run_ = harness.run_jobs_session(
                server_url=srv.url,
                api_key=API_KEY,
                workdir=workdir,
                jobs=JOBS,
                prefs={"max_concurrent_jobs": JOBS},  # all 8 in flight at once (the preference's default is 4)
                settle_seconds=0.2,
                arrange=False,
                job_timeout=180.0,
            )
            try:
                result = run_.check()
            except AssertionError:
                log(run_.report())
                errors = (run_.result or {}).get("errors") or [f"exit code {run_.returncode}"]
                last = [line for line in str(errors[0]).splitlines() if line.strip()][-1]
                raise RuntimeError(f"the Blender GUI session failed: {last}") from None
            server_jobs = srv.stats()["jobs"]
    finally:
        harness.JOBS_DRIVER = original_driver
        shutil.rmtree(workdir, ignore_errors=True)
    gaps = result["gaps"]
    calls = result["calls"]
    window = gaps.get("window") or [min(call["at"] - call["seconds"] for call in calls), float("inf")]
    jobs_start = window[0]
    outcome.values["ui_stall_max_ms"] = rounded(gaps["max_excl_import_ms"], 2)
    outcome.extra["ui_stall"] = {
        "gap_count": gaps["count"],
        "p50_ms": rounded(gaps["p50_ms"], 2),
        "p99_excl_import_ms": rounded(gaps["p99_excl_import_ms"], 2),
        "max_incl_import_and_call_ms": rounded(gaps["max_ms"], 2),
        "import_gaps_ms": gaps["import_gaps_ms"],
        "call_gaps_ms": gaps.get("call_gaps_ms"),
        "operator_call_ms": [rounded(call["seconds"] * 1000.0, 2) for call in calls],
        "idle_baseline": gaps.get("baseline"),
        "jobs_seconds": result.get("jobs_seconds"),
        "blender": result.get("blender_version"),
        "server_jobs": len(server_jobs),
    }
    outcome.series["stall_timeline"] = [(t - jobs_start, gap, int(flag)) for t, gap, flag in gaps["timeline"]]
    ticks = result.get("ticks") or {}
    rows = ticks.get("rows") or []
    if not rows:
        outcome.values["ui_tick_p99_ms"] = None
        outcome.reasons["ui_tick_p99_ms"] = (
            "the add-on registered no bpy.app.timers callback that the tick meter could see "
            f"(timers seen: {ticks.get('timers')})"
        )
    else:
        import_rows = [r for r in rows if r[2] > 0]
        last_import = max((r[0] for r in import_rows), default=max(r[0] for r in rows))
        end = window[1] if window[1] != float("inf") else last_import
        during = [r for r in rows if jobs_start <= r[0] <= max(end, last_import)]
        normal = [r[1] for r in during if r[2] == 0]
        outcome.values["ui_tick_p99_ms"] = rounded(percentile(normal, 99), 3) if normal else None
        if not normal:
            outcome.reasons["ui_tick_p99_ms"] = "no add-on timer ticks while the jobs ran"
        memory = ticks.get("memory", {})
        rss_during = [r[3] for r in during]
        outcome.extra["ui_ticks"] = {
            "timers": ticks.get("timers"),
            "ticks_while_jobs_ran": len(during),
            "non_import_ticks": len(normal),
            "p50_ms": rounded(median(normal), 3) if normal else None,
            "max_ms": rounded(max(normal), 3) if normal else None,
            "import_ticks_ms": [rounded(r[1], 1) for r in import_rows],
            # wall vs the main thread's CPU time of the slowest plain ticks: a gap between them is time the tick
            # spent not running (waiting for the GIL held by a worker thread, for the OS, or for I/O)
            # plain ticks (no import) in the jobs window that waited > 1 ms, with the add-on's other threads' frames
            "waiting_plain_ticks": [
                {**tick, "threads": {k: v[-2:] for k, v in tick["threads"].items() if "modelslab" in k}}
                for tick in ticks.get("waiting_ticks") or []
                if jobs_start <= tick["at"] <= max(end, last_import)
                and not any(abs(r[0] - tick["at"]) < 1e-3 and r[2] > 0 for r in rows)
            ],
            "slowest_ticks_wall_cpu_ms": [
                [rounded(r[1], 3), rounded(r[4], 3) if len(r) > 4 else None]
                for r in sorted((r for r in during if r[2] == 0), key=lambda r: r[1])[-5:]
            ],
        }
        outcome.extra["blender_memory_8_jobs"] = {
            "rss_before_first_tick_mb": memory.get("before_first_tick_mb"),
            "rss_max_while_jobs_ran_mb": max(rss_during) if rss_during else None,
            "peak_hwm_mb": memory.get("peak_hwm_mb"),
            "rss_at_end_mb": memory.get("at_end_mb"),
        }
        outcome.series["ticks"] = [(r[0] - jobs_start, r[1], r[2] > 0) for r in rows]
    draws = ticks.get("viewport_draws") or []
    if draws:
        # Which plain gaps over the goal are (mostly) a 3D viewport redraw: the profile of the stall figure.
        window_draws = [d for d in draws if jobs_start <= d[0] <= window[1]]
        slow_gaps = []
        for end_t, gap_ms, flag in gaps["timeline"]:
            if int(flag) != 0 or gap_ms <= 50.0:
                continue
            begin_t = end_t - gap_ms / 1000.0
            covered = sum(max(0.0, min(end_t, start + ms / 1000.0) - max(begin_t, start)) for start, ms in window_draws)
            slow_gaps.append({"gap_ms": round(gap_ms, 1), "viewport_draw_ms_inside": round(covered * 1000.0, 1)})
        sidebar_ends = [at for at, kind in ticks.get("sidebar_events") or [] if kind == 1]
        for slow in slow_gaps:
            slow["sidebar_redraws_inside"] = 0
        slow_index = 0
        for end_t, gap_ms, flag in gaps["timeline"]:
            if int(flag) != 0 or gap_ms <= 50.0:
                continue
            begin_t = end_t - gap_ms / 1000.0
            slow_gaps[slow_index]["sidebar_redraws_inside"] = sum(1 for at in sidebar_ends if begin_t <= at <= end_t)
            slow_index += 1
        spans, layout_start = [], None
        for at, kind in ticks.get("sidebar_events") or []:
            if kind == 0 and layout_start is None:
                layout_start = at
            elif kind == 1:
                if layout_start is not None and jobs_start <= layout_start <= window[1]:
                    spans.append((at - layout_start) * 1000.0)
                layout_start = None
        panel_ms: dict[str, list[float]] = {}
        for name, ms in ticks.get("panel_draw_ms") or []:
            panel_ms.setdefault(name, []).append(ms)
        idle_draws = [d[1] for d in draws if d[0] < jobs_start]
        outcome.extra["ui_viewport_draws"] = {
            "draws_while_jobs_ran": len(window_draws),
            "draw_ms_median_while_jobs_ran": rounded(median([d[1] for d in window_draws]), 1) if window_draws else None,
            "draw_ms_max_while_jobs_ran": rounded(max(d[1] for d in window_draws), 1) if window_draws else None,
            "draws_before_jobs": len(idle_draws),
            "plain_gaps_over_50ms": slow_gaps,
            "plain_gaps_over_50ms_with_a_sidebar_redraw": sum(1 for g in slow_gaps if g["sidebar_redraws_inside"]),
            "sidebar_redraws_while_jobs_ran": sum(1 for at in sidebar_ends if jobs_start <= at <= window[1]),
            # from the first add-on panel's draw() to the end of the sidebar region's drawing
            "sidebar_layout_to_region_end_ms_median": rounded(median(spans), 1) if spans else None,
            "sidebar_layout_to_region_end_ms_max": rounded(max(spans), 1) if spans else None,
            # Python time of the add-on's own draw code per class (panels' draw(), the job list's draw_item())
            "addon_python_draw_ms": {
                name: {"calls": len(values), "median": rounded(median(values), 3), "max": rounded(max(values), 3)}
                for name, values in sorted(panel_ms.items())
            },
        }
        outcome.series["viewport_draws"] = [(d[0] - jobs_start, d[1]) for d in window_draws]
        outcome.series["sidebar_redraws"] = [at - jobs_start for at in sidebar_ends if jobs_start <= at <= window[1]]
    epoch_t0 = ticks.get("epoch_at_driver_t0")
    jobs_window = result.get("jobs_window")
    finished = {str(j["id"]): j["finished_at"] for j in server_jobs if j.get("finished_at")}
    in_scene = []
    for obj in result.get("objects", []):
        remote = str(obj.get("props", {}).get("modelslab_remote_id", ""))
        if epoch_t0 and jobs_window and remote in finished and obj.get("seen_at", -1) >= 0:
            in_scene.append(epoch_t0 + jobs_window[0] + obj["seen_at"] - finished[remote])
    if in_scene:
        outcome.extra["gui_in_scene_overhead_s"] = {
            "jobs": len(in_scene),
            "median": rounded(median(in_scene), 3),
            "max": rounded(max(in_scene), 3),
            "all": sorted(rounded(v, 3) for v in in_scene),
        }
    _windows(outcome, quick)
    _findings(outcome)
    log(
        f"ui: stall max {gaps['max_excl_import_ms']} ms (excl. imports), tick p99 {outcome.values['ui_tick_p99_ms']}"
        f" ms, {len(rows)} ticks"
    )
    outcome.notes.append(
        f"{JOBS} jobs (the example images, default resolution 256) started through "
        "`bpy.ops.modelslab.image_to_3d('INVOKE_DEFAULT')` from the sidebar in Debian's Blender 3.4.1 under "
        f"Xvfb (legacy add-on zip; preference `max_concurrent_jobs` = {JOBS}, so all of them are in flight at once), "
        f"local server with {JOBS} workers and `--job-seconds {JOB_SECONDS:g}`. "
        "`ui_stall_max_ms`: the largest gap between firings of a 20 ms timer from the first operator call to "
        "the last import (tests/helpers/gui.py + tests/gui/jobs_driver.py), excluding gaps during which an object was "
        "imported (`import_gaps_ms`) and the gaps that contain the driver's own back-to-back operator calls "
        "(`call_gaps_ms`; each call's own duration is in `operator_call_ms`); `idle_baseline` = the same "
        "timer before any job. `ui_tick_p99_ms`: p99 (nearest rank) duration of the add-on's own `bpy.app.timers` "
        "callbacks from the first submit to the last import, ticks that imported a mesh excluded (listed as "
        "`import_ticks_ms`), measured by wrapping `bpy.app.timers.register` before the add-on is enabled "
        "(bench/ui_driver.py). Blender's memory: VmRSS/VmHWM of the Blender process. `gui_in_scene_overhead_s`: "
        "per job, the moment the driver (polling every 50 ms) first saw the object in the scene − the server's "
        "`finished_at` of that job (matched by the object's `modelslab_remote_id`), for all 8 concurrent jobs. "
        "`ui_viewport_draws` is the profile of the stall figure: 3D-viewport draws (PRE_VIEW..POST_PIXEL handlers) "
        "and sidebar redraws (the add-on panels' draw() .. the UI region's POST_PIXEL handler) inside each plain "
        "gap over 50 ms; `addon_python_draw_ms` = the Python time of the add-on's own draw code per class "
        "(panels' draw(), the job list's draw_item()). `slowest_ticks_wall_cpu_ms`: wall vs main-thread CPU "
        "time of the slowest plain ticks (CPU well below wall = the tick was waiting: for the GIL held by "
        "a worker thread, the OS or I/O)."
    )
    return outcome


def _windows(outcome: Outcome, quick: bool) -> None:
    """ui_stall_ratio and in_window_time_to_object_s in each window (bench/ui_window.py), one session each."""
    from . import ui_window

    windows: dict[str, Any] = {}
    for window in ui_window.SESSIONS:
        try:
            figures = ui_window.measure(window, quick)
        except Missing as exc:
            reason = f"skipped: {exc}"
        except Exception as exc:
            reason = f"failed: {type(exc).__name__}: {exc}"[:1500]
        else:
            windows[window] = figures
            outcome.values[f"ui_stall_ratio.{window}"] = figures["stall_ratio_median"]
            outcome.values[f"in_window_time_to_object_s.{window}"] = figures["in_window_time_to_object_median_s"]
            continue
        log(f"ui window {window}: {reason}")
        for key in ("ui_stall_ratio", "in_window_time_to_object_s"):
            outcome.reasons[f"{key}.{window}"] = reason
    outcome.extra["ui_windows"] = windows
    for figures in windows.values():
        outcome.findings.append(
            f"{figures['blender']} window (Python {figures['python']}): with 8 jobs in flight the 20 ms timer's "
            f"largest gap was {figures['in_flight_max_ms']} ms against {figures['idle_max_ms']} ms in the same "
            f"window idle just before (ratio {figures['stall_ratio_median']}, median of {len(figures['stall_ratios'])} "
            f"rounds). {_redraw_reading(figures)} Once the meshes arrive, Blender's importer holds the main thread for "
            f"{_span(figures['import_gaps_ms'])} ms per mesh and the largest other gap was "
            f"{_span([figures['importing_max_plain_gap_ms']])} ms. One job alone: the object was in the scene "
            f"{figures['in_window_time_to_object_median_s']} s after the server finished it "
            f"({', '.join(str(v) for v in figures['in_window_time_to_object_s'])} s: mesh on disk "
            f"{', '.join(str(v) for v in figures.get('finished_to_downloaded_s') or [])} s after the finish, then "
            f"{', '.join(str(v) for v in figures.get('downloaded_to_in_scene_s') or [])} s to the object: the "
            "timer's pick-up and Blender's importer)."
        )
    outcome.notes.append(ui_window.NOTE)


def _redraw_reading(figures: dict[str, Any]) -> str:
    """What the largest in-flight gaps held and what Blender's own region redraw costs, from a window's figures."""
    ratio, undrawn = figures["stall_ratio_median"], figures["stall_ratio_without_sidebar_redraws_median"]
    if ratio is None:
        return ""
    largest = [(r.get("in_flight_largest") or [None])[0] for r in figures.get("gaps_explained") or []]
    largest = [g for g in largest if g]
    python_ms = _span([figures.get("in_flight_addon_python_draw_ms_per_redraw") or []], 1)
    text = (
        f"The sidebar redrew {_span([figures.get('in_flight_sidebar_redraws') or []])} times while the jobs were in "
        f"flight; the add-on's own panel Python took {python_ms} ms per redraw and its timer tick at most "
        f"{_span([figures.get('in_flight_addon_tick_ms_max') or []], 1)} ms."
    )
    if largest:
        drew = sum(1 for g in largest if g.get("sidebar_drew") or g.get("sidebar_region_draws"))
        text += (
            f" The largest gap of each round ({drew} of {len(largest)} holding a sidebar redraw): the main thread "
            f"computed {_span([[g['main_on_cpu_ms'] for g in largest]])} ms, waited for a CPU "
            f"{_span([[g['main_waiting_for_a_cpu_ms'] for g in largest]])} ms and was blocked "
            f"{_span([[g['main_blocked_ms'] for g in largest]])} ms while Mesa's llvmpipe threads drew the window "
            f"({_span([[g.get('llvmpipe_threads_on_cpu_ms') for g in largest]])} ms on a CPU, "
            f"{_span([[g.get('llvmpipe_threads_waiting_for_a_cpu_ms') for g in largest]])} ms waiting for one; the "
            f"process's other threads, the add-on's workers among them, "
            f"{_span([[g.get('other_threads_on_cpu_ms') for g in largest]])} ms on a CPU)."
        )
    bare = figures.get("bare_redraw_ratios") or {}
    if bare:
        text += (
            " With no job at all, the same window redrawing every 0.1 s for a reason that is not the add-on's gives "
            f"a ratio of {bare.get('header')} (the 3D view's header region tagged), {bare.get('properties_editor')} "
            f"(the Properties editor), {bare.get('sidebar')} (the sidebar) and {bare.get('property')} (a "
            "window-manager property set, no redraw): one region "
            "redraw is a whole-window update under software OpenGL here, so a ratio near 1 would need no sidebar "
            "redraw at all while jobs run."
        )
    if undrawn is not None:
        text += f" The gaps without a sidebar redraw give a ratio of {undrawn}."
    return text


def _span(groups: list[list[float | None]], digits: int = 0) -> str:
    values = [v for group in groups for v in group if v is not None]
    return f"{min(values):.{digits}f}–{max(values):.{digits}f}" if values else "—"


def _findings(outcome: Outcome) -> None:
    """Plain-language reading of the UI figures, from this run's numbers only."""
    stall = outcome.values.get("ui_stall_max_ms")
    ticks = outcome.extra.get("ui_ticks") or {}
    draws = outcome.extra.get("ui_viewport_draws") or {}
    baseline = (outcome.extra.get("ui_stall") or {}).get("idle_baseline") or {}
    if stall is None:
        return
    slow = draws.get("plain_gaps_over_50ms") or []
    with_redraw = draws.get("plain_gaps_over_50ms_with_a_sidebar_redraw")
    python_draw = draws.get("addon_python_draw_ms") or {}
    slowest_panel = max((v["median"] for v in python_draw.values()), default=None)
    text = (
        f"UI: the add-on's timer callback took at most {ticks.get('max_ms')} ms per tick (p99 "
        f"{outcome.values.get('ui_tick_p99_ms')} ms) while the 8 jobs ran; the largest plain 20 ms-timer gap was "
        f"{stall} ms. {len(slow)} plain gaps exceeded 50 ms"
    )
    if slow:
        text += (
            f"; {with_redraw} of them contain a sidebar redraw (the sidebar redrew "
            f"{draws.get('sidebar_redraws_while_jobs_ran')} times; its draw took "
            f"{draws.get('sidebar_layout_to_region_end_ms_median')} ms median from the first panel's draw() to the "
            "region's end, of which the add-on's own Python draw code is at most "
            f"{slowest_panel} ms median per panel) and none a 3D-viewport draw outside the imports"
            if not any(g["viewport_draw_ms_inside"] for g in slow)
            else f"; {with_redraw} of them contain a sidebar redraw"
        )
    if baseline.get("max_ms") is not None:
        text += f". Before any job, the same timer's largest gap was {rounded(baseline['max_ms'], 1)} ms."
    else:
        text += "."
    outcome.findings.append(text)
    in_scene = outcome.extra.get("gui_in_scene_overhead_s") or {}
    memory = outcome.extra.get("blender_memory_8_jobs") or {}
    if in_scene:
        outcome.findings.append(
            f"In the window, the 8 objects reached the scene {in_scene.get('median')} s (median; max "
            f"{in_scene.get('max')} s) after the server finished each job: imports run on the main thread one per "
            f"timer tick ({', '.join(str(v) for v in ticks.get('import_ticks_ms') or [])} ms), and each new "
            f"mesh's first viewport draw took {draws.get('draw_ms_median_while_jobs_ran')} ms median here "
            f"(software OpenGL). Blender's resident memory went from {memory.get('rss_before_first_tick_mb')} MB to "
            f"a peak of {memory.get('peak_hwm_mb')} MB with the 8 resolution-256 meshes."
        )
