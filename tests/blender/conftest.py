"""Fixtures of the blender layer: the built extension zip, one local server per session, fresh user dirs.

Runs under a bpy venv (.venv-bpy50 or .venv-bpy42). bpy state is process-global, so every scenario
runs in its own Blender process (tests.helpers.blender.run_scenario); this process never imports bpy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.blender import BlenderFn, BlenderOn, UserDir, run_scenario
from tests.helpers.keys import BLENDER_KEY
from tests.helpers.paths import BUILD_SCRIPT, REPO_ROOT
from tests.helpers.servers import ServerProcess
from tests.helpers.shipping import newest_shipped_mtime, zip_name


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/modelslab_3d-<version>.zip when it is newer than every shipped source, else a fresh build."""
    dist_zip = REPO_ROOT / "dist" / zip_name()
    if dist_zip.is_file() and dist_zip.stat().st_mtime > newest_shipped_mtime():
        return dist_zip
    output_dir = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--output-dir", str(output_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, f"building the extension failed:\n{build.stdout}\n{build.stderr}"
    return output_dir / dist_zip.name


@pytest.fixture
def user_dir(tmp_path: Path) -> UserDir:
    """A fresh, empty Blender user directory (HOME) for this test."""
    return UserDir(tmp_path)


@pytest.fixture
def blender_on(user_dir: UserDir, extension_zip: Path) -> BlenderOn:
    """blender_on(server)(scenario, ...): run a scenario in a fresh Blender with the extension installed,
    pointed at that server.

    Defaults: preference base_url = the server, key via env MODELSLAB_API_KEY; `prefs`/`env` override them
    (an env value of None removes the variable).
    """

    def pointed_at(server: ServerProcess) -> BlenderFn:
        def run(scenario: str, *, prefs: dict[str, Any] | None = None, env: dict[str, Any] | None = None, **kw: Any):
            all_prefs = {"base_url": server.url, **(prefs or {})}
            all_env = {"MODELSLAB_API_KEY": BLENDER_KEY, **(env or {})}
            all_env = {key: value for key, value in all_env.items() if value is not None}  # None removes a variable
            return run_scenario(user_dir, extension_zip, scenario, prefs=all_prefs, env=all_env, **kw)

        return run

    return pointed_at


@pytest.fixture
def blender(blender_on: BlenderOn, fresh_server: ServerProcess) -> BlenderFn:
    """Run a scenario in a fresh Blender with the extension installed, pointed at the fresh local server."""
    return blender_on(fresh_server)
