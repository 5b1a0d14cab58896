"""register_ms and import_overhead_ratio in the bpy 5.0 module (fresh processes, a temporary Blender user dir).

register_ms: the first enable of the installed extension in a fresh process (its imports + register()), median
over REGISTER_PROCESSES processes; warm disable/enable cycles and an empty extension's enable are reported
beside it. import_overhead_ratio: the add-on's importer (collection, placement, material, custom props, undo
step) on a resolution-256 OBJ from the local server / bare `bpy.ops.wm.obj_import` of the same file, alternating,
ratio of the medians.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import requests

from server.process import start_server

from .bpy_probe import RESULT_MARKER
from .common import (
    API_KEY,
    BENCH_DIR,
    BPY50_PYTHON,
    EXAMPLE_IMAGE,
    EXTENSION_ZIP,
    Outcome,
    log,
    median,
    require_file,
    rounded,
    run_process,
    wait_for,
)

EXTENSION_MODULE = "bl_ext.user_default.modelslab_3d"
EMPTY_MODULE = "bl_ext.user_default.bench_empty"
REGISTER_PROCESSES = 11
WARM_CYCLES = 5
IMPORT_ROUNDS = 15
PROBE = BENCH_DIR / "bpy_probe.py"

EMPTY_MANIFEST = """schema_version = "1.0.0"
id = "bench_empty"
version = "1.0.0"
name = "Bench Empty"
tagline = "An empty extension: the cost of enabling any extension"
maintainer = "bench"
type = "add-on"
blender_version_min = "4.2.0"
license = ["SPDX:GPL-3.0-or-later"]
"""
EMPTY_INIT = "def register():\n    pass\n\n\ndef unregister():\n    pass\n"


class UserDir:
    """A temporary HOME shared by the probes (the extensions are installed once)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The probe's environment: this HOME, no ModelsLab or proxy variables from outside (plus extra)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("MODELSLAB_")
            and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
            and k != "PYTHONDONTWRITEBYTECODE"  # Blender caches add-on bytecode in __pycache__; so do the probes
        }
        env.update(
            {
                "HOME": str(self.home),
                "XDG_CONFIG_HOME": str(self.home / ".config"),
                "XDG_CACHE_HOME": str(self.home / ".cache"),
                "NO_PROXY": "127.0.0.1,localhost",
            }
        )
        env.update(extra or {})
        return env

    def probe(self, *args: str, timeout: float = 180, env: dict[str, str] | None = None) -> dict[str, Any]:
        """Run bpy_probe.py with args in a fresh bpy process and return its result."""
        proc = run_process(
            [BPY50_PYTHON, PROBE, *args],
            timeout=timeout,
            env=self.env(env),
            what=f"bpy probe {args[0]}",
            whole_env=True,
        )
        for line in reversed(proc.stdout.splitlines()):
            if line.startswith(RESULT_MARKER):
                payload = json.loads(line[len(RESULT_MARKER) :])
                if not payload.get("ok"):
                    raise RuntimeError(f"bpy probe {args[0]} failed:\n{payload.get('traceback')}")
                return payload["result"]
        raise RuntimeError(f"bpy probe {args[0]} printed no result:\n{proc.stderr[-2000:]}")


def _empty_extension(directory: Path) -> Path:
    path = directory / "bench_empty-1.0.0.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("blender_manifest.toml", EMPTY_MANIFEST)
        archive.writestr("__init__.py", EMPTY_INIT)
    return path


def _resolution_256_obj(directory: Path) -> Path:
    with start_server("--workers", "1", "--job-seconds", "0") as srv:
        image_url = srv.upload(EXAMPLE_IMAGE, key=API_KEY)
        body = srv.post(
            "/api/v1/enterprise/3d/image_to_3d", {"key": API_KEY, "init_image": image_url, "resolution": 256}
        ).json()
        wait_for(lambda: (j := srv.job(body["id"])) and j["finished_at"], timeout=120, interval=0.05, what="job")
        result = srv.post(f"/api/v1/enterprise/3d/fetch/{body['id']}", {"key": API_KEY}).json()
        session = requests.Session()
        session.trust_env = False
        path = directory / "duck_512.obj"
        path.write_bytes(session.get(result["output"][0], timeout=60).content)
        session.close()
    return path


