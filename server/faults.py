"""Fault rules: validated at the door, matched per request, counted when they fire."""

from __future__ import annotations

import collections
import copy
import random
import threading
from dataclasses import dataclass, field
from typing import Any

JSON_ENDPOINTS = frozenset({"submit", "fetch", "upload", "wallet", "system"})
ENDPOINTS = JSON_ENDPOINTS | {"download"}
JOB_ENDPOINTS = frozenset({"submit", "fetch"})
SUBMIT_ONLY = frozenset({"submit"})
# Hostile-mesh kinds -> the output format they apply to (they fire only on submits of that format).
MESH_KINDS = {"glb_buffer_uri": "glb", "glb_image_uri": "glb", "obj_mtllib": "obj"}
MAX_REFERENCE = 1024

# kind -> (endpoints where it can fire, {parameter: default})
KINDS: dict[str, tuple[frozenset[str], dict[str, Any]]] = {
    "http_error": (ENDPOINTS, {"status": 500, "body": "json", "message": None}),
    "rate_limit": (ENDPOINTS, {"retry_after": 1}),
    "malformed_json": (JSON_ENDPOINTS, {}),
    "status_error": (JSON_ENDPOINTS, {"spelling": "message", "text": "Server is busy, please try again later"}),
    "job_failed": (JOB_ENDPOINTS, {"text": "Generation failed: the model could not process this image"}),
    "processing_polls": (JOB_ENDPOINTS, {"polls": 3}),
    "processing_forever": (JOB_ENDPOINTS, {}),
    "expired": (frozenset({"fetch", "download"}), {}),
    "truncate": (frozenset({"download"}), {"bytes": None}),
    "html_mesh": (frozenset({"download"}), {}),
    "corrupt_mesh": (frozenset({"download"}), {"bytes": 256}),
    "slow_download": (frozenset({"download"}), {"bytes_per_second": 262144}),
    "drop_connection": (ENDPOINTS, {}),
    "delay": (ENDPOINTS, {"seconds": 1.0}),
    "hostile_names": (JOB_ENDPOINTS, {}),
    "pad_output": (SUBMIT_ONLY, {"bytes": 1 << 20}),
    "hold_job": (SUBMIT_ONLY, {}),
    "glb_buffer_uri": (SUBMIT_ONLY, {"uri": "/dev/zero"}),
    "glb_image_uri": (SUBMIT_ONLY, {"uri": "../../outside.png"}),
    "obj_mtllib": (SUBMIT_ONLY, {"mtllib": "../x.mtl", "material": "hostile"}),
}
# Faults that replace the answer; at most one fires per request. The others modify it and may combine.
TERMINAL = frozenset(
    {
        "http_error",
        "rate_limit",
        "malformed_json",
        "status_error",
        "drop_connection",
        "expired",
        "html_mesh",
        "corrupt_mesh",
    }
)
# Faults that can fire whatever the request turns out to be (even for an unknown id or a missing file).
GENERIC = frozenset({"http_error", "rate_limit", "malformed_json", "status_error", "drop_connection", "delay"})
COMMON = ("fault", "endpoint", "times", "probability")
HTTP_ERROR_STATUSES = range(400, 600)


class FaultError(ValueError):
    """A rule that does not follow the format (the admin endpoint answers 400 with this text)."""


