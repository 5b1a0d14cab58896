"""Run Blender in a child process and read what its driver reported.

Two kinds of Blender are run: the bpy module of a bpy venv (the blender and batch layers: a fresh process per
scenario, `python tests/blender/scenario_driver.py SPEC.json`, because bpy state is process-global), and Debian's
`blender` binary (the gui layer, see gui.py). Both end in one BlenderRun, and both run under one watchdog.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.paths import REPO_ROOT

SCENARIO_DRIVER = REPO_ROOT / "tests" / "blender" / "scenario_driver.py"
RESULT_MARKER = "@@MODELSLAB_TEST_RESULT@@ "  # scenario_driver.py prints its JSON payload after this
EXTENSION_ID = "modelslab_3d"
EXTENSION_MODULE = f"bl_ext.user_default.{EXTENSION_ID}"
# Small and fast on the local server; the defaults (256) are exercised by the demo and the benchmarks.
FAST_PARAMS = {"resolution": 48}
OUTPUT_TAIL = 6000  # characters of Blender's stdout/stderr kept in failure reports


@dataclass
class BlenderRun:
    """One finished Blender process: exit code, output, wall time and what its driver reported (if anything)."""

    command: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    payload: dict[str, Any] | None = None  # the driver's JSON; None when it reported nothing
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Killed by the watchdog, a non-zero exit, no report, or a report of failure or errors."""
        payload = self.payload
        return (
            self.timed_out
            or self.returncode != 0
            or payload is None
            or payload.get("ok") is False
            or bool(payload.get("errors"))
        )

    def report(self) -> str:
        """Everything needed to understand a failure: command, exit code, the driver's errors, both streams' tails."""
        payload = self.payload or {}
        lines = [
            f"command: {' '.join(self.command)}",
            f"exit code: {self.returncode}{' (killed by the watchdog)' if self.timed_out else ''}, "
            f"{self.seconds:.1f} s",
            *self.notes,
            f"driver result: {'reported' if self.payload is not None else 'none (crashed or hung?)'}",
            *(f"driver error: {message}" for message in payload.get("errors") or []),
            *([f"driver traceback:\n{payload['traceback']}"] if payload.get("traceback") else []),
            *([f"threads at end: {payload['threads_at_end']}"] if payload.get("threads_at_end") else []),
            "--- blender stdout (tail) ---",
            self.stdout[-OUTPUT_TAIL:],
            "--- blender stderr (tail) ---",
            self.stderr[-OUTPUT_TAIL:],
        ]
        return "\n".join(lines)

    def check(self) -> dict[str, Any]:
        """The driver's report; AssertionError with report() when the run failed."""
        if self.failed or self.payload is None:
            raise AssertionError("the Blender process failed\n" + self.report())
        return self.payload

    @property
    def result(self) -> Any:
        """A scenario's return value (scenario_driver.py); AssertionError with report() when the run failed."""
        return self.check()["result"]


def run_process(
    command: list[str], *, env: dict[str, str], timeout: float, cwd: Path, payload: Callable[[str], dict | None]
) -> BlenderRun:
    """Run a Blender command to its end under a watchdog and read the driver's report with payload(stdout).

    The child gets its own process group: on timeout the whole group (xvfb-run, Xvfb, Blender) is terminated,
    then killed."""
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        env=env,
        cwd=str(cwd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        start_new_session=True,
    )
    timed_out = False
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        stdout, stderr = "", ""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                stdout, stderr = process.communicate(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
    stdout, stderr = stdout or "", stderr or ""
    return BlenderRun(
        command=command,
        returncode=process.returncode,
        stdout=stdout,
        stderr=stderr,
        seconds=time.monotonic() - started,
        timed_out=timed_out,
        payload=payload(stdout),
    )


# --- the bpy module: one scenario of tests/blender/scenarios.py in a fresh process ------------------------------


class UserDir:
    """A temporary Blender user directory (HOME) that one or more Blender processes share."""

    def __init__(self, root: Path):
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.specs = root / "specs"  # outside HOME: specs may carry the API key
        self.specs.mkdir(exist_ok=True)
        self.runs = 0

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The child's environment: this HOME, no inherited ModelsLab or proxy variables."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("MODELSLAB_") and key.lower() not in ("http_proxy", "https_proxy", "all_proxy")
        }
        env.update(
            {
                "HOME": str(self.home),
                "XDG_CONFIG_HOME": str(self.home / ".config"),
                "XDG_CACHE_HOME": str(self.home / ".cache"),
                "MODELSLAB_TEST_HOME": str(self.home),
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
                "NO_PROXY": "127.0.0.1,localhost",
            }
        )
        env.update(extra or {})
        return env

    def write_spec(self, spec: dict[str, Any]) -> Path:
        self.runs += 1
        path = self.specs / f"spec-{self.runs}.json"
        path.write_text(json.dumps(spec), encoding="utf-8")
        return path

    def command(self, spec_path: Path, driver: Path = SCENARIO_DRIVER) -> list[str]:
        return [sys.executable, str(driver), str(spec_path)]


BlenderFn = Callable[..., BlenderRun]  # the blender fixture: run(scenario, prefs=, env=, kwargs=, timeout=)
BlenderOn = Callable[[Any], BlenderFn]  # the blender_on fixture: blender_on(server) -> BlenderFn


def make_spec(
    zip_path: Path,
    scenario: str,
    *,
    install: str = "extension",
    prefs: dict[str, Any] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "zip": str(zip_path),
        "scenario": scenario,
        "install": install,
        "prefs": prefs or {},
        "kwargs": kwargs or {},
    }


def parse_payload(stdout: str) -> dict[str, Any] | None:
    """The JSON after the result marker (the last one printed), or None when there is none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    return None


def run_scenario(
    user_dir: UserDir,
    zip_path: Path,
    scenario: str,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
    driver: Path = SCENARIO_DRIVER,
    **spec: Any,
) -> BlenderRun:
    """Run scenarios.<scenario> in a fresh Blender process and wait for it to exit (failing if it never does).
    spec: make_spec()'s install, prefs and kwargs; driver: scenario_driver.py or a driver that adds scenarios to
    it (tests/blender/import_options_driver.py, sources_driver.py)."""
    spec_path = user_dir.write_spec(make_spec(zip_path, scenario, **spec))
    command = user_dir.command(spec_path, driver)
    run = run_process(command, env=user_dir.env(env), timeout=timeout, cwd=user_dir.root, payload=parse_payload)
    if run.timed_out:
        raise AssertionError(
            f"Blender process did not exit within {timeout:g} s - a worker thread that never stops?\n" + run.report()
        )
    return run


def start_scenario(
    user_dir: UserDir, zip_path: Path, scenario: str, *, env: dict[str, str] | None = None, **spec: Any
) -> subprocess.Popen:
    """Start a Blender process without waiting (the caller kills it); output goes to files in user_dir.root."""
    spec_path = user_dir.write_spec(make_spec(zip_path, scenario, **spec))
    with open(user_dir.root / f"run-{user_dir.runs}.out", "w", encoding="utf-8") as stdout:
        return subprocess.Popen(
            user_dir.command(spec_path),
            cwd=str(user_dir.root),
            env=user_dir.env(env),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
        )


def files_containing(root: Path, needle: bytes) -> list[Path]:
    """Every regular file under root whose bytes contain needle (also UTF-16, as Blender stores some text)."""
    variants = {needle, needle.decode("utf-8").encode("utf-16-le")}
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if any(variant in data for variant in variants):
                hits.append(path)
    return hits
