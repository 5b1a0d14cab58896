"""batch_speedup: scripts/batch.py on 32 images, --concurrency 8 vs --concurrency 1 (bpy 5.0 module, headless).

The server has 8 workers and fixed 2 s jobs (--job-seconds 2). Each run gets a fresh Blender user dir and output
dir; its time is the whole process's wall clock (start-up included, the same in both runs). Every input must
be imported (exit code 0, 32 result rows) or the figure is not recorded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from server.process import start_server

from .common import API_KEY, BPY50_PYTHON, REPO_ROOT, Missing, Outcome, log, require_file, rounded

IMAGES = 32
WORKERS = 8
JOB_SECONDS = 2.0
BATCH = REPO_ROOT / "scripts" / "batch.py"


def _images(directory: Path, count: int) -> list[Path]:
    """count distinct image files (the examples, cycled, each under its own name)."""
    examples = sorted((REPO_ROOT / "examples").glob("*.png"))
    paths = []
    for index in range(count):
        source = examples[index % len(examples)]
        target = directory / f"{index:02d}-{source.name}"
        shutil.copyfile(source, target)
        paths.append(target)
    return paths


def _run_batch(base_url: str, images: list[Path], concurrency: int, root: Path) -> dict:
    home = root / f"home-c{concurrency}"
    out = root / f"out-c{concurrency}"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSLAB_")}
    env.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "MODELSLAB_API_KEY": API_KEY,
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )
    args = [
        str(BPY50_PYTHON),
        str(BATCH),
        "--base-url",
        base_url,
        "--concurrency",
        str(concurrency),
        "--out",
        str(out),
        *map(str, images),
    ]
    started = time.perf_counter()
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=600, env=env, cwd=str(root), stdin=subprocess.DEVNULL
    )
    seconds = time.perf_counter() - started
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip().startswith("{")]
    if proc.returncode != 0 or len(rows) != len(images):
        raise RuntimeError(
            f"batch.py --concurrency {concurrency} exited {proc.returncode} with {len(rows)} result rows "
            f"of {len(images)}:\n{proc.stderr[-2500:]}"
        )
    return {"seconds": seconds, "rows": rows}


def run(quick: bool = False) -> Outcome:
    """Concurrency 8 first, then 1, on the same server; speed-up = seconds(1) / seconds(8)."""
    require_file(BPY50_PYTHON, "make setup-bpy")
    require_file(BATCH, "scripts/batch.py (H6)")
    for piece in ("__init__.py", "blender/runtime.py", "blender/scripting.py"):
        if not (REPO_ROOT / piece).exists():
            raise Missing(f"{piece} has not landed yet (H3: the extension, which batch.py drives)")
    outcome = Outcome()
    count = 8 if quick else IMAGES
    root = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        images = _images(root, count)
        with start_server("--workers", str(WORKERS), "--job-seconds", str(JOB_SECONDS)) as srv:
            parallel = _run_batch(srv.url, images, 8, root)
            log(f"batch --concurrency 8: {parallel['seconds']:.1f} s")
            serial = _run_batch(srv.url, images, 1, root)
            log(f"batch --concurrency 1: {serial['seconds']:.1f} s")
            recon = [j["recon_seconds"] for j in srv.stats()["jobs"] if j.get("recon_seconds")]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    speedup = serial["seconds"] / parallel["seconds"]
    outcome.values["batch_speedup"] = rounded(speedup, 2)
    ideal_serial = count * JOB_SECONDS
    outcome.extra["batch"] = {
        "images": count,
        "seconds_concurrency_1": rounded(serial["seconds"], 2),
        "seconds_concurrency_8": rounded(parallel["seconds"], 2),
        "server_job_seconds_floor_concurrency_1": ideal_serial,
        "server_job_seconds_floor_concurrency_8": -(-count // 8) * JOB_SECONDS,
        "server_recon_seconds_median": rounded(sorted(recon)[len(recon) // 2], 3) if recon else None,
    }
    outcome.notes.append(
        f"`.venv-bpy50/bin/python scripts/batch.py --base-url URL --concurrency K --out DIR` on {count} image "
        f"files (the examples, copied under distinct names; default parameters, resolution 256), local server "
        f"with {WORKERS} workers and `--job-seconds {JOB_SECONDS:g}`; K = 8 then K = 1 on the same server, each "
        "with a fresh user dir. Speed-up = wall seconds at K=1 / wall seconds at K=8, each the whole process "
        "(bpy start-up, uploads, polling, downloads, imports)."
    )
    return outcome