@dataclass
class Rule:
    """One validated rule; `times` counts down (-1 = forever)."""

    fault: str
    endpoint: str
    times: int
    probability: float
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The rule as JSON, with the remaining `times`."""
        return {
            "fault": self.fault,
            "endpoint": self.endpoint,
            "times": self.times,
            "probability": self.probability,
            **self.params,
        }


def _number(rule: dict, name: str, value: Any, *, low: float, integer: bool = False, high: float | None = None) -> Any:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and integer and isinstance(value, float):
        ok = value.is_integer()
    if not ok or value < low or (high is not None and value > high):
        bound = f" from {low:g} to {high:g}" if high is not None else f" >= {low:g}"
        raise FaultError(f"{rule.get('fault')}: {name} must be a {'whole ' if integer else ''}number{bound}")
    return int(value) if integer else float(value)


def parse_rule(raw: Any) -> Rule:
    """Validate one rule dict and fill in defaults; raise FaultError with a precise message."""
    if not isinstance(raw, dict):
        raise FaultError("a fault rule must be a JSON object")
    kind = raw.get("fault")
    if kind not in KINDS:
        raise FaultError(f"unknown fault {kind!r}; known: {', '.join(sorted(KINDS))}")
    where, defaults = KINDS[kind]
    endpoint = raw.get("endpoint", "any")
    if endpoint != "any" and endpoint not in ENDPOINTS:
        raise FaultError(f"unknown endpoint {endpoint!r}; known: any, {', '.join(sorted(ENDPOINTS))}")
    if endpoint != "any" and endpoint not in where:
        raise FaultError(f"{kind} cannot fire on {endpoint}; it applies to {', '.join(sorted(where))}")
    unknown = set(raw) - set(COMMON) - set(defaults)
    if unknown:
        allowed = ", ".join([*COMMON, *defaults])
        raise FaultError(f"{kind}: unknown parameter(s) {', '.join(sorted(unknown))}; allowed: {allowed}")
    times = _number(raw, "times", raw.get("times", 1), low=-1, integer=True)
    probability = _number(raw, "probability", raw.get("probability", 1.0), low=0.0, high=1.0)
    params = {name: raw.get(name, default) for name, default in defaults.items()}
    if kind == "http_error":
        params["status"] = _number(raw, "status", params["status"], low=400, high=599, integer=True)
        if params["body"] not in ("json", "html"):
            raise FaultError("http_error: body must be 'json' or 'html'")
        if params["message"] is not None and not isinstance(params["message"], str):
            raise FaultError("http_error: message must be text")
    elif kind == "rate_limit":
        params["retry_after"] = _number(raw, "retry_after", params["retry_after"], low=0)
        if float(params["retry_after"]).is_integer():
            params["retry_after"] = int(params["retry_after"])
    elif kind == "status_error":
        if params["spelling"] not in ("message", "messege"):
            raise FaultError("status_error: spelling must be 'message' or 'messege'")
        if not isinstance(params["text"], str):
            raise FaultError("status_error: text must be text")
    elif kind == "job_failed":
        if not isinstance(params["text"], str):
            raise FaultError("job_failed: text must be text")
    elif kind == "processing_polls":
        params["polls"] = _number(raw, "polls", params["polls"], low=0, integer=True)
    elif kind == "truncate":
        if params["bytes"] is not None:
            params["bytes"] = _number(raw, "bytes", params["bytes"], low=0, integer=True)
    elif kind in ("corrupt_mesh", "pad_output"):
        params["bytes"] = _number(raw, "bytes", params["bytes"], low=0, integer=True)
    elif kind == "slow_download":
        params["bytes_per_second"] = _number(raw, "bytes_per_second", params["bytes_per_second"], low=1)
    elif kind == "delay":
        params["seconds"] = _number(raw, "seconds", params["seconds"], low=0, high=3600)
    elif kind in MESH_KINDS:
        for name, value in params.items():
            if not isinstance(value, str) or not value or len(value) > MAX_REFERENCE:
                raise FaultError(f"{kind}: {name} must be text of 1 to {MAX_REFERENCE} characters")
            if any(ord(char) < 32 for char in value):
                raise FaultError(f"{kind}: {name} must not contain control characters")
    return Rule(kind, endpoint, times, probability, params)


def parse_rules(raw: Any) -> list[Rule]:
    """Validate a list of rules (a single rule object is accepted too)."""
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise FaultError("rules must be a list of fault objects")
    return [parse_rule(item) for item in raw]


@dataclass
class Fired:
    """A fault that fired for one request: its kind and parameters."""

    fault: str
    params: dict[str, Any]

    def get(self, name: str, default: Any = None) -> Any:
        """A parameter of the rule that fired."""
        value = self.params.get(name, default)
        return default if value is None else value


class FaultBook:
    """Thread-safe list of rules; `take` decides which fire for a request and counts them down."""

    def __init__(self, seed: int | None = None):
        self._lock = threading.Lock()
        self._seed = seed
        self._rng = random.Random(seed)
        self._rules: list[Rule] = []
        self.fired: collections.Counter[str] = collections.Counter()

    def replace(self, rules: list[Rule]) -> None:
        """Drop the current rules and use these."""
        with self._lock:
            self._rules = list(rules)

    def add(self, rules: list[Rule]) -> None:
        """Append rules after the current ones."""
        with self._lock:
            self._rules.extend(rules)

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules = []

    def reset(self) -> None:
        """Remove every rule, zero the counters, reseed the RNG."""
        with self._lock:
            self._rules = []
            self.fired.clear()
            self._rng = random.Random(self._seed)

    def rules(self) -> list[dict[str, Any]]:
        """The rules as JSON, including exhausted ones (times 0)."""
        with self._lock:
            return [rule.to_dict() for rule in self._rules]

    def counts(self) -> dict[str, Any]:
        """{"total": N, "by_kind": {kind: N}}."""
        with self._lock:
            return {"total": sum(self.fired.values()), "by_kind": dict(self.fired)}

    def take(self, endpoint: str, kinds: frozenset[str] | None = None) -> dict[str, Fired]:
        """Fire the matching rules for one request at `endpoint` (optionally only `kinds`).

        Rules are tried in order; at most one terminal fault fires, each kind at most once.
        """
        taken: dict[str, Fired] = {}
        with self._lock:
            for rule in self._rules:
                if rule.times == 0 or rule.fault in taken:
                    continue
                if kinds is not None and rule.fault not in kinds:
                    continue
                if endpoint not in KINDS[rule.fault][0] or rule.endpoint not in ("any", endpoint):
                    continue
                if rule.fault in TERMINAL and any(kind in TERMINAL for kind in taken):
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                if rule.times > 0:
                    rule.times -= 1
                self.fired[rule.fault] += 1
                taken[rule.fault] = Fired(rule.fault, copy.deepcopy(rule.params))
        return taken
