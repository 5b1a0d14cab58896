"""ui_stall_ratio and in_window_time_to_object_s, side by side in two real Blender windows in one run.

Debian's Blender 3.4 under Xvfb (the legacy zip, installed with addon_install) and Debian sid's Blender 5.2 in
scripts/blender52_root.sh's root filesystem (the extension zip, installed through Blender's own extension
installer) each run bench/ui_window_driver.py against one local server: ROUNDS rounds of an idle window then
JOBS jobs, then SINGLE jobs alone. The ratio of a round = the largest gap of a 20 ms timer while the jobs run
(from the end of the operator calls to the last import, gaps during which an object was imported excluded)
÷ the largest gap of the same window idle just before; the figure is the median of the rounds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import API_KEY, BENCH_DIR, EXTENSION_ZIP, REPO_ROOT, Missing, log, median, rounded

DRIVER = BENCH_DIR / "ui_window_driver.py"
ROOT_SCRIPT = REPO_ROOT / "scripts" / "blender52_root.sh"
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.png"))
GUEST_EXAMPLES = "/srv/examples"
JOBS = 8
ROUNDS = 3
IDLE_SECONDS = 3.0
SINGLE = 3
SESSION_TIMEOUT = 300.0


def _config(zip_path: str, images: list[str], server_url: str, result: str, install: str, quick: bool) -> dict:
    return {
        "install": install,
        "zip": zip_path,
        "module": "modelslab_3d",
        "extension_id": "modelslab_3d",
        "images": images,
        "jobs": JOBS,
        "rounds": 1 if quick else ROUNDS,
        "idle_seconds": IDLE_SECONDS,
        "single": 1 if quick else SINGLE,
        "category": "ModelsLab",
        "server_url": server_url,
        "result": result,
        "timeout": 120,
        "deadline": SESSION_TIMEOUT - 30,
    }


def _run(command: list[str], env: dict[str, str], log_path: Path) -> tuple[int | None, str]:
    """Run a Blender session in its own process group (killed whole on timeout); return (exit code, output)."""
    with log_path.open("w", encoding="utf-8") as sink:
        proc = subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(REPO_ROOT)
        )
        try:
            proc.wait(timeout=SESSION_TIMEOUT)
        except subprocess.TimeoutExpired:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(timeout=10)
                    break
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue
    return proc.returncode, log_path.read_text(encoding="utf-8", errors="replace")


def _result(result_path: Path, code: int | None, output: str, window: str) -> dict[str, Any]:
    result = json.loads(result_path.read_text(encoding="utf-8")) if result_path.is_file() else None
    if result is None or code != 0 or result.get("errors"):
        errors = (result or {}).get("errors") or [f"exit code {code}", output[-1500:]]
        raise RuntimeError(f"the {window} window session failed: {str(errors[0])[-1500:]}")
    return result


def session_blender34(server_url: str, quick: bool) -> dict[str, Any]:
    """Debian's Blender 3.4 under Xvfb with the legacy zip."""
    from tests.helpers import gui

    reason = gui.unavailable_reason()
    if reason:
        raise Missing(reason)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ui34-"))
    try:
        zip_path, _origin = gui.legacy_zip(workdir)
        result_path = workdir / "result.json"
        config = _config(str(zip_path), [str(p) for p in EXAMPLES], server_url, str(result_path), "legacy", quick)
        config_path = workdir / "config.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        env = gui.blender_env(workdir / "home", api_key=API_KEY, base_url=server_url)
        command = [
            "xvfb-run", "-a", "-s", f"-screen 0 {gui.DEFAULT_SCREEN}",
            "blender", "--factory-startup", "--enable-event-simulate", "--python-exit-code", "3",
            "--python", str(DRIVER), "--", str(config_path),
        ]  # fmt: skip
        code, output = _run(command, env, workdir / "blender.log")
        return _result(result_path, code, output, "Blender 3.4")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def extension_zip(rootfs: Path, workdir: Path) -> Path:
    """dist/'s extension zip when it is at least as new as every shipped source (make build), else one built from
    the checkout into workdir with the root filesystem's blender_ext.py: the window measures the code as it is."""
    from tests.helpers.shipping import newest_shipped_mtime

    if EXTENSION_ZIP.is_file() and EXTENSION_ZIP.stat().st_mtime >= newest_shipped_mtime():
        return EXTENSION_ZIP
    tool = next(rootfs.glob("usr/share/blender/**/bl_pkg/cli/blender_ext.py"), None)
    if tool is None:
        raise Missing(f"{EXTENSION_ZIP.name} is older than the sources and {rootfs} has no blender_ext.py to build one")
    build = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "build_extension.py"), "--output-dir", str(workdir)],
        env=dict(os.environ, BLENDER_EXT=str(tool)),
        capture_output=True,
        text=True,
        check=False,
    )
    made = workdir / EXTENSION_ZIP.name
    if build.returncode != 0 or not made.is_file():
        raise RuntimeError(f"building the extension zip failed:\n{build.stdout[-1500:]}\n{build.stderr[-1500:]}")
    log(f"ui window blender52: {EXTENSION_ZIP.name} built from the checkout (dist/'s is older than the sources)")
    return made


