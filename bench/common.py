"""Shared pieces of the benchmark sections: paths, goals, the section outcome, statistics, helpers."""

from __future__ import annotations

import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "bench"
DOCS_DIR = REPO_ROOT / "docs"
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
BPY50_PYTHON = REPO_ROOT / ".venv-bpy50" / "bin" / "python"
BLENDER = Path("/usr/bin/blender")
DIST_DIR = Path(os.environ.get("BENCH_DIST_DIR") or REPO_ROOT / "dist")  # override: development only
EXTENSION_ZIP = DIST_DIR / "modelslab_3d-0.1.0.zip"
LEGACY_ZIP = DIST_DIR / "modelslab_3d-0.1.0-legacy.zip"
EXAMPLE_IMAGE = REPO_ROOT / "examples" / "duck_512.png"
API_KEY = "bench-key"  # the local server takes any non-empty key


@dataclass(frozen=True)
class Goal:
    """A gated figure: its results.json key, what it measures, and the bound it must meet."""

    key: str  # dotted for the nested time_to_mesh_overhead_s object
    what: str
    unit: str
    bound: float | None  # None = anchor (reported beside ours, not gated)
    higher_is_better: bool = False
    relative_to: str | None = None  # also gated against factor x this key's value from the same run
    factor: float = 1.0
    ungated: str = "anchor"  # what the report calls a figure without a goal: a comparison, or only reported

    def passes(self, value: float | None, values: dict[str, float | None] | None = None) -> bool | None:
        """True/False against the bound (and the relative bound); None when there is no value or no bound."""
        if value is None or (self.bound is None and self.relative_to is None):
            return None
        bounds = [] if self.bound is None else [self.bound]
        if self.relative_to is not None:
            other = (values or {}).get(self.relative_to)
            if other is None:
                return None
            bounds.append(self.factor * other)
        if self.higher_is_better:
            return all(value >= b for b in bounds)
        return all(value <= b for b in bounds)

    @property
    def goal_text(self) -> str:
        """The goal as written in the issue (e.g. '≤ 1.0', '≤ 0.5 × burst_overhead_s.modelslab_cli')."""
        if self.bound is None and self.relative_to is None:
            return self.ungated
        sign = "≥" if self.higher_is_better else "≤"
        parts = [] if self.bound is None else [f"{sign} {self.bound:g}"]
        if self.relative_to is not None:
            factor = "" if self.factor == 1.0 else f"{self.factor:g} × "
            parts.append(f"{sign} {factor}`{self.relative_to}`")
        return " and ".join(parts)


GOALS: tuple[Goal, ...] = (
    Goal(
        "time_to_mesh_overhead_s.project",
        "time-to-mesh overhead with an exact eta, this project (median s)",
        "s",
        0.10,
        relative_to="time_to_mesh_overhead_s.modelslab_cli",
    ),
    Goal("time_to_mesh_overhead_s.modelslab_cli", "time-to-mesh overhead, official modelslab CLI", "s", None),
    Goal("time_to_mesh_overhead_s.naive_poll", "time-to-mesh overhead, 10 s polling loop (SDK examples)", "s", None),
    Goal(
        "burst_overhead_s.project",
        "time-to-mesh overhead, all jobs at once (late eta), this project (median s)",
        "s",
        None,
        relative_to="burst_overhead_s.modelslab_cli",
        factor=0.5,
    ),
    Goal("burst_overhead_s.modelslab_cli", "the same, official modelslab CLI (median s)", "s", None),
    Goal(
        "requests_per_job.project",
        "fetches + probes (HEAD or GET) + downloads per job, both phases, this project",
        "",
        None,
        relative_to="requests_per_job.modelslab_cli",
        factor=2.0,
    ),
    Goal("requests_per_job.modelslab_cli", "the same, official modelslab CLI", "", None),
    Goal("ui_tick_p99_ms", "p99 duration of the add-on timer callback, 8 jobs, import ticks excluded", "ms", 2.0),
    Goal(
        "ui_stall_ratio.blender34",
        "largest 20 ms-timer gap with 8 jobs in flight ÷ the same window idle, Blender 3.4, median of 3",
        "×",
        1.10,
    ),
    Goal("ui_stall_ratio.blender52", "the same in a Blender 5.2 window (extension install)", "×", 1.10),
    Goal(
        "in_window_time_to_object_s.blender34",
        "one job alone: server finished it → object in the window's scene, Blender 3.4, median of 3",
        "s",
        1.0,
    ),
    Goal("in_window_time_to_object_s.blender52", "the same in the Blender 5.2 window", "s", 1.0),
    Goal(
        "ui_stall_max_ms",
        "largest gap of a 20 ms timer in the Blender 3.4 window from the first call to the last import, 8 jobs",
        "ms",
        None,
        ungated="reported",
    ),
    Goal("import_overhead_ratio", "add-on import / bare wm.obj_import, resolution-256 OBJ, median", "×", 1.15),
    Goal("batch_speedup", "scripts/batch.py 32 images, --concurrency 8 vs 1", "×", 6.0, higher_is_better=True),
    Goal("batch_10k_overhead_s", "the batch's own bookkeeping for 10,000 inputs (server time excluded)", "s", 5.0),
    Goal("batch_10k_linearity", "time(10,000 inputs) / (10 × time(1,000)): 1 = linear, ~10 = quadratic", "×", 2.0),
    Goal("download_peak_rss_mb", "extra peak RSS of the client downloading a 200 MB mesh", "MB", 32.0),
    Goal("download_speed_vs_curl", "client download throughput / curl -o, same file", "×", 0.9, higher_is_better=True),
    Goal("register_ms", "enable the extension (register) in bpy 5.0, median", "ms", 20.0),
    Goal("server_res256_s", "local server, 512×512 image → OBJ at resolution 256, median", "s", 3.0),
)
GOAL_BY_KEY = {goal.key: goal for goal in GOALS}


