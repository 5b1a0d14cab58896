"""batch_10k_overhead_s: the headless batch's own bookkeeping for 10,000 inputs, server and Blender work excluded.

    .venv-bpy50/bin/python bench/batch_bookkeeping.py [--count N]     (any other Python re-runs it under the bpy venv)

The real engine (blender/batch.py's Batch) and the real output path of scripts/batch.py (Output: a JSON line on
stdout, one appended to OUT/results.jsonl, progress lines on stderr) run every input; the runner underneath is a
stand-in whose jobs are accepted at once and settle in order, and "importing" returns a placeholder object. So
the time is what the batch spends per row on its own: the work list, the in-flight window, state-change lines,
result rows and the results file. It must grow linearly: the figure for N/10 inputs is measured too, and
`linearity` = time(N) / (10 x time(N/10)) stays near 1 (a file rewritten per row made it grow with N).
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BPY_PYTHON = REPO_ROOT / ".venv-bpy50" / "bin" / "python"
PACKAGE = "modelslab_3d"
DEFAULT_COUNT = 10_000
WINDOW = 8  # jobs in flight, as a busy batch runs them


def load_package() -> ModuleType:
    """The checkout as the package modelslab_3d (not registered: only its modules are used)."""
    spec = importlib.util.spec_from_file_location(
        PACKAGE, REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]
    )
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    spec.loader.exec_module(package)
    return package


def load_cli() -> ModuleType:
    """scripts/batch.py as a module (its Output class is the batch's output path)."""
    spec = importlib.util.spec_from_file_location("batch_cli", REPO_ROOT / "scripts" / "batch.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class StandInRunner:
    """Jobs that the server accepts at once and that settle in submit order: no network, no threads."""

    def __init__(self, records_module: ModuleType) -> None:
        self.records_module = records_module
        self.records: dict[str, Any] = {}
        self.count = 0

    def submit(self, image: str, params: Any, **_kw: Any) -> Any:
        self.count += 1
        record = self.records_module.JobRecord(
            local_id=f"job{self.count:06d}",
            name=Path(image).stem,
            source=image,
            params={},
            base_url="http://127.0.0.1:1",
            flavor="enterprise",
            state="submitted",
            remote_id=str(self.count),
            extra={"original_source": image, "batch": {"out": "bench"}},
        )
        self.records[record.local_id] = record
        return record

    def wait_any(self, local_ids: list[str], timeout: float, on_event: Any) -> Any:
        record = self.records[local_ids[0]]
        for state in ("processing", "downloaded"):
            record.state = state
            on_event(self.records_module.JobEvent(record.local_id, state, 1.0, state, record))
        record.file_path = f"/nonexistent/{record.local_id}.obj"
        return record

    def get_record(self, local_id: str) -> Any:
        return self.records.get(local_id)

    def import_job(self, local_id: str, again: bool = False) -> Any:
        record = self.records[local_id]
        record.state = "imported"
        return _Placeholder(record.name)


class _Placeholder:
    """What result rows read from an imported object: its name (no mesh: no vertex count)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.data = None


def run_once(count: int, out_dir: Path) -> float:
    """Seconds the engine and the output path take for `count` inputs."""
    batch = importlib.import_module(f"{PACKAGE}.blender.batch")
    batch_output = importlib.import_module(f"{PACKAGE}.blender.batch_output")
    records = importlib.import_module(f"{PACKAGE}.api.records")
    cli = load_cli()
    runner = StandInRunner(records)
    for name in ("submit", "wait_any", "get_record", "import_job"):
        setattr(batch, name, getattr(runner, name))
    images = [str(out_dir / "in" / f"photo_{index:05d}.png") for index in range(count)]
    results = batch_output.ResultsLog(out_dir, keep_previous=False)
    sink = io.StringIO()
    progress = open(os.devnull, "w", encoding="utf-8")  # closed below
    output = cli.Output(out_dir, sink, results)
    real_stderr = sys.stderr
    started = time.perf_counter()
    try:
        sys.stderr = progress
        engine = batch.Batch({}, limit=WINDOW, tag={"out": "bench"}, on_row=output.result, on_progress=output.progress)
        engine.add(images)
        rows = engine.run()
    finally:
        sys.stderr = real_stderr
        elapsed = time.perf_counter() - started
        results.close()
        progress.close()
    lines = results.path.read_text(encoding="utf-8").count("\n")
    if len(rows) != count or engine.imported != count or lines != count:
        got = f"{len(rows)} rows, {engine.imported} imported, {lines} lines"
        raise RuntimeError(f"expected {count} imported rows, got {got}")
    return elapsed


def measure(count: int) -> dict[str, Any]:
    """The figures for `count` inputs and for a tenth of them."""
    load_package()
    import bpy  # noqa: F401 - Blender starts before the clock does

    with tempfile.TemporaryDirectory(prefix="batch-bookkeeping-") as folder:
        root = Path(folder)
        small = min(run_once(count // 10, root / f"small{i}") for i in range(3))
        full = run_once(count, root / "full")
        tracemalloc.start()
        run_once(count, root / "memory")
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {
        "batch_10k_overhead_s" if count == DEFAULT_COUNT else f"batch_{count}_overhead_s": round(full, 3),
        "inputs": count,
        "per_input_ms": round(full / count * 1000, 4),
        f"overhead_s_{count // 10}_inputs": round(small, 4),
        "linearity": round(full / (10 * small), 3) if small > 0 else None,
        "python_heap_peak_mb": round(peak / (1 << 20), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="inputs (default 10000)")
    args = parser.parse_args()
    if importlib.util.find_spec("bpy") is None:
        if not BPY_PYTHON.exists():
            sys.exit(f"batch_bookkeeping: no bpy here and no {BPY_PYTHON} (make setup-bpy)")
        return subprocess.call([str(BPY_PYTHON), __file__, *sys.argv[1:]])
    result = measure(args.count)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def run(quick: bool = False) -> Any:
    """The bench section: this script under the bpy venv, its JSON line turned into the gated figures."""
    from .common import BPY50_PYTHON, Outcome, require_file, rounded, run_process

    require_file(BPY50_PYTHON, "make setup-bpy")
    count = DEFAULT_COUNT // 5 if quick else DEFAULT_COUNT
    proc = run_process([BPY50_PYTHON, __file__, "--count", str(count)], timeout=600, what="batch_bookkeeping")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    outcome = Outcome()
    overhead = figures.get("batch_10k_overhead_s", figures.get(f"batch_{count}_overhead_s"))
    outcome.values["batch_10k_overhead_s"] = rounded(overhead * DEFAULT_COUNT / count)
    outcome.values["batch_10k_linearity"] = figures["linearity"]
    outcome.extra["batch_bookkeeping"] = figures
    outcome.findings.append(
        f"The headless batch's own bookkeeping for {count:,} inputs took {overhead} s "
        f"({figures['per_input_ms']} ms per input, {figures['python_heap_peak_mb']} MB Python heap at its peak); "
        f"a tenth of them took {figures[f'overhead_s_{count // 10}_inputs']} s, so time grows linearly "
        f"(ratio {figures['linearity']}; 1 = linear, a file rewritten per row grew it with the number of rows)."
    )
    outcome.notes.append(
        "`batch_10k_overhead_s`: bench/batch_bookkeeping.py under bpy 5.0. The real engine (blender/batch.py) and "
        "the real output path of scripts/batch.py (a JSON line per result on stdout, one appended to "
        "`results.jsonl`, progress lines) run 10,000 inputs; the runner underneath is a stand-in whose jobs are "
        "accepted at once and settle in order, so server and Blender time are excluded. `batch_10k_linearity` = "
        "time(10,000) / (10 × time(1,000)), the fastest of three runs for the 1,000."
    )
    return outcome
