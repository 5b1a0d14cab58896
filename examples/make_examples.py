"""Write the example input images (procedural and deterministic): `python examples/make_examples.py`.

- mushroom_rgba.png  256x256 RGBA with a real alpha cut-out (red cap with spots, pale stem)
- vase_plain.png     256x256 RGB, a blue vase on a plain light background (border keying / remove_bg)
- duck_512.png       512x512 RGB, a yellow duck on a plain background (the timing example)
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
SUPER = 4  # draw at 4x and downsample: smooth, anti-aliased edges


def _finish(image: Image.Image, size: int) -> Image.Image:
    return image.resize((size, size), Image.Resampling.LANCZOS)


def _shade(layer: Image.Image, mask: Image.Image, centre: tuple[int, int], radius: int, strength: int) -> Image.Image:
    """Darken the layer away from a highlight centre, inside mask only (simple fake lighting)."""
    w, h = layer.size
    light = Image.radial_gradient("L").resize((radius * 2, radius * 2))
    shade = Image.new("L", (w, h), 255)
    shade.paste(light, (centre[0] - radius, centre[1] - radius))
    dark = Image.new("RGB", (w, h), (0, 0, 0))
    amount = shade.point(lambda v: v * strength // 255)
    amount = Image.composite(amount, Image.new("L", (w, h), 0), mask)
    return Image.composite(dark, layer, amount)


def mushroom(size: int = 256) -> Image.Image:
    """A red-capped mushroom with white spots on a transparent background."""
    s = size * SUPER
    rgb = Image.new("RGB", (s, s), (0, 0, 0))
    alpha = Image.new("L", (s, s), 0)
    draw_rgb = ImageDraw.Draw(rgb)
    draw_a = ImageDraw.Draw(alpha)
    stem = (int(s * 0.40), int(s * 0.45), int(s * 0.60), int(s * 0.90))
    draw_rgb.rounded_rectangle(stem, radius=int(s * 0.06), fill=(236, 222, 196))
    draw_a.rounded_rectangle(stem, radius=int(s * 0.06), fill=255)
    cap = (int(s * 0.12), int(s * 0.12), int(s * 0.88), int(s * 0.62))
    cap_mask = Image.new("L", (s, s), 0)
    ImageDraw.Draw(cap_mask).pieslice(cap, 180, 360, fill=255)
    ImageDraw.Draw(cap_mask).ellipse((cap[0], int(s * 0.30), cap[2], int(s * 0.46)), fill=255)
    rgb.paste((200, 30, 36), mask=cap_mask)
    alpha.paste(255, mask=cap_mask)
    for cx, cy, r in ((0.33, 0.28, 0.05), (0.52, 0.20, 0.06), (0.70, 0.31, 0.05), (0.45, 0.34, 0.035)):
        box = (int(s * (cx - r)), int(s * (cy - r)), int(s * (cx + r)), int(s * (cy + r)))
        draw_rgb.ellipse(box, fill=(250, 246, 238))
    rgb = _shade(rgb, alpha, (int(s * 0.42), int(s * 0.25)), int(s * 0.55), 110)
    image = rgb.convert("RGBA")
    image.putalpha(alpha)
    return _finish(image, size)


def vase(size: int = 256) -> Image.Image:
    """A blue vase with a yellow band on a plain light grey background (no alpha)."""
    s = size * SUPER
    background = (214, 218, 222)
    image = Image.new("RGB", (s, s), background)
    mask = Image.new("L", (s, s), 0)
    draw = ImageDraw.Draw(mask)
    draw.ellipse((int(s * 0.25), int(s * 0.35), int(s * 0.75), int(s * 0.88)), fill=255)  # belly
    draw.rectangle((int(s * 0.40), int(s * 0.14), int(s * 0.60), int(s * 0.50)), fill=255)  # neck
    draw.ellipse((int(s * 0.34), int(s * 0.10), int(s * 0.66), int(s * 0.20)), fill=255)  # lip
    draw.rectangle((int(s * 0.36), int(s * 0.80), int(s * 0.64), int(s * 0.90)), fill=255)  # foot
    mask = mask.filter(ImageFilter.GaussianBlur(SUPER)).point(lambda v: 255 if v >= 128 else 0)
    body = Image.new("RGB", (s, s), (38, 84, 176))
    ImageDraw.Draw(body).rectangle((0, int(s * 0.52), s, int(s * 0.60)), fill=(240, 196, 40))
    body = _shade(body, mask, (int(s * 0.42), int(s * 0.45)), int(s * 0.5), 120)
    image.paste(body, mask=mask)
    return _finish(image, size)


def duck(size: int = 512) -> Image.Image:
    """A yellow rubber duck on a plain pale blue background."""
    s = size * SUPER
    background = (198, 224, 240)
    image = Image.new("RGB", (s, s), background)
    mask = Image.new("L", (s, s), 0)
    draw = ImageDraw.Draw(mask)
    draw.ellipse((int(s * 0.14), int(s * 0.44), int(s * 0.84), int(s * 0.86)), fill=255)  # body
    draw.ellipse((int(s * 0.06), int(s * 0.46), int(s * 0.40), int(s * 0.66)), fill=255)  # tail
    draw.ellipse((int(s * 0.46), int(s * 0.14), int(s * 0.80), int(s * 0.50)), fill=255)  # head
    body = Image.new("RGB", (s, s), (250, 206, 40))
    body = _shade(body, mask, (int(s * 0.55), int(s * 0.35)), int(s * 0.6), 90)
    image.paste(body, mask=mask)
    draw_rgb = ImageDraw.Draw(image)
    draw_rgb.polygon(
        [(int(s * 0.78), int(s * 0.30)), (int(s * 0.93), int(s * 0.35)), (int(s * 0.78), int(s * 0.40))],
        fill=(236, 110, 24),
    )  # beak
    draw_rgb.ellipse((int(s * 0.64), int(s * 0.24), int(s * 0.70), int(s * 0.30)), fill=(24, 24, 30))  # eye
    draw_rgb.ellipse((int(s * 0.28), int(s * 0.56), int(s * 0.60), int(s * 0.72)), fill=(236, 180, 30))  # wing
    return _finish(image, size)


def main(out_dir: Path = HERE) -> list[Path]:
    """Write the three examples into out_dir and return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, image in (
        ("mushroom_rgba.png", mushroom()),
        ("vase_plain.png", vase()),
        ("duck_512.png", duck()),
    ):
        path = out_dir / name
        image.save(path, optimize=True)
        written.append(path)
        print(
            f"{path.relative_to(out_dir.parent) if out_dir == HERE else path}: {image.mode} {image.size}, "
            f"{path.stat().st_size} bytes"
        )
    return written


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
