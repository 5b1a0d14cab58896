"""API keys for tests: distinctive strings, so that finding one in a file, a log or a report can only be a leak.

Each layer has its own, so a leak points at the layer that caused it. Any key works on the local server.
"""

from __future__ import annotations

import secrets

CLIENT_KEY = "sk-client-test-7f3e9a1b2c"  # tests/unit: the HTTP client
RELIABILITY_KEY = "ml-reliability-KEY-7c41e09b5d2a"  # tests/unit: JobRunner fault cases
SWEEP_KEY = "ml-sweep-KEY-91c2e7f04a6d"  # tests/soak: the fault sweep
SOAK_KEY = "ml-soak-KEY-3f9e0d2c81b7a4"  # tests/soak: the 200-job soak
BLENDER_KEY = f"mlk-test-{secrets.token_hex(12)}"  # tests/blender: one a session
BATCH_KEY = f"mlk-batch-{secrets.token_hex(12)}"  # tests/batch: one a session


def gui_key() -> str:
    """A fresh key for one gui-layer Blender session."""
    return "gui-" + secrets.token_hex(16)