def run(quick: bool = False) -> Outcome:
    """Install once, then the register probes (fresh processes) and the import comparison (each may fail alone)."""
    require_file(BPY50_PYTHON, "make setup-bpy")
    require_file(EXTENSION_ZIP, "make build (scripts/build_extension.py)")
    outcome = Outcome()
    root = Path(tempfile.mkdtemp(prefix="bench-bpy-"))
    try:
        user = UserDir(root)
        user.probe("install", str(EXTENSION_ZIP), str(_empty_extension(root)))
        for key, part in (("register_ms", _register), ("import_overhead_ratio", _import)):
            try:
                part(user, root, outcome, quick)
            except Exception as exc:
                outcome.values[key] = None
                outcome.reasons[key] = f"failed: {exc}"[:1500]
                log(f"{key}: FAILED: {exc}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return outcome


def _register(user: UserDir, root: Path, outcome: Outcome, quick: bool) -> None:
    processes = 2 if quick else REGISTER_PROCESSES
    ours: list[float] = []
    ours_cpu: list[float] = []
    first_any: list[float] = []
    empty_alone: list[float] = []
    warm: list[float] = []
    heavy: set[str] = set()
    # The first process compiles the modules to __pycache__, as Blender's first start with the add-on does.
    first_ever = user.probe("register", EXTENSION_MODULE, "0", EMPTY_MODULE)["cold_ms"]
    for _ in range(processes):
        result = user.probe("register", EXTENSION_MODULE, str(WARM_CYCLES), EMPTY_MODULE)
        ours.append(result["cold_ms"])
        ours_cpu.append(result["cold_cpu_ms"])
        first_any.append(result["warm_up_ms"])
        warm += result["warm_ms"]
        heavy.update(result["heavy_loaded_by_enable"])
    for _ in range(processes):
        empty_alone.append(user.probe("register", EMPTY_MODULE, "0")["cold_ms"])  # Blender's machinery included
    log(
        f"register: ours {', '.join(f'{v:.1f}' for v in ours)} ms (after an empty extension, "
        f"{median(first_any):.1f} ms); warm {median(warm):.1f} ms"
    )
    outcome.values["register_ms"] = rounded(median(ours), 2)
    outcome.extra["register"] = {
        "first_enable_ms": [rounded(v, 2) for v in ours],
        "first_enable_min_ms": rounded(min(ours), 2),
        "first_enable_cpu_ms_median": rounded(median(ours_cpu), 2),
        "first_enable_ever_ms_compiling_sources": rounded(first_ever, 2),
        "warm_enable_ms_median": rounded(median(warm), 2),
        "empty_extension_after_blender_machinery_ms_median": rounded(median(first_any), 2),
        "empty_extension_first_in_fresh_process_ms_median": rounded(median(empty_alone), 2),
        "heavy_modules_loaded_by_enable": sorted(heavy),
    }
    outcome.notes.append(
        f"`register_ms` = median over {processes} fresh bpy 5.0 processes of the first "
        "`bpy.ops.preferences.addon_enable(module='bl_ext.user_default.modelslab_3d')` in that process: the "
        "extension's own imports (bytecode cached in its `__pycache__` by a first process, as after Blender's first "
        "start with the add-on; that first enable, compiling the sources, is `first_enable_ever_ms_compiling_sources`) "
        "plus its register(). Blender lazily loads its own extension machinery (bl_pkg's blender_ext, "
        "extension utils, wheel manager) around the first extension enable of a process, whatever the extension: "
        "the probe imports those modules and enables an empty extension (no-op register()) first, so that cost "
        "(`empty_extension_first_in_fresh_process_ms_median`, the empty extension alone in a fresh process) is not "
        f"charged to the add-on. The same process then runs {WARM_CYCLES} disable/enable cycles "
        "(`warm_enable_ms_median`, modules already imported). `heavy_modules_loaded_by_enable` lists "
        "requests/urllib3/numpy if enabling the add-on pulled them in (it must not). The gated figure is wall "
        "time; the main thread's CPU time of the same enables (`first_enable_cpu_ms_median`) is beside it because "
        "this 2-core machine is shared (see the load average in the machine table)."
    )


def _import(user: UserDir, root: Path, outcome: Outcome, quick: bool) -> None:
    obj_path = _resolution_256_obj(root)
    rounds = 3 if quick else IMPORT_ROUNDS
    result = user.probe("import", EXTENSION_MODULE, str(obj_path), str(rounds), timeout=300)
    ratio = median(result["addon_s"]) / median(result["bare_s"])
    pair_ratios = [a / b for a, b in zip(result["addon_s"], result["bare_s"], strict=True)]
    log(
        f"import: add-on {', '.join(f'{v:.3f}' for v in result['addon_s'])} s, "
        f"bare {', '.join(f'{v:.3f}' for v in result['bare_s'])} s -> ratio {ratio:.3f}"
    )
    outcome.values["import_overhead_ratio"] = rounded(ratio)
    outcome.extra["import"] = {
        "obj_bytes": obj_path.stat().st_size,
        "addon_s": [rounded(v, 4) for v in result["addon_s"]],
        "bare_s": [rounded(v, 4) for v in result["bare_s"]],
        "per_pair_ratio_median": rounded(median(pair_ratios)),
        "first_call_s": {k: rounded(v, 4) for k, v in result["first"].items()},
        "imported_object": result["check"],
    }
    outcome.notes.append(
        f"`import_overhead_ratio` = median of {rounds} add-on imports / median of {rounds} bare "
        "`wm.obj_import` calls of the same resolution-256 OBJ from the local server, alternating (the scene "
        "is emptied between calls), after unmeasured warm-up calls (the very first of each: `first_call_s`). The "
        "add-on side is `blender.importer.import_mesh` with the preference defaults, i.e. what a finished job "
        "runs: collection, 3D-cursor placement, Color attribute + material, shade smooth, custom props, undo "
        "push. `imported_object` checks the result is what the add-on promises."
    )
