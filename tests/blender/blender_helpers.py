"""Host side of the blender layer: run a scenario in a fresh Blender process and read its JSON result."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
CHILD = HERE / "blender_child.py"
RESULT_MARKER = "@@MODELSLAB_TEST_RESULT@@ "
EXAMPLES = REPO_ROOT / "examples"
# The shared names every test relies on (see the team brief).
EXTENSION_ID = "modelslab_3d"
EXTENSION_MODULE = f"bl_ext.user_default.{EXTENSION_ID}"
# Small and fast on the local server; the defaults (256) are exercised by the demo and the benchmarks.
FAST_PARAMS = {"resolution": 48}
# A distinctive key per session, so that finding its bytes anywhere is meaningful.
TEST_API_KEY = f"mlk-test-{secrets.token_hex(12)}"


@dataclass
class BlenderRun:
    """One finished Blender subprocess: its exit code, parsed payload and raw output."""

    returncode: int
    payload: dict[str, Any]
    stdout: str
    stderr: str
    seconds: float

    @property
    def result(self) -> dict[str, Any]:
        """The scenario's return value; fails the test with the child's traceback when there is none."""
        if not self.payload.get("ok"):
            raise AssertionError(
                f"Blender scenario failed (exit {self.returncode}):\n{self.payload.get('traceback', '')}\n"
                f"--- stdout (tail) ---\n{self.stdout[-4000:]}\n--- stderr (tail) ---\n{self.stderr[-4000:]}"
            )
        return self.payload["result"]


BlenderFn = Callable[..., BlenderRun]


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

    def command(self, spec_path: Path) -> list[str]:
        return [sys.executable, str(CHILD), str(spec_path)]


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


def parse_payload(stdout: str) -> dict[str, Any]:
    """The JSON after the result marker (the last one printed), or a failure payload."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    return {"ok": False, "traceback": "the Blender process printed no result line (crashed or hung?)"}


def run_blender(
    user_dir: UserDir,
    zip_path: Path,
    scenario: str,
    *,
    install: str = "extension",
    prefs: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    kwargs: dict[str, Any] | None = None,
    timeout: float = 120.0,
) -> BlenderRun:
    """Run scenarios.<scenario> in a fresh Blender process and wait for it to exit."""
    spec_path = user_dir.write_spec(make_spec(zip_path, scenario, install=install, prefs=prefs, kwargs=kwargs))
    started = time.monotonic()
    try:
        completed = subprocess.run(
            user_dir.command(spec_path),
            cwd=str(user_dir.root),
            env=user_dir.env(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        payload = parse_payload(out)
        raise AssertionError(
            f"Blender process did not exit within {timeout:g} s (scenario result printed: {payload.get('ok')}; "
            f"threads at end: {payload.get('threads_at_end')}) - a worker thread that never stops?\n"
            f"--- stdout (tail) ---\n{out[-3000:]}\n--- stderr (tail) ---\n{err[-3000:]}"
        ) from None
    return BlenderRun(
        returncode=completed.returncode,
        payload=parse_payload(completed.stdout),
        stdout=completed.stdout,
        stderr=completed.stderr,
        seconds=time.monotonic() - started,
    )


def start_blender(
    user_dir: UserDir,
    zip_path: Path,
    scenario: str,
    *,
    install: str = "extension",
    prefs: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> subprocess.Popen:
    """Start a Blender process without waiting (the caller kills it); output goes to files in user_dir.root."""
    spec_path = user_dir.write_spec(make_spec(zip_path, scenario, install=install, prefs=prefs, kwargs=kwargs))
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


def example_image(name: str = "duck_512.png") -> str:
    path = EXAMPLES / name
    assert path.is_file(), f"missing example image {path}"
    return str(path)
