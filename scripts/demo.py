"""`make demo`: the extension, headless, on the example images, against the local server — no key, no network.

Starts the local ModelsLab-compatible server on a free loopback port with a throwaway key, runs
scripts/batch.py (with this interpreter, which has the `bpy` module) on examples/*.png with --render,
each result grounded and scaled to DEMO_HEIGHT (--ground --height), saves demo-output/demo.blend, renders
them standing on a floor (demo-output/demo_render.png), stops the server and prints what was made and where.
Blender's user folder (preferences, the job journal, the mesh cache) is demo-output/.blender-user, never the
user's own.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from server.process import start_server  # noqa: E402  (needs the repo root on sys.path)

OUT_DIR = REPO_ROOT / "demo-output"
USER_DIR = OUT_DIR / ".blender-user"
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.png"))
DEMO_HEIGHT = 0.5  # metres: each result stands on the floor (the 3D cursor's height) this tall


def batch_environment(base_url: str, key: str) -> dict[str, str]:
    """The batch's environment: throwaway key, local server, a private Blender user folder, no proxies."""
    env = dict(os.environ)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env.pop(name, None)
    env.update(
        {
            "MODELSLAB_API_KEY": key,
            "MODELSLAB_BASE_URL": base_url,
            "BLENDER_USER_RESOURCES": str(USER_DIR),  # Blender's own user folder (prefs, config, extensions)
            "MODELSLAB_USER_DIR": str(USER_DIR / "modelslab_3d"),  # the extension's journal and cache
            "NO_PROXY": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def main() -> int:
    """Run the demo and return the batch's exit code."""
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]  # interleave with the batch's lines
    if not EXAMPLES:
        print(f"no example images in {REPO_ROOT / 'examples'}", file=sys.stderr)
        return 1
    OUT_DIR.mkdir(exist_ok=True)
    USER_DIR.mkdir(exist_ok=True)
    key = "demo-" + secrets.token_hex(12)  # the local server takes any non-empty key; this one is never saved
    started = time.monotonic()
    print(f"== starting the local ModelsLab server (loopback, throwaway key) for {len(EXAMPLES)} example image(s)")
    with start_server("--workers", "2") as server:
        print(f"   {server.url}")
        command = [
            sys.executable,
            str(REPO_ROOT / "scripts" / "batch.py"),
            "--base-url",
            server.url,
            "--out",
            str(OUT_DIR),
            "--save-blend",
            str(OUT_DIR / "demo.blend"),
            "--render",
            "--ground",
            "--height",
            str(DEMO_HEIGHT),
            "--concurrency",
            "3",
            *[str(path) for path in EXAMPLES],
        ]
        print("== running: " + " ".join(_short(part) for part in command))
        result = subprocess.run(
            command, cwd=REPO_ROOT, env=batch_environment(server.url, key), stdout=subprocess.PIPE, text=True
        )
        submits = server.stats()["submits"]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    print(f"== done in {time.monotonic() - started:.1f} s (batch exit code {result.returncode}, {submits} submits)")
    for row in rows:
        name = Path(row["image"]).name
        if row["status"] == "imported":
            print(f"   {name:>20} -> object {row['object']!r}, {row['vertices']} vertices, {row['seconds']} s")
            print(f"   {'':>20}    mesh    {_short(row['file'])}")
            if row.get("preview"):
                print(f"   {'':>20}    preview {_short(row['preview'])}")
        else:
            error = row.get("error", {})
            print(f"   {name:>20} -> {row['status']}: [{error.get('category')}] {error.get('message')}")
    blend = OUT_DIR / "demo.blend"
    if blend.exists():
        print(f"   scene with every object: {_short(str(blend))}  (open it in Blender)")
        overview = render_overview(blend, OUT_DIR / "demo_render.png")
        print(f"   all of them rendered:    {_short(str(overview))}")
    print(f"   one JSON line per image:  {_short(str(OUT_DIR / 'results.jsonl'))}")
    return result.returncode


def render_overview(blend: Path, target: Path) -> Path:
    """Render every ModelsLab object of the saved scene side by side, standing on a floor (Cycles CPU, small):
    the README picture."""
    os.environ["BLENDER_USER_RESOURCES"] = str(USER_DIR)  # before bpy loads: never the user's own config
    import bpy
    from mathutils import Vector

    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    collection = bpy.data.collections["ModelsLab"]
    objects = list(collection.all_objects)
    for obj in scene.objects:
        obj.hide_render = obj not in objects
    corners = [obj.matrix_world @ Vector(corner) for obj in objects for corner in obj.bound_box]
    floor_z = min(c.z for c in corners)  # the grounded objects' common lowest point
    corners += [Vector((c.x, c.y - 0.1 * DEMO_HEIGHT, floor_z)) for c in corners]  # a strip of floor in front
    center = sum(corners, Vector()) / len(corners)
    bpy.ops.mesh.primitive_plane_add(size=1.0, location=(center.x, center.y, floor_z))
    floor = bpy.context.active_object
    floor.name = "Overview floor"
    floor.scale = (100.0, 100.0, 1.0)
    floor_material = bpy.data.materials.new("Overview floor")
    floor_material.diffuse_color = (0.42, 0.42, 0.44, 1.0)
    if floor_material.node_tree is None:
        floor_material.use_nodes = True
    principled = next(n for n in floor_material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    principled.inputs["Base Color"].default_value = (0.42, 0.42, 0.44, 1.0)
    principled.inputs["Roughness"].default_value = 0.8
    floor.data.materials.append(floor_material)
    view = Vector((0.35, -1.0, 0.45)).normalized()
    right = view.cross(Vector((0, 0, 1))).normalized() * -1
    up = right.cross(-view).normalized()
    across = [c.dot(right) for c in corners]
    upward = [c.dot(up) for c in corners]
    width, height = max(across) - min(across), max(upward) - min(upward)
    # the middle of what the camera sees, not the mean corner (the floor strip would pull the view down)
    center += right * ((max(across) + min(across)) / 2 - center.dot(right))
    center += up * ((max(upward) + min(upward)) / 2 - center.dot(up))
    render = scene.render
    render.resolution_x, render.resolution_y, render.resolution_percentage = 960, 400, 100
    aspect = render.resolution_x / render.resolution_y
    camera = bpy.data.objects.new("Overview camera", bpy.data.cameras.new("Overview camera"))
    scene.collection.objects.link(camera)
    camera.data.type = "ORTHO"
    camera.data.ortho_scale = max(width * 1.1, height * aspect * 1.3)
    camera.data.clip_end = 1000
    camera.location = center + view * (width + height) * 2
    camera.rotation_euler = (-view).to_track_quat("-Z", "Y").to_euler()
    scene.camera = camera
    sun = bpy.data.objects.new("Overview sun", bpy.data.lights.new("Overview sun", type="SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = (0.75, 0.2, 0.6)
    scene.collection.objects.link(sun)
    world = bpy.data.worlds.new("Overview world")
    world.color = (0.55, 0.57, 0.6)
    scene.world = world
    render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 32
    scene.cycles.use_denoising = False
    render.image_settings.file_format = "PNG"
    render.filepath = str(target)
    bpy.ops.render.render(write_still=True)
    return target


def _short(text: str) -> str:
    """Paths relative to the repo when inside it, for readable output."""
    try:
        return str(Path(text).relative_to(REPO_ROOT))
    except ValueError:
        return text


if __name__ == "__main__":
    sys.exit(main())
