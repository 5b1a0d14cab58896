"""The offline stand-in for text to 3D: the prompt's words drawn as a picture, which the reconstructor then inflates.

This is not text-to-3D: no model reads the prompt. It gives the local server an honest, deterministic answer for
the endpoint (a mesh of the words, lettered in a colour the prompt names if it names one), so clients can be
tested end to end. Real text-to-3D needs the real service.
"""

from __future__ import annotations

import io
import random
import textwrap

from PIL import Image, ImageColor, ImageDraw, ImageFont

FONT_SIZE = 96
MAX_WORDS = 12  # longer prompts are cut: the picture has to stay legible
LINE_WIDTH = 12  # characters per line before wrapping
MARGIN = 24
DEFAULT_COLOUR = (200, 120, 60)


def prompt_colour(prompt: str, seed: int) -> tuple[int, int, int]:
    """The first colour name in the prompt (CSS names: "red", "teal", ...), else one picked from the seed."""
    for word in prompt.lower().replace(",", " ").split():
        try:
            rgb = ImageColor.getrgb(word.strip(".;:!?\"'()"))
        except ValueError:
            continue
        return (int(rgb[0]), int(rgb[1]), int(rgb[2]))
    if not seed:
        return DEFAULT_COLOUR
    rng = random.Random(seed)
    return (rng.randint(60, 230), rng.randint(60, 230), rng.randint(60, 230))


def prompt_lines(prompt: str) -> list[str]:
    """The prompt's first MAX_WORDS words, wrapped to short lines."""
    words = " ".join(prompt.split()[:MAX_WORDS])
    return textwrap.wrap(words, LINE_WIDTH, break_long_words=True) or ["?"]


def render_prompt(prompt: str, *, seed: int = 0) -> bytes:
    """A PNG with a transparent background and the prompt's words in bold letters (the object to reconstruct)."""
    font = ImageFont.load_default(size=FONT_SIZE)
    lines = prompt_lines(prompt)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    boxes = [probe.textbbox((0, 0), line, font=font, stroke_width=4) for line in lines]
    width = int(max(box[2] - box[0] for box in boxes)) + 2 * MARGIN
    line_height = int(FONT_SIZE * 1.1)
    height = line_height * len(lines) + 2 * MARGIN
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    colour = prompt_colour(prompt, seed)
    for number, (line, box) in enumerate(zip(lines, boxes, strict=True)):
        x = (width - (box[2] - box[0])) // 2 - box[0]
        y = MARGIN + number * line_height - box[1]
        # A thick stroke in the same colour: fat letters that touch make a solid, printable object.
        draw.text((x, y), line, font=font, fill=(*colour, 255), stroke_width=4, stroke_fill=(*colour, 255))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()
