"""Runs INSIDE the bpy module: what blender/inputs.py and blender/batch_output.py make of inputs and results.

`<bpy venv python> inputs_driver.py REPO WORKDIR CHECK` loads the checkout as the package `modelslab_3d` (not
registered: these are the modules' own functions), runs one check and prints its JSON result after MARKER.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import struct
import sys
from pathlib import Path
from typing import Any

MARKER = "@@INPUTS_DRIVER@@ "


def load_package(repo: Path) -> Any:
    spec = importlib.util.spec_from_file_location(
        "modelslab_3d", repo / "__init__.py", submodule_search_locations=[str(repo)]
    )
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules["modelslab_3d"] = package
    spec.loader.exec_module(package)
    return package


def exif_block(orientation: int, order: str) -> bytes:
    """An EXIF block whose first IFD holds a Make tag, then the Orientation (a SHORT), in either byte order."""
    mark = b"II*\x00" if order == "<" else b"MM\x00*"
    tiff = mark + struct.pack(order + "IH", 8, 2)
    tiff += struct.pack(order + "HHI", 0x010F, 2, 4) + b"abc\x00"
    tiff += struct.pack(order + "HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff += struct.pack(order + "I", 0)
    return b"Exif\x00\x00" + tiff


def check_orientations(work: Path) -> dict[str, Any]:
    """Every EXIF orientation in both byte orders, turned upright here, against Pillow's exif_transpose."""
    import bpy
    import numpy as np
    from PIL import Image, ImageOps

    inputs = importlib.import_module("modelslab_3d.blender.inputs")
    picture = Image.new("RGB", (48, 24), (0, 0, 255))
    picture.paste((255, 0, 0), (0, 0, 16, 8))
    picture.paste((0, 255, 0), (40, 16, 48, 24))
    out: dict[str, Any] = {}
    for order in ("<", ">"):
        for orientation in range(1, 9):
            name = f"o{orientation}{'le' if order == '<' else 'be'}"
            source = work / f"{name}.jpg"
            picture.save(source, quality=100, exif=exif_block(orientation, order))
            found = inputs.jpeg_orientation(str(source))
            image = bpy.data.images.load(str(source))
            image.size[:]  # reading the size loads the pixels
            if found != 1:
                inputs._apply_orientation(image, found)
            target = work / f"{name}.png"
            image.filepath_raw = str(target)
            image.file_format = "PNG"
            image.save()
            bpy.data.images.remove(image)
            ours = np.asarray(Image.open(target).convert("RGB"), dtype=int)
            with Image.open(source) as opened:
                pillow = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"), dtype=int)
            same_shape = ours.shape == pillow.shape
            out[name] = {
                "found": found,
                "shape": list(ours.shape),
                "pillow_shape": list(pillow.shape),
                "mean_difference": float(np.abs(ours - pillow).mean()) if same_shape else None,
            }
    png = work / "plain.png"
    picture.save(png)
    out["png"] = {"found": inputs.jpeg_orientation(str(png))}
    return out


def check_identity(work: Path) -> dict[str, Any]:
    """source_identity() of the same file written five ways, and what resolve_image() records as the original."""
    import bpy

    inputs = importlib.import_module("modelslab_3d.blender.inputs")
    folder = work / "pictures"
    folder.mkdir()
    image = folder / "duck.png"
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 100, 50)).save(image)
    blend_dir = work / "scenes"
    blend_dir.mkdir()
    unsaved_blend = inputs.source_identity("//../pictures/duck.png")
    bpy.ops.wm.save_as_mainfile(filepath=str(blend_dir / "scene.blend"))
    os.chdir(blend_dir)
    spellings = {
        "absolute": str(image),
        "dotdot": "../pictures/duck.png",
        "dotdot_inside": str(folder / ".." / "pictures" / "." / "duck.png"),
        "blend_relative": "//../pictures/duck.png",
        "home": "~/" + os.path.relpath(image, Path.home()),
    }
    return {
        "expected": os.path.normpath(str(image)),
        "identity": {name: inputs.source_identity(text) for name, text in spellings.items()},
        "original": {name: inputs.resolve_image(text).original for name, text in spellings.items()},
        "url": inputs.source_identity("https://example.com/a/../b.png?x=1"),
        "unsaved_blend": unsaved_blend,
    }


def check_special_files(work: Path) -> dict[str, Any]:
    """What resolve_image() says about a FIFO, a device, a folder and a missing file."""
    inputs = importlib.import_module("modelslab_3d.blender.inputs")
    api = importlib.import_module("modelslab_3d.api")
    fifo = work / "camera.png"
    os.mkfifo(fifo)
    out = {}
    for name, path in (("fifo", fifo), ("device", Path("/dev/null")), ("folder", work), ("missing", work / "no.png")):
        try:
            inputs.resolve_image(str(path))
            out[name] = {"raised": False}
        except api.ModelsLabError as error:
            out[name] = {"raised": True, "category": error.category.value, "message": error.message, "fix": error.fix}
    return out


def check_results_log(work: Path) -> dict[str, Any]:
    """ResultsLog appends one line per row to the same file; a resumed log reads later rows over earlier ones."""
    batch_output = importlib.import_module("modelslab_3d.blender.batch_output")
    out_dir = work / "out"
    log = batch_output.ResultsLog(out_dir, keep_previous=False)
    log.append({"image": "a.png", "status": "interrupted", "resumable": False})
    inode = os.stat(log.path).st_ino
    log.append({"image": "b.png", "status": "interrupted", "job_id": "jb", "resumable": True})
    log.append({"image": "c.png", "status": "imported", "job_id": "jc"})
    lines_after_three = log.path.read_text(encoding="utf-8").splitlines()
    same_inode = os.stat(log.path).st_ino == inode
    log.close()
    with open(log.path, "a", encoding="utf-8") as handle:
        handle.write('{"image": "d.png", "sta')  # a run killed in the middle of a line

    resumed = batch_output.ResultsLog(out_dir, keep_previous=True)
    reported_before = sorted(resumed.reported_imports())
    resumed.append({"image": "a.png", "status": "imported", "job_id": "ja"})
    resumed.append({"image": "b.png", "status": "imported", "job_id": "jb"})
    resumed.close()
    final_lines = log.path.read_text(encoding="utf-8").splitlines()
    rows = batch_output.read_results(log.path)
    fresh = batch_output.ResultsLog(out_dir, keep_previous=False)
    fresh.append({"image": "z.png", "status": "imported", "job_id": "jz"})
    fresh.close()
    return {
        "lines_after_three": len(lines_after_three),
        "same_inode": same_inode,
        "reported_before": reported_before,
        "final_lines": final_lines,
        "rows": {key: row["status"] for key, row in rows.items()},
        "fresh_lines": log.path.read_text(encoding="utf-8").splitlines(),
    }


CHECKS = {
    "orientations": check_orientations,
    "identity": check_identity,
    "special_files": check_special_files,
    "results_log": check_results_log,
}


def main() -> int:
    repo, work, check = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    load_package(repo)
    result = CHECKS[check](work)
    sys.stdout.write(MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
