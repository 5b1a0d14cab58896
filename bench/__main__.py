"""`python -m bench [--only a,b] [--quick] [--out DIR]`: run the benchmark sections, write results and the report.

A full run writes bench/results.json, bench/extra.json, docs/BENCHMARKS.md and docs/bench_*.png. With --only or
--quick the files go to bench/out/ (or --out) so a partial run never overwrites the committed figures.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from .common import BENCH_DIR, DOCS_DIR, GOALS, Missing, Outcome, log, machine_info

# section name -> (module, the gated keys it fills)
SECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "server": ("server_time", ("server_res256_s",)),
    "time_to_mesh": (
        "time_to_mesh",
        (
            "time_to_mesh_overhead_s.project",
            "time_to_mesh_overhead_s.modelslab_cli",
            "time_to_mesh_overhead_s.naive_poll",
            "burst_overhead_s.project",
            "burst_overhead_s.modelslab_cli",
            "requests_per_job.project",
            "requests_per_job.modelslab_cli",
        ),
    ),
    "download": ("download", ("download_peak_rss_mb", "download_speed_vs_curl")),
    "blender": ("blender_bpy", ("register_ms", "import_overhead_ratio")),
    "batch": ("batch", ("batch_speedup",)),
    "batch_bookkeeping": ("batch_bookkeeping", ("batch_10k_overhead_s", "batch_10k_linearity")),
    "ui": (
        "ui",
        (
            "ui_tick_p99_ms",
            "ui_stall_max_ms",
            "ui_stall_ratio.blender34",
            "ui_stall_ratio.blender52",
            "in_window_time_to_object_s.blender34",
            "in_window_time_to_object_s.blender52",
        ),
    ),
}


def ensure_requirements() -> None:
    """Install bench/requirements.txt into this venv when a pin is missing (make bench sets itself up)."""
    wanted = []
    for line in (BENCH_DIR / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        try:
            if importlib.metadata.version(name) == version:
                continue
        except importlib.metadata.PackageNotFoundError:
            pass
        wanted.append(line)
    if wanted:
        log(f"installing {' '.join(wanted)} into {sys.prefix}")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wanted], check=True
        )


def run_section(name: str, quick: bool) -> Outcome:
    """Run one section; a Missing piece or a crash becomes null values with the reason, never a failed run."""
    module_name, keys = SECTIONS[name]
    started = time.monotonic()
    log(f"== {name}")
    try:
        module = importlib.import_module(f".{module_name}", __package__)
        runner: Callable[[bool], Outcome] = module.run
        outcome = runner(quick)
    except Missing as exc:
        outcome = Outcome(error=f"skipped: {exc}")
        log(f"{name}: skipped: {exc}")
    except Exception as exc:
        outcome = Outcome(error=f"failed: {type(exc).__name__}: {exc}")
        log(f"{name}: FAILED\n{traceback.format_exc()}")
    for key in keys:
        if outcome.values.get(key) is None:
            outcome.values[key] = None
            outcome.reasons.setdefault(key, outcome.error or "no value produced")
    outcome.seconds = time.monotonic() - started
    log(f"{name}: {outcome.seconds:.1f} s {json.dumps({k: outcome.values[k] for k in keys})}")
    return outcome


def nested_results(values: dict[str, float | None]) -> dict:
    """The results.json shape: flat keys plus nested objects for the dotted keys (time_to_mesh_overhead_s, ...)."""
    results: dict = {}
    for goal in GOALS:
        value = values.get(goal.key)
        if "." in goal.key:
            outer, inner = goal.key.split(".", 1)
            results.setdefault(outer, {})[inner] = value
        else:
            results[goal.key] = value
    return results


def _previous_run(results_dir: Path) -> dict | None:
    """The figures this run replaces (results.json flattened to dotted keys) and when they were made."""
    try:
        results = json.loads((results_dir / "results.json").read_text())
        generated = json.loads((results_dir / "extra.json").read_text()).get("generated")
    except (OSError, ValueError):
        return None
    values: dict[str, float | None] = {}
    for key, value in results.items():
        if isinstance(value, dict):
            values.update({f"{key}.{inner}": v for inner, v in value.items()})
        else:
            values[key] = value
    return {"generated": generated, "values": values}


def main(argv: list[str] | None = None) -> int:
    """Run the sections in order, then write results.json, extra.json, BENCHMARKS.md and the plots."""
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--only", default="", help=f"comma-separated sections of {', '.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (development only)")
    parser.add_argument("--out", default=None, help="write results here instead of bench/ and docs/")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; known: {', '.join(SECTIONS)}")
    partial = bool(args.only) or args.quick
    out = Path(args.out) if args.out else (BENCH_DIR / "out" if partial else None)
    results_dir = out or BENCH_DIR
    docs_dir = out or DOCS_DIR
    results_dir.mkdir(parents=True, exist_ok=True)
    docs_dir.mkdir(parents=True, exist_ok=True)

    previous = _previous_run(results_dir)
    started = time.monotonic()
    started_utc = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    ensure_requirements()
    machine = machine_info()
    load_before = os.getloadavg()
    outcomes = {name: run_section(name, args.quick) for name in names}
    total = time.monotonic() - started
    machine["load_average_1_5_15_at_start"] = [round(v, 2) for v in load_before]
    machine["load_average_1_5_15_at_end"] = [round(v, 2) for v in os.getloadavg()]

    values: dict[str, float | None] = {}
    for outcome in outcomes.values():
        values.update(outcome.values)
    results = nested_results(values)
    (results_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    extra = {
        "generated": started_utc,
        "run_seconds": round(total, 1),
        "quick": args.quick,
        "machine": machine,
        "sections": {
            name: {"seconds": round(o.seconds, 1), "error": o.error, "reasons": o.reasons, **o.extra}
            for name, o in outcomes.items()
        },
    }
    (results_dir / "extra.json").write_text(json.dumps(extra, indent=2, default=str) + "\n")
    from .report import write_report

    write_report(docs_dir, values, outcomes, machine, started_utc, total, args.quick, previous)
    log(f"done in {total:.0f} s: {results_dir / 'results.json'}, {docs_dir / 'BENCHMARKS.md'}")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
