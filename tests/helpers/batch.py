"""scripts/batch.py as a real subprocess of this bpy interpreter (the batch layer).

Runs under a bpy venv (.venv-bpy50 or .venv-bpy42). Every batch gets a temp HOME (so Blender's user folder,
the journal and the cache are private to the test) and a distinctive API key, whose bytes must never appear
in anything the batch writes or prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.keys import BATCH_KEY
from tests.helpers.paths import BATCH_SCRIPT

EXPIRE_SECONDS = 4.0  # the expiring server's output lifetime (the real service: 24 h)
SLOW_JOB_SECONDS = 5.0  # the slow server's job length: long enough to kill a batch while it polls
# Environment that would leak the developer's own setup into a batch under test.
_SCRUBBED_ENV = (
    "MODELSLAB_API_KEY",
    "MODELSLAB_BASE_URL",
    "MODELSLAB_USER_DIR",
    "BLENDER_USER_RESOURCES",
    "BLENDER_USER_CONFIG",
    "BLENDER_USER_SCRIPTS",
    "BLENDER_USER_EXTENSIONS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


@dataclass
class BatchRun:
    """A finished batch: exit code, its stdout JSON rows and its stderr progress lines."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def rows(self) -> list[dict]:
        """The JSON objects the batch printed (stdout carries nothing else)."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def by_image(self) -> dict[str, dict]:
        """Rows keyed by the input's file name."""
        return {Path(row["image"]).name: row for row in self.rows}

    def describe(self) -> str:
        """Everything the batch printed, for assertion messages."""
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr[-6000:]}"


class BatchHome:
    """A temp HOME for batch runs (Blender's user dir, journal and cache live below it) and an --out folder."""

    def __init__(self, root: Path, base_url: str) -> None:
        self.root = root
        self.home = root / "home"
        self.out = root / "out"
        self.home.mkdir(parents=True)
        self.base_url = base_url

    def env(self, key: str | None = BATCH_KEY) -> dict[str, str]:
        """The subprocess environment: temp HOME/XDG_CONFIG_HOME, the test key, nothing of the developer's."""
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        env.update(
            {
                "HOME": str(self.home),
                "XDG_CONFIG_HOME": str(self.home / ".config"),
                "NO_PROXY": "127.0.0.1,localhost",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if key is not None:
            env["MODELSLAB_API_KEY"] = key
        return env

    def command(self, args: Sequence[str], *, with_base_url: bool = True, with_out: bool = True) -> list[str]:
        """`python scripts/batch.py` with --base-url and --out filled in."""
        command = [sys.executable, str(BATCH_SCRIPT)]
        if with_base_url:
            command += ["--base-url", self.base_url]
        if with_out:
            command += ["--out", str(self.out)]
        return command + [str(a) for a in args]

    def run(self, args: Sequence[str], *, key: str | None = BATCH_KEY, timeout: float = 150, **kw: bool) -> BatchRun:
        """Run the batch to completion."""
        done = subprocess.run(
            self.command(args, **kw),
            cwd=self.root,
            env=self.env(key),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return BatchRun(done.returncode, done.stdout, done.stderr)

    def start(self, args: Sequence[str], *, key: str | None = BATCH_KEY) -> subprocess.Popen[str]:
        """Start the batch and return at once (for kill/interrupt tests)."""
        return subprocess.Popen(
            self.command(args),
            cwd=self.root,
            env=self.env(key),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def journal_files(self) -> list[Path]:
        """Every journal file the extension wrote below this HOME."""
        return sorted(self.home.rglob("jobs/*.json"))

    def journal(self) -> list[dict]:
        """The journal records as dicts."""
        return [json.loads(path.read_text(encoding="utf-8")) for path in self.journal_files()]

    def files_containing(self, needle: str) -> list[Path]:
        """Files below HOME and --out whose bytes contain needle."""
        data = needle.encode("utf-8")
        hits = []
        for base in (self.home, self.out):
            for path in base.rglob("*"):
                if path.is_file() and data in path.read_bytes():
                    hits.append(path)
        return hits


def blend_summary(blend: Path, home: Path) -> dict:
    """Open a saved .blend in a fresh bpy process and list its ModelsLab objects and their properties."""
    code = (
        "import bpy, json, sys\n"
        "bpy.ops.wm.open_mainfile(filepath=sys.argv[1])\n"
        "coll = bpy.data.collections.get('ModelsLab')\n"
        "objs = list(coll.all_objects) if coll else []\n"
        "print('SUMMARY' + json.dumps({'objects': {o.name: {'vertices': len(o.data.vertices),"
        " 'job_id': o.get('modelslab_job_id'), 'source': o.get('modelslab_source')} for o in objs},"
        " 'scene_objects': len(bpy.context.scene.objects)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")})
    done = subprocess.run(
        [sys.executable, "-c", code, str(blend)], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith("SUMMARY"):
            return json.loads(line[len("SUMMARY") :])
    raise AssertionError(f"could not read {blend}:\n{done.stdout}\n{done.stderr}")
