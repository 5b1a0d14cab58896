"""Run scripts/batch.py's main() in this bpy process and record threads, open files and memory around it.

    python tests/soak/soak_driver.py STATS.json -- BATCH ARGS...

The baseline is taken once Blender (bpy) is loaded and before the batch loads the extension; the end state after
main() returned (the extension unregistered, its runner shut down). A sampler thread (present in both counts)
records the resident memory, the Python heap (tracemalloc: our code's objects, not Blender's mesh data) and the
number of finished results every SAMPLE_S seconds.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path

SAMPLE_S = 0.25
REPO_ROOT = Path(__file__).resolve().parents[2]


def rss_kib() -> int:
    """Resident set size of this process in KiB."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def open_files() -> dict[str, str]:
    """fd -> what it points at (files, sockets, pipes)."""
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the fd listdir itself used, already closed
    return found


def snapshot() -> dict:
    gc.collect()
    return {
        "python_threads": sorted(t.name for t in threading.enumerate()),
        "os_threads": len(os.listdir("/proc/self/task")),
        "open_files": open_files(),
        "rss_kib": rss_kib(),
    }


def main() -> int:
    stats_path = Path(sys.argv[1])
    batch_args = sys.argv[sys.argv.index("--") + 1 :]
    out_dir = Path(batch_args[batch_args.index("--out") + 1])
    results = out_dir / "results.jsonl"
    import bpy  # noqa: F401 - Blender loaded before the baseline

    samples: list[list[float]] = []
    stop = threading.Event()

    def sample() -> None:
        start = time.monotonic()
        while not stop.wait(SAMPLE_S):
            try:
                done = len(results.read_text(encoding="utf-8").splitlines())
            except OSError:
                done = 0
            python_heap = tracemalloc.get_traced_memory()[0] // 1024 if tracemalloc.is_tracing() else 0
            samples.append([round(time.monotonic() - start, 2), done, rss_kib(), python_heap])

    sampler = threading.Thread(target=sample, name="soak-sampler", daemon=True)
    sampler.start()
    stdout_target = os.readlink("/proc/self/fd/1")
    spec = importlib.util.spec_from_file_location("batch", REPO_ROOT / "scripts" / "batch.py")
    assert spec is not None and spec.loader is not None
    batch = importlib.util.module_from_spec(spec)
    sys.modules["batch"] = batch
    spec.loader.exec_module(batch)
    before = snapshot()
    # Python-level allocations (our runner, client, journal; not Blender's mesh data) are traced separately.
    tracemalloc.start()
    started = time.monotonic()
    code = batch.main(["batch.py", *batch_args])
    seconds = time.monotonic() - started
    time.sleep(0.5)  # let threads that were told to stop finish exiting
    after = snapshot()  # the sampler is alive here as it was in the baseline
    stop.set()
    sampler.join(5)
    after["python_heap_kib"] = tracemalloc.get_traced_memory()[0] // 1024
    tracemalloc.stop()
    stats = {
        "exit_code": code,
        "seconds": round(seconds, 2),
        "before": before,
        "after": after,
        "stdout_target": stdout_target,
        "samples": samples,
        "max_rss_kib": __import__("resource").getrusage(__import__("resource").RUSAGE_SELF).ru_maxrss,
    }
    stats_path.write_text(json.dumps(stats, indent=1), encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main())
