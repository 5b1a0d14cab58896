"""Run Debian's Blender in a real (virtual) window with a driver script and collect the driver's JSON result.

Used by tests/gui and by the benchmarks (ui_stall_max_ms). Plain stdlib; runs with the dev venv.

    reason = unavailable_reason()            # None when blender + xvfb-run + python3-requests are there
    run = run_jobs_session(server_url=srv.url, api_key=key, workdir=tmp, jobs=8, screenshot=None)
    result = run.check()                     # AssertionError with Blender's output when anything failed
    result["gaps"]["max_excl_import_ms"], result["gaps"]["p99_excl_import_ms"]

Blender gets a temporary HOME / XDG_CONFIG_HOME / TMPDIR under `workdir`, so the legacy add-on is installed
into a throw-away user scripts dir; the API key only travels in the environment (MODELSLAB_API_KEY).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import paths
from tests.helpers.blender import EXTENSION_ID, BlenderRun, run_process
from tests.helpers.paths import REPO_ROOT
from tests.helpers.shipping import newest_shipped_mtime, shipped_files, zip_name

MODULE = EXTENSION_ID  # the legacy add-on's module name
DIST_LEGACY_ZIP = REPO_ROOT / "dist" / zip_name(legacy=True)
JOBS_DRIVER = REPO_ROOT / "tests" / "gui" / "jobs_driver.py"
EXAMPLE_IMAGES = [str(path) for path in paths.EXAMPLE_IMAGES]
DEFAULT_SCREEN = "1600x1000x24"


@dataclass
class DriverSession:
    """A window driver's result JSON and Blender's output; step(name) is one step the driver recorded."""

    result: dict[str, Any]
    output: str

    def step(self, name: str) -> Any:
        steps = self.result.get("steps", {})
        assert name in steps, f"the driver never reached {name!r}: {self.result.get('errors')}\n{self.output[-3000:]}"
        return steps[name]


def unavailable_reason() -> str | None:
    """Why the gui layer cannot run here (None when it can): Blender, xvfb-run and the system requests."""
    missing = [tool for tool in ("blender", "xvfb-run") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (make setup-gui installs them with apt-get as root)"
    probe = subprocess.run(["/usr/bin/python3", "-c", "import requests"], capture_output=True, check=False)
    if probe.returncode != 0:
        return "python3-requests is not installed for Blender's system Python (make setup-gui)"
    return None


def make_legacy_zip(target: Path) -> Path:
    """Zip the add-on's shipped files from the checkout under `modelslab_3d/` (what `make build` does, minus
    the extension tool's validation) — used when dist/ has no zip or an older one than the sources."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in shipped_files():
            archive.write(file, f"{MODULE}/{file.relative_to(REPO_ROOT).as_posix()}")
    return target


def legacy_zip(workdir: Path) -> tuple[Path, str]:
    """(zip path, how it was obtained): env MODELSLAB_GUI_ZIP if set (test a given build), else dist/'s legacy
    zip when it is at least as new as every source file, else a fresh one made from the checkout in workdir."""
    override = os.environ.get("MODELSLAB_GUI_ZIP")
    if override:
        return Path(override).resolve(), "MODELSLAB_GUI_ZIP"
    if DIST_LEGACY_ZIP.is_file() and DIST_LEGACY_ZIP.stat().st_mtime >= newest_shipped_mtime():
        return DIST_LEGACY_ZIP, f"{DIST_LEGACY_ZIP.relative_to(REPO_ROOT)} (make build)"
    why = "older than the sources" if DIST_LEGACY_ZIP.is_file() else "missing"
    made = make_legacy_zip(workdir / DIST_LEGACY_ZIP.name)
    return made, f"made from the checkout ({DIST_LEGACY_ZIP.relative_to(REPO_ROOT)} {why})"


def blender_env(home: Path, *, api_key: str | None = None, base_url: str | None = None) -> dict[str, str]:
    """Environment for a Blender child: a private HOME/config/temp dir, the key and server URL (if given)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODELSLAB_")}
    config = home / ".config"
    tmp = home / "tmp"
    for directory in (config, tmp):
        directory.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(config), TMPDIR=str(tmp), PYTHONNOUSERSITE="1")
    # The local server is on loopback: a proxy configured for the registries must not see those requests.
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    if api_key is not None:
        env["MODELSLAB_API_KEY"] = api_key
    if base_url is not None:
        env["MODELSLAB_BASE_URL"] = base_url
    return env


def run_blender(
    args: list[str],
    *,
    env: dict[str, str],
    timeout: float,
    window: bool = True,
    screen: str = DEFAULT_SCREEN,
    cwd: Path | None = None,
    result_path: Path | None = None,
) -> BlenderRun:
    """Run `blender ARGS` (under `xvfb-run -a` when window=True) with a watchdog; always captures both streams.
    The driver's report is the JSON file result_path, when it wrote one."""
    command = ["blender", *args]
    if window:
        xvfb_log = Path(env["TMPDIR"]) / "xvfb.log"
        command = ["xvfb-run", "-a", "-e", str(xvfb_log), "-s", f"-screen 0 {screen}", *command]

    def payload(_stdout: str) -> dict[str, Any] | None:
        if result_path is not None and result_path.is_file():
            return json.loads(result_path.read_text(encoding="utf-8"))
        return None

    run = run_process(command, env=env, timeout=timeout, cwd=cwd or REPO_ROOT, payload=payload)
    if result_path is not None:
        run.notes.append(f"driver result file: {result_path}")
    return run


