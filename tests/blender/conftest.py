"""Fixtures of the blender layer: the built extension zip, one local server per session, fresh user dirs.

Runs under a bpy venv (.venv-bpy50 or .venv-bpy42). bpy state is process-global, so every scenario
runs in its own Blender process (blender_helpers.run_blender); this process never imports bpy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
for path in (str(REPO_ROOT), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

from blender_helpers import TEST_API_KEY, BlenderFn, UserDir, run_blender  # noqa: E402

from tests.serverproc import ServerProcess  # noqa: E402

# Paths that never ship (mirror of blender_manifest.toml's [build] excludes) - for the freshness check.
NOT_SHIPPED = {"server", "tests", "bench", "docs", "examples", "scripts", "requirements", "dist", "demo-output"}


def _newest_source_mtime() -> float:
    newest = (REPO_ROOT / "blender_manifest.toml").stat().st_mtime
    for path in REPO_ROOT.rglob("*"):
        parts = path.relative_to(REPO_ROOT).parts
        if parts[0] in NOT_SHIPPED or any(p.startswith(".") or p == "__pycache__" for p in parts):
            continue
        if path.is_dir() or path.suffix in (".py", ".toml"):
            newest = max(newest, path.stat().st_mtime)
    return newest


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/modelslab_3d-<version>.zip when it is newer than every shipped source, else a fresh build."""
    import tomllib

    manifest = tomllib.loads((REPO_ROOT / "blender_manifest.toml").read_text(encoding="utf-8"))
    name = f"{manifest['id']}-{manifest['version']}.zip"
    dist_zip = REPO_ROOT / "dist" / name
    if dist_zip.is_file() and dist_zip.stat().st_mtime > _newest_source_mtime():
        return dist_zip
    output_dir = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "build_extension.py"), "--output-dir", str(output_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, f"building the extension failed:\n{build.stdout}\n{build.stderr}"
    return output_dir / name


@pytest.fixture
def user_dir(tmp_path: Path) -> UserDir:
    """A fresh, empty Blender user directory (HOME) for this test."""
    return UserDir(tmp_path)


@pytest.fixture
def blender(user_dir: UserDir, extension_zip: Path, fresh_server: ServerProcess) -> BlenderFn:
    """Run a scenario in a fresh Blender with the extension installed, pointed at the local server.

    Defaults: preference base_url = the server, key via env MODELSLAB_API_KEY; `prefs`/`env` override them
    (an env value of None removes the variable).
    """

    def run(scenario: str, *, prefs: dict[str, Any] | None = None, env: dict[str, Any] | None = None, **kw: Any):
        all_prefs = {"base_url": fresh_server.url}
        all_prefs.update(prefs or {})
        all_env: dict[str, str] = {"MODELSLAB_API_KEY": TEST_API_KEY}
        all_env.update(env or {})
        all_env = {key: value for key, value in all_env.items() if value is not None}  # None removes a variable
        return run_blender(user_dir, extension_zip, scenario, prefs=all_prefs, env=all_env, **kw)

    return run
