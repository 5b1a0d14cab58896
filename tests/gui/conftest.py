"""The gui layer runs with the dev venv; make the repo root importable (tests.serverproc, tests.gui.harness)."""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
