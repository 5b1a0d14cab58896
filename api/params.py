"""The endpoint's parameters as one typed object, validated before any request."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any
from urllib.parse import urlparse

from .errors import invalid_input

OUTPUT_FORMATS = ("obj", "glb", "ply", "stl")
RESOLUTION_RANGE = (32, 512)
FOREGROUND_RATIO_RANGE = (0.5, 1.0)
CHUNK_SIZE_RANGE = (1024, 12000)
SEED_RANGE = (0, 2**32 - 1)
MAX_URL_LENGTH = 2048
MAX_TRACK_ID_LENGTH = 256


def check_http_url(value: object, field: str) -> str:
    """Return value if it is an http(s) URL of sane length, else raise invalid_input naming field."""
    if not isinstance(value, str):
        raise invalid_input(f"{field} must be a URL (text), got {type(value).__name__}.")
    if len(value) > MAX_URL_LENGTH:
        raise invalid_input(f"{field}: URL is longer than {MAX_URL_LENGTH} characters.")
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise invalid_input(f"{field}: a URL cannot contain spaces or control characters; encode them (%20).")
    try:
        parsed = urlparse(value)
        port_ok = parsed.port is None or 0 < parsed.port  # .port raises ValueError when out of range
        host = parsed.hostname
    except ValueError:
        port_ok, host, parsed = False, None, None
    if parsed is None or parsed.scheme not in ("http", "https") or not host or not port_ok:
        raise invalid_input(f"{field}: only http:// and https:// URLs with a host are accepted, got {value[:80]!r}.")
    return value


def is_url(value: str) -> bool:
    """True when value looks like a URL (has a scheme) rather than a local path."""
    try:
        parsed = urlparse(value)
    except ValueError:  # e.g. "http://[" : URL-shaped, and check_http_url will refuse it clearly
        return "://" in value
    return bool(parsed.scheme) and len(parsed.scheme) > 1 and (bool(parsed.netloc) or "://" in value)


@dataclass
class GenerationParams:
    """Fields of POST …/3d/image_to_3d except the key. `init_image` is an http(s) URL when sent."""

    init_image: str = ""
    foreground_ratio: float = 0.85
    remove_bg: bool = False
    resolution: int = 256
    chunk_size: int = 8192
    seed: int = 0
    output_format: str = "obj"
    webhook: str | None = None
    track_id: str | None = None

    def validate(self, *, require_image: bool = True) -> GenerationParams:
        """Raise ModelsLabError(invalid_input) naming the field and its allowed range; return self."""
        _check_number("resolution", self.resolution, *RESOLUTION_RANGE, integer=True)
        _check_number("foreground_ratio", self.foreground_ratio, *FOREGROUND_RATIO_RANGE)
        _check_number("chunk_size", self.chunk_size, *CHUNK_SIZE_RANGE, integer=True)
        _check_number("seed", self.seed, *SEED_RANGE, integer=True)
        if not isinstance(self.remove_bg, bool):
            raise invalid_input(f"remove_bg must be true or false, got {self.remove_bg!r}.")
        if not isinstance(self.output_format, str) or self.output_format not in OUTPUT_FORMATS:
            raise invalid_input(
                f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, got {self.output_format!r}."
            )
        if self.webhook is not None and self.webhook != "":
            check_http_url(self.webhook, "webhook")
        if self.track_id is not None and (
            not isinstance(self.track_id, str) or len(self.track_id) > MAX_TRACK_ID_LENGTH
        ):
            raise invalid_input(f"track_id must be text of at most {MAX_TRACK_ID_LENGTH} characters.")
        if require_image:
            if self.init_image is None or self.init_image == "":
                raise invalid_input("init_image: no image was given.", "Choose an image file or an image URL.")
            check_http_url(self.init_image, "init_image")
        return self

    def to_body(self) -> dict[str, Any]:
        """The JSON body without the key; the image goes under both `init_image` and `image`."""
        body: dict[str, Any] = {
            "init_image": self.init_image,
            "image": self.init_image,
            "foreground_ratio": self.foreground_ratio,
            "remove_bg": self.remove_bg,
            "resolution": self.resolution,
            "chunk_size": self.chunk_size,
            "seed": self.seed,
            "output_format": self.output_format,
            "webhook": self.webhook or None,
            "track_id": self.track_id or None,
        }
        return body

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (for journals and provenance)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationParams:
        """Build from a dict, ignoring unknown keys (journals written by other versions)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _check_number(name: str, value: Any, low: float, high: float, *, integer: bool = False) -> None:
    kind = "a whole number" if integer else "a number"
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and integer and isinstance(value, float):
        ok = value.is_integer()
    if ok and isinstance(value, float) and not math.isfinite(value):
        ok = False
    if not ok or not (low <= value <= high):
        raise invalid_input(f"{name} must be {kind} from {low:g} to {high:g}, got {value!r}.")


# The endpoint's parameters other than the image, in declaration order (operator and script keyword names).
PARAM_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(GenerationParams) if f.name != "init_image")