class Missing(Exception):
    """A piece a section needs is not there (yet): the section records null with this reason."""


@dataclass
class Outcome:
    """What one section produced: gated values (dotted keys), reported-only figures, notes, plot data."""

    values: dict[str, float | None] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # key -> why it is null
    series: dict[str, Any] = field(default_factory=dict)  # raw data for the plots
    findings: list[str] = field(default_factory=list)  # what today's data says (written from the numbers)
    seconds: float = 0.0
    error: str | None = None


def log(message: str) -> None:
    """Progress line on stderr (stdout stays quiet for callers that parse it)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank: an observed value, never an interpolation."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def rounded(value: float | None, digits: int = 3) -> float | None:
    """Round for the results file (None stays None)."""
    return None if value is None else round(float(value), digits)


def run_process(
    args: Sequence[str | os.PathLike],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    what: str = "",
    whole_env: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run a helper process to completion (env added to os.environ, or all of it with whole_env); raise
    RuntimeError with its stderr tail when it fails."""
    full_env = {} if whole_env else dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=str(cwd or REPO_ROOT),
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-3000:]
        raise RuntimeError(f"{what or Path(str(args[0])).name} exited with {proc.returncode}:\n{tail}")
    return proc


def require_file(path: Path, why: str) -> Path:
    """Return path or raise Missing naming what is absent."""
    if not path.exists():
        raise Missing(f"{path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path} is missing ({why})")
    return path


def require_module(relative: str, owner: str) -> Path:
    """A repository file the section needs; Missing (with owner as the reason) when it is absent."""
    return require_file(REPO_ROOT / relative, f"missing: {owner}")


def wait_for(condition: Callable[[], Any], timeout: float, interval: float = 0.01, what: str = "") -> Any:
    """Poll condition() until truthy (returned) or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what or 'a condition'}")
        time.sleep(interval)


def server_jobs_by_prefix(stats: dict) -> dict[str, dict]:
    """Server stats jobs keyed by file_prefix (the one id every client sees, even when `id` is null)."""
    return {job["file_prefix"]: job for job in stats.get("jobs", [])}


def _command_version(args: list[str]) -> str | None:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0].strip() if text else None


def _pip_version(python: Path, package: str) -> str | None:
    if not python.exists():
        return None
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    return _command_version([str(python), "-c", code])


def machine_info() -> dict[str, Any]:
    """nproc, CPU model, memory, OS and the versions of everything the run used."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / (1 << 20), 1)
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": mem_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "bpy": _pip_version(BPY50_PYTHON, "bpy"),
        "blender_gui": _command_version([str(BLENDER), "--version"]) if BLENDER.exists() else None,
        "modelslab_cli": _pip_version(VENV_PYTHON, "modelslab-cli"),
        "requests": _pip_version(VENV_PYTHON, "requests"),
        "curl": _command_version(["curl", "--version"]) if shutil.which("curl") else None,
    }