def run_driver(
    driver: Path,
    config: dict[str, Any],
    *,
    workdir: Path,
    env: dict[str, str],
    timeout: float,
    screen: str = DEFAULT_SCREEN,
) -> BlenderRun:
    """Start Blender in a window with `driver` (a --python script that reads the JSON config named after `--`)
    and return its run; config["result"] is where the driver writes its JSON (default workdir/result.json)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = dict(config)
    config.setdefault("result", str(workdir / "result.json"))
    config_path = workdir / "driver-config.json"
    config_path.write_text(json.dumps(config, indent=1), encoding="utf-8")
    result_path = Path(config["result"])
    result_path.unlink(missing_ok=True)
    args = [
        "--factory-startup",
        "--enable-event-simulate",  # the driver switches the sidebar tab with simulated Ctrl+Tab
        "--python-exit-code",
        "3",
        "--python",
        str(driver),
        "--",
        str(config_path),
    ]
    return run_blender(args, env=env, timeout=timeout, screen=screen, result_path=result_path)


def run_jobs_session(
    *,
    server_url: str,
    api_key: str,
    workdir: Path,
    jobs: int = 3,
    images: list[str] | None = None,
    operator_props: dict[str, Any] | None = None,
    scene_settings: dict[str, Any] | None = None,
    prefs: dict[str, Any] | None = None,
    screenshot: Path | None = None,
    save_blend: Path | None = None,
    zip_path: Path | None = None,
    job_timeout: float = 120.0,
    timeout: float | None = None,
    record_interval: float = 0.02,
    sidebar_width: int = 420,
    arrange: bool = True,
    settle_seconds: float = 2.0,
    viewport_aa: str = "OFF",
    screen: str = DEFAULT_SCREEN,
) -> BlenderRun:
    """Install the legacy add-on in a fresh Blender window, start `jobs` generations at once through the
    operator's interactive path, record main-loop gaps with a `record_interval` timer until every object is
    imported, then (optionally) screenshot and save a .blend. result["gaps"] has max/p99 with and without
    import gaps and the full timeline; result["calls"] the operator call durations; result["objects"] the
    imported objects. The watchdog (timeout) defaults to job_timeout + 90 s."""
    workdir.mkdir(parents=True, exist_ok=True)
    notes = []
    if zip_path is None:
        zip_path, origin = legacy_zip(workdir)
        notes.append(f"add-on zip: {origin}")
    config: dict[str, Any] = {
        "zip": str(zip_path),
        "module": MODULE,
        "jobs": jobs,
        "images": images or EXAMPLE_IMAGES,
        "operator_props": operator_props or {},
        "scene_settings": scene_settings or {},
        "prefs": prefs or {},
        "screenshot": str(screenshot) if screenshot else None,
        "save_blend": str(save_blend) if save_blend else None,
        "timeout": job_timeout,
        "record_interval": record_interval,
        "category": "ModelsLab",
        "collection": "ModelsLab",
        "sidebar_width": sidebar_width,
        "arrange": arrange,
        "settle_seconds": settle_seconds,
        "viewport_aa": viewport_aa,
        "screenshot_aa": "8",
    }
    env = blender_env(workdir / "home", api_key=api_key, base_url=server_url)
    run = run_driver(
        JOBS_DRIVER,
        config,
        workdir=workdir,
        env=env,
        timeout=timeout if timeout is not None else job_timeout + 90.0,
        screen=screen,
    )
    run.notes.extend(notes)
    return run


INSTALL_SCRIPT = """
import sys, bpy
zip_path, module = sys.argv[sys.argv.index("--") + 1:][:2]
bpy.ops.preferences.addon_install(overwrite=True, filepath=zip_path)
bpy.ops.preferences.addon_enable(module=module)
assert module in bpy.context.preferences.addons, module + " is not enabled"
bpy.ops.wm.save_userpref()
print("installed and enabled", module, "in", bpy.utils.user_resource("SCRIPTS"))
"""


def install_addon_background(zip_path: Path, env: dict[str, str], *, timeout: float = 120.0) -> BlenderRun:
    """`blender -b`: install the legacy zip into env's user dir, enable it and save the preferences, so later
    `blender -b` runs in the same env (without --factory-startup) start with the add-on enabled."""
    script = Path(env["TMPDIR"]) / "install_addon.py"
    script.write_text(INSTALL_SCRIPT, encoding="utf-8")
    args = ["-b", "--factory-startup", "--python-exit-code", "3", "--python", str(script)]
    return run_blender([*args, "--", str(zip_path), MODULE], env=env, timeout=timeout, window=False)
