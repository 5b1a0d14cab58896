"""The endpoints' parameters as one typed object, validated before any request.

One GenerationParams describes either an image job (`kind="image"`, POST …/3d/image_to_3d, one image or several
views of one object) or a text job (`kind="text"`, POST …/3d/text_to_3d). FIELD_SPECS is the one table of the
fields a user can set: their kind of value, range, which endpoint sends them, and a one-line description (the
sidebar's tooltips). Fields of the newer revision and the text endpoint's optional fields default to None and are
sent only when set, so servers that predate them never see them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import urlparse

from .errors import invalid_input

OUTPUT_FORMATS = ("obj", "glb", "ply", "stl")
RESOLUTION_RANGE = (32, 512)
FOREGROUND_RATIO_RANGE = (0.5, 1.0)
CHUNK_SIZE_RANGE = (1024, 12000)
SEED_RANGE = (0, 2**32 - 1)
GUIDANCE_STRENGTH_RANGE = (0.0, 10.0)
SAMPLING_STEPS_RANGE = (1, 50)
MESH_SIMPLIFY_RANGE = (0.90, 0.98)
GUIDANCE_SCALE_RANGE = (1.0, 20.0)
INFERENCE_STEPS_RANGE = (1, 50)
VIEW_COUNT_RANGE = (2, 4)  # a multi-view job: the front plus 1-3 more views
MAX_URL_LENGTH = 2048
MAX_TRACK_ID_LENGTH = 256
MAX_PROMPT_LENGTH = 2000
MAX_MODEL_ID_LENGTH = 100

IMAGE, TEXT = "image", "text"
KINDS = (IMAGE, TEXT)
ENDPOINTS = {IMAGE: "image_to_3d", TEXT: "text_to_3d"}  # appended to the flavour's path, e.g. /api/v6/3d/
VIEW_NAMES = ("front", "right side", "back", "left side")  # the views' order: 90-degree steps around the object


@dataclass(frozen=True)
class FieldSpec:
    """One settable field: value kind ("int", "float", "bool", "yesno", "choice", "text", "url"), range, endpoints."""

    name: str
    kind: str
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    max_length: int = 0
    kinds: tuple[str, ...] = KINDS  # the job kinds (endpoints) that send it
    optional: bool = False  # None by default and sent only when set


FIELD_SPECS: tuple[FieldSpec, ...] = (
    # The seed revision of image_to_3d (text_to_3d shares those it lists).
    FieldSpec(
        "foreground_ratio",
        "float",
        "How much of the view the object fills when the background is kept",
        *FOREGROUND_RATIO_RANGE,
    ),
    FieldSpec("remove_bg", "bool", "Remove the image's background before reconstructing"),
    FieldSpec("resolution", "int", "Marching-cubes grid of the mesh", *RESOLUTION_RANGE, kinds=(IMAGE,)),
    FieldSpec("chunk_size", "int", "Points evaluated per piece on the server", *CHUNK_SIZE_RANGE, kinds=(IMAGE,)),
    FieldSpec("seed", "int", "Random seed (0 = random)", *SEED_RANGE),
    FieldSpec("output_format", "choice", "File format of the mesh", choices=OUTPUT_FORMATS),
    FieldSpec("webhook", "url", "URL the server POSTs the result to when done"),
    FieldSpec("track_id", "text", "Your id, echoed back in the webhook call", max_length=MAX_TRACK_ID_LENGTH),
    # The newer revision of image_to_3d.
    FieldSpec(
        "ss_guidance_strength",
        "float",
        "Sparse-structure stage: how closely the shape follows the image",
        *GUIDANCE_STRENGTH_RANGE,
        kinds=(IMAGE,),
        optional=True,
    ),
    FieldSpec(
        "ss_sampling_steps",
        "int",
        "Sparse-structure stage: sampling steps (more = slower, finer)",
        *SAMPLING_STEPS_RANGE,
        kinds=(IMAGE,),
        optional=True,
    ),
    FieldSpec(
        "slat_guidance_strength",
        "float",
        "Detail (latent) stage: how closely details follow the image",
        *GUIDANCE_STRENGTH_RANGE,
        kinds=(IMAGE,),
        optional=True,
    ),
    FieldSpec(
        "slat_sampling_steps",
        "int",
        "Detail (latent) stage: sampling steps (more = slower, finer)",
        *SAMPLING_STEPS_RANGE,
        kinds=(IMAGE,),
        optional=True,
    ),
    FieldSpec(
        "mesh_simplify",
        "float",
        "Share of the triangles removed when simplifying the mesh",
        *MESH_SIMPLIFY_RANGE,
        kinds=(IMAGE,),
        optional=True,
    ),
    FieldSpec("render", "bool", "Ask the server to render a preview too", kinds=(IMAGE,), optional=True),
    FieldSpec("temp", "yesno", "Store the outputs as temporary files on the server", kinds=(IMAGE,), optional=True),
    # text_to_3d.
    FieldSpec("prompt", "text", "What to make", max_length=MAX_PROMPT_LENGTH, kinds=(TEXT,)),
    FieldSpec("negative_prompt", "text", "What to avoid", max_length=MAX_PROMPT_LENGTH, kinds=(TEXT,), optional=True),
    FieldSpec(
        "guidance_scale",
        "float",
        "How closely the model follows the prompt",
        *GUIDANCE_SCALE_RANGE,
        kinds=(TEXT,),
        optional=True,
    ),
    FieldSpec(
        "num_inference_steps",
        "int",
        "Diffusion steps (more = slower, finer)",
        *INFERENCE_STEPS_RANGE,
        kinds=(TEXT,),
        optional=True,
    ),
    FieldSpec(
        "model_id",
        "text",
        "Model on an enterprise server (e.g. instantmesh)",
        max_length=MAX_MODEL_ID_LENGTH,
        kinds=(TEXT,),
        optional=True,
    ),
)
SPECS: dict[str, FieldSpec] = {spec.name: spec for spec in FIELD_SPECS}
ENTERPRISE_ONLY = ("model_id",)
REVISION_FIELDS: tuple[str, ...] = tuple(spec.name for spec in FIELD_SPECS if spec.optional and IMAGE in spec.kinds)
TEXT_FIELDS: tuple[str, ...] = tuple(spec.name for spec in FIELD_SPECS if spec.kinds == (TEXT,))


def fields_for(kind: str) -> tuple[str, ...]:
    """The settable fields of one job kind ("image" or "text"), in FIELD_SPECS order (no image, no kind)."""
    if kind not in KINDS:
        raise invalid_input(f"kind must be one of {', '.join(KINDS)}, got {kind!r}.")
    return tuple(spec.name for spec in FIELD_SPECS if kind in spec.kinds)


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


def image_fields(views: list[str]) -> dict[str, Any]:
    """The body fields that carry the image(s): the one place that knows the request's shape for views.

    One view goes under both `init_image` (seed revision) and `image` (newer revision). Several views (front
    first, then at 90-degree steps: right side, back, left side) are sent the way the official SDK types the
    newer revision's field: `multi_image: true` with the list of URLs under both names.
    """
    if len(views) == 1:
        return {"init_image": views[0], "image": views[0]}
    return {"multi_image": True, "init_image": list(views), "image": list(views)}


@dataclass
class GenerationParams:
    """Fields of POST …/3d/image_to_3d or …/3d/text_to_3d except the key (see FIELD_SPECS for each field).

    kind "image": `init_image` is the (front) image, an http(s) URL when sent; `extra_views` are 1-3 more views of
    the same object (right side, back, left side: 90-degree steps), which make it a `multi_image` request.
    kind "text": `prompt` (required) and the text endpoint's fields; no image.
    """

    init_image: str = ""
    foreground_ratio: float = 0.85
    remove_bg: bool = False
    resolution: int = 256
    chunk_size: int = 8192
    seed: int = 0
    output_format: str = "obj"
    webhook: str | None = None
    track_id: str | None = None
    ss_guidance_strength: float | None = None
    ss_sampling_steps: int | None = None
    slat_guidance_strength: float | None = None
    slat_sampling_steps: int | None = None
    mesh_simplify: float | None = None
    render: bool | None = None
    temp: bool | None = None
    kind: str = IMAGE
    prompt: str = ""
    negative_prompt: str | None = None
    guidance_scale: float | None = None
    num_inference_steps: int | None = None
    model_id: str | None = None
    extra_views: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        """The endpoint name after the flavour's path: "image_to_3d" or "text_to_3d"."""
        return ENDPOINTS[self.kind] if self.kind in ENDPOINTS else ENDPOINTS[IMAGE]

    @property
    def views(self) -> list[str]:
        """Every image of an image job, front first (empty for a text job)."""
        if self.kind == TEXT:
            return []
        return [self.init_image, *self.extra_views]

    def validate(self, *, require_image: bool = True) -> GenerationParams:
        """Raise ModelsLabError(invalid_input) naming the field and its allowed range; return self.

        require_image=False checks everything but the images' URLs (before a local image is uploaded); the number
        of views is checked either way.
        """
        if self.kind not in KINDS:
            raise invalid_input(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}.")
        for spec in FIELD_SPECS:
            value = getattr(self, spec.name)
            if self.kind not in spec.kinds:
                if spec.optional or spec.kinds == (TEXT,):
                    _check_unused(spec, value, self.kind)
                continue
            if spec.optional and value is None:
                continue
            _check_field(spec, value)
        if self.kind == TEXT:
            if not isinstance(self.prompt, str) or not self.prompt.strip():
                raise invalid_input("prompt: no prompt was given.", "Describe the object to make.")
            if self.init_image or self.extra_views:
                raise invalid_input(
                    "init_image: a text job takes no image; use kind='image' for an image job.",
                    "Clear the image, or choose the Image source instead of Text.",
                )
            return self
        self._check_views(require_image)
        return self

    def _check_views(self, require_image: bool) -> None:
        if not isinstance(self.extra_views, list | tuple):
            raise invalid_input(f"extra_views must be a list of views, got {type(self.extra_views).__name__}.")
        low, high = VIEW_COUNT_RANGE
        if self.extra_views and not (low <= 1 + len(self.extra_views) <= high):
            raise invalid_input(
                f"extra_views: several views means {low} to {high} views in all (front first), "
                f"got {1 + len(self.extra_views)}.",
                "Give the front and 1 to 3 more views: right side, back, left side.",
            )
        if not require_image:
            return
        if self.init_image is None or self.init_image == "":
            raise invalid_input("init_image: no image was given.", "Choose an image file or an image URL.")
        check_http_url(self.init_image, "init_image")
        for number, view in enumerate(self.extra_views, start=2):
            check_http_url(view, f"extra_views (view {number}, {VIEW_NAMES[number - 1]})")

    def to_body(self, flavor: str = "enterprise") -> dict[str, Any]:
        """The JSON body without the key, for this kind's endpoint in this flavour ("enterprise" or "standard").

        Optional fields go in only when set; the image(s) as image_fields() shapes them; `temp` as "yes"/"no".
        """
        body: dict[str, Any] = {}
        if self.kind == TEXT:
            body["prompt"] = self.prompt.strip()
        else:
            body.update(image_fields(self.views))
        for spec in FIELD_SPECS:
            if self.kind not in spec.kinds or spec.name == "prompt":
                continue
            value = getattr(self, spec.name)
            if spec.optional and value is None:
                continue
            if spec.name in ENTERPRISE_ONLY and flavor != "enterprise":
                raise invalid_input(
                    f"{spec.name} is a field of the enterprise API only.",
                    f"Clear {spec.name}, or switch the API flavour to enterprise in the add-on preferences.",
                )
            if spec.kind == "yesno":
                value = "yes" if value else "no"
            elif spec.name in ("webhook", "track_id"):
                value = value or None
            body[spec.name] = value
        return body

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (for journals and provenance)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationParams:
        """Build from a dict, ignoring unknown keys (journals written by other versions)."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if isinstance(values.get("extra_views"), tuple):
            values["extra_views"] = list(values["extra_views"])
        return cls(**values)


def text_params(prompt: str, **values: Any) -> GenerationParams:
    """GenerationParams of a text job (not yet validated): text_params("a red chair", seed=7)."""
    return GenerationParams.from_dict({**values, "kind": TEXT, "prompt": prompt})


def _check_unused(spec: FieldSpec, value: Any, kind: str) -> None:
    unset = value is None or (spec.name == "prompt" and value == "")
    if not unset:
        where = " and ".join(ENDPOINTS[k] for k in spec.kinds)
        raise invalid_input(
            f"{spec.name} belongs to {where}, not to a {kind} job.", f"Clear {spec.name} for a {kind} job."
        )


def _check_field(spec: FieldSpec, value: Any) -> None:
    name = spec.name
    if spec.kind in ("int", "float"):
        assert spec.low is not None and spec.high is not None
        _check_number(name, value, spec.low, spec.high, integer=spec.kind == "int")
    elif spec.kind in ("bool", "yesno"):
        if not isinstance(value, bool):
            raise invalid_input(f"{name} must be true or false, got {value!r}.")
    elif spec.kind == "choice":
        if not isinstance(value, str) or value not in spec.choices:
            raise invalid_input(f"{name} must be one of {', '.join(spec.choices)}, got {value!r}.")
    elif spec.kind == "url":
        if value is not None and value != "":
            check_http_url(value, name)
    elif spec.kind == "text" and value is not None:
        if not isinstance(value, str) or len(value) > spec.max_length:
            raise invalid_input(f"{name} must be text of at most {spec.max_length} characters.")
        if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
            raise invalid_input(f"{name} cannot contain control characters.")


def _check_number(name: str, value: Any, low: float, high: float, *, integer: bool = False) -> None:
    kind = "a whole number" if integer else "a number"
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and integer and isinstance(value, float):
        ok = value.is_integer()
    if ok and isinstance(value, float) and not math.isfinite(value):
        ok = False
    if not ok or not (low <= value <= high):
        raise invalid_input(f"{name} must be {kind} from {low:g} to {high:g}, got {value!r}.")


# The seed revision's image_to_3d parameters other than the image, in declaration order (the names the operator,
# the script API and the batch flags have today); fields_for(kind) lists every settable field of a kind.
PARAM_FIELDS: tuple[str, ...] = (
    "foreground_ratio",
    "remove_bg",
    "resolution",
    "chunk_size",
    "seed",
    "output_format",
    "webhook",
    "track_id",
)
