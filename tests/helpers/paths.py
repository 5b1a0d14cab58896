"""Where things are: the repo root (the add-on itself), its scripts and the example images."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO_ROOT / "examples"
EXAMPLE_IMAGES = sorted(EXAMPLES_DIR.glob("*.png"))
EXAMPLE_IMAGE = EXAMPLES_DIR / "duck_512.png"  # the input where any image will do
BATCH_SCRIPT = REPO_ROOT / "scripts" / "batch.py"
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build_extension.py"


def example_image(name: str = EXAMPLE_IMAGE.name) -> Path:
    """One of the example images (failing clearly when it is missing)."""
    path = EXAMPLES_DIR / name
    assert path.is_file(), f"missing example image {path}"
    return path