def session_blender52(server_url: str, quick: bool) -> dict[str, Any]:
    """Debian sid's Blender 5.2 in the cached root filesystem, the extension zip through Blender's installer."""
    if os.geteuid() != 0:
        raise Missing("the Blender 5.2 window runs in a chroot, which needs root")
    status = subprocess.run([str(ROOT_SCRIPT), "status"], capture_output=True, text=True, check=False)
    if status.returncode != 0:
        raise Missing(f"no Blender 5.2 root filesystem ({status.stdout.strip()})")
    rootfs = Path(subprocess.run([str(ROOT_SCRIPT), "path"], capture_output=True, text=True, check=True).stdout.strip())
    examples = rootfs / GUEST_EXAMPLES.lstrip("/")
    examples.mkdir(parents=True, exist_ok=True)
    for image in EXAMPLES:
        shutil.copyfile(image, examples / image.name)
    guest_dir = Path(tempfile.mkdtemp(prefix="bench-ui52-", dir=rootfs / "srv"))
    guest = "/srv/" + guest_dir.name
    try:
        (guest_dir / "home" / "tmp").mkdir(parents=True)
        shutil.copyfile(extension_zip(rootfs, guest_dir / "build"), guest_dir / EXTENSION_ZIP.name)
        shutil.copyfile(DRIVER, guest_dir / DRIVER.name)
        images = [f"{GUEST_EXAMPLES}/{p.name}" for p in EXAMPLES]
        config = _config(
            f"{guest}/{EXTENSION_ZIP.name}", images, server_url, f"{guest}/result.json", "extension", quick
        )
        config["keys"] = "xdotool"
        (guest_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")
        home = f"{guest}/home"
        env = dict(os.environ, MODELSLAB_API_KEY=API_KEY, BLENDER52_PASS_ENV="MODELSLAB_API_KEY")
        command = [
            str(ROOT_SCRIPT), "run", "env", f"HOME={home}", f"XDG_CONFIG_HOME={home}/.config", f"TMPDIR={home}/tmp",
            "NO_PROXY=127.0.0.1,localhost", "blender", "--python-exit-code", "3",
            "--python", f"{guest}/{DRIVER.name}", "--", f"{guest}/config.json",
        ]  # fmt: skip
        code, output = _run(command, env, Path(tempfile.mkstemp(prefix="bench-ui52-", suffix=".log")[1]))
        return _result(guest_dir / "result.json", code, output, "Blender 5.2")
    finally:
        shutil.rmtree(guest_dir, ignore_errors=True)


SESSIONS = {"blender34": session_blender34, "blender52": session_blender52}


def summarise(result: dict[str, Any], finished: dict[str, float]) -> dict[str, Any]:
    """The per-window figures from a driver result and the server's finished_at by remote id."""
    rounds = result["rounds"]
    ratios = [r["busy_max_ms"] / r["idle_max_ms"] for r in rounds if r["busy_max_ms"] and r["idle_max_ms"]]
    ratios_undrawn = [
        r["busy_max_without_sidebar_draw_ms"] / r["idle_max_ms"]
        for r in rounds
        if r.get("busy_max_without_sidebar_draw_ms") and r["idle_max_ms"]
    ]
    ratios_importing = [
        r["importing_max_plain_ms"] / r["idle_max_ms"]
        for r in rounds
        if r["importing_max_plain_ms"] and r["idle_max_ms"]
    ]
    in_window = [
        s["seen_at"] - finished[s["remote_id"]] for s in result["single"] if s["remote_id"] in finished and s["seen_at"]
    ]
    downloaded = [
        (s["downloaded_at"] - finished[s["remote_id"]], s["seen_at"] - s["downloaded_at"])
        for s in result["single"]
        if s["remote_id"] in finished and s.get("downloaded_at") and s["seen_at"]
    ]
    return {
        "blender": result.get("blender_version"),
        "python": result.get("python_version"),
        "stall_ratio_median": rounded(median(ratios)) if ratios else None,
        "stall_ratios": [rounded(r) for r in ratios],
        "stall_ratio_without_sidebar_redraws_median": rounded(median(ratios_undrawn)) if ratios_undrawn else None,
        "idle_max_ms": [r["idle_max_ms"] for r in rounds],
        "in_flight_max_ms": [r["busy_max_ms"] for r in rounds],
        "in_flight_p99_ms": [r["busy_p99_ms"] for r in rounds],
        "in_flight_seconds": [r["busy_seconds"] for r in rounds],
        "in_flight_max_without_a_sidebar_draw_ms": [r["busy_max_without_sidebar_draw_ms"] for r in rounds],
        "in_flight_sidebar_redraws": [r.get("sidebar_redraws") for r in rounds],
        "in_flight_sidebar_redraw_ms_median": [r.get("sidebar_redraw_ms_median") for r in rounds],
        "in_flight_sidebar_redraw_ms_max": [r.get("sidebar_redraw_ms_max") for r in rounds],
        "idle_sidebar_redraws": [r.get("idle_sidebar_redraws") for r in rounds],
        "in_flight_viewport_redraws": [r.get("viewport_redraws") for r in rounds],
        "idle_viewport_redraws": [r.get("idle_viewport_redraws") for r in rounds],
        "importing_stall_ratio_median": rounded(median(ratios_importing)) if ratios_importing else None,
        "importing_max_plain_gap_ms": [r["importing_max_plain_ms"] for r in rounds],
        "import_gaps_ms": [r["import_gaps_ms"] for r in rounds],
        "importing_seconds": [r["importing_seconds"] for r in rounds],
        "sidebar_tab_presses": result.get("tab_presses"),
        "in_window_time_to_object_median_s": rounded(median(in_window)) if in_window else None,
        "in_window_time_to_object_s": [rounded(v) for v in in_window],
        "finished_to_downloaded_s": [rounded(a) for a, _ in downloaded],
        "downloaded_to_in_scene_s": [rounded(b) for _, b in downloaded],
        "gaps_explained": [
            {
                "idle_largest": r.get("idle_largest_gaps"),
                "in_flight_largest": r.get("busy_largest_gaps"),
                "in_flight_largest_without_a_sidebar_draw": r.get("busy_largest_undrawn_gaps"),
                "idle_time": r.get("idle_time"),
                "in_flight_time": r.get("busy_time"),
            }
            for r in rounds
        ],
        "load_average_at_round_start": result.get("load_average_at_round_start"),
        "settle_seconds_before_idle": result.get("settle_seconds"),
        "in_flight_stalled_ms": [r.get("busy_stalled_ms") for r in rounds],
        "in_flight_addon_ticks": [r.get("addon_ticks") for r in rounds],
        "in_flight_addon_tick_ms_max": [rounded(r.get("addon_tick_ms_max"), 2) for r in rounds],
        "in_flight_addon_python_draw_ms_per_redraw": [r.get("addon_panel_python_ms_per_redraw") for r in rounds],
        "addon_draw_profile": result.get("draw_profile"),
        "bare_redraw_ratios": {t["trial"]: t["ratio"] for t in result.get("bare") or []},
        "bare_redraw": result.get("bare") or [],
    }


def lower_priority(pid: int) -> None:
    """Run a process (every thread it has now; later ones inherit it) at the lowest CPU priority: the local server
    stands in for a service that runs elsewhere, so its reconstructions must not take this machine's two cores
    from the Blender window being measured."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.setpriority(os.PRIO_PROCESS, int(task.name), 19)
        except (OSError, ValueError):
            continue


def measure(window: str, quick: bool) -> dict[str, Any]:
    """One window's session against its own local server; returns summarise()'s figures."""
    from server.process import start_server

    started = time.monotonic()
    with start_server("--workers", str(JOBS), "--job-seconds", "3") as srv:
        lower_priority(srv.proc.pid)
        result = SESSIONS[window](srv.url, quick)
        finished = {str(j["id"]): j["finished_at"] for j in srv.stats()["jobs"] if j.get("finished_at")}
    figures = summarise(result, finished)
    figures["session_seconds"] = rounded(time.monotonic() - started, 1)
    log(f"ui window {window}: {figures}")
    return figures


NOTE = (
    "`ui_stall_ratio` and `in_window_time_to_object_s` (bench/ui_window.py, bench/ui_window_driver.py): one session "
    "per window against its own local server (8 workers, `--job-seconds 3`, run at the lowest CPU priority: it "
    "stands in for a service on another machine, and its reconstructions would otherwise take the two cores from "
    "the window being measured): Debian's Blender 3.4 under Xvfb with "
    "the legacy zip installed by `addon_install`, and Debian sid's Blender 5.2 (scripts/blender52_root.sh) with the "
    "extension zip installed by Blender's own extension installer; the sidebar shows the ModelsLab tab. A 20 ms "
    f"timer records every firing. {ROUNDS} rounds: {IDLE_SECONDS:g} s of the window idle, then {JOBS} jobs started "
    "through the N-panel operator (`INVOKE_DEFAULT`, all in flight at once); the round's ratio = the largest gap "
    "from the end of the operator calls to the first import (all jobs uploading, waiting, downloading) ÷ the "
    "largest gap of the idle seconds before. After the first import the window also draws the new meshes (each "
    "about 230,000 faces, software OpenGL) and runs Blender's importer on the main thread: those gaps are "
    "reported beside the ratio (`import_gaps_ms`, `importing_max_plain_gap_ms`), not in it. The imported objects "
    f"are removed after each round. Then {SINGLE} jobs one at a time: the epoch time the driver's timer first saw "
    "the object in the scene − the server's `finished_at` for that job (same machine clock), median. "
    "An idle baseline starts once the window has not redrawn for 1.5 s (e.g. the status bar's report of the last "
    "round's import has stopped animating). Each gap is split with the kernel's per-thread accounting "
    "(/proc/<pid>/task/<tid>/schedstat read at every "
    "firing): the main thread on a CPU, waiting for one (the machine's load) or blocked; the CPU time of Mesa's "
    "llvmpipe rasterizer threads, of the process's other threads and of the X server; with the add-on's timer tick "
    "and panel Python time (`gaps_explained`). Bare redraw trials after the rounds (`bare_redraw`): no job runs; "
    f"{IDLE_SECONDS:g} s idle, then {IDLE_SECONDS:g} s of the 3D view's sidebar, its header region or the "
    "Properties editor (neither the add-on's) tagged for redraw every 0.1 s, or a window-manager property set every "
    "0.1 s; "
    "`bare_redraw_ratios` = largest gap while tagging ÷ largest idle gap: Blender's own cost of one region redraw "
    "in this window, beside the stall ratio."
)
