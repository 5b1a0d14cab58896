"""What the server keeps of an API key: digests only (stats, logs and job records never hold a raw key)."""

from __future__ import annotations

import hashlib


def key_digest(key: str) -> str:
    """Full SHA-256 of a key: what a job remembers of its owner."""
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def key_hash(key: str) -> str:
    """Short stable digest of a key: how /__admin/stats names keys (`submits_by_key`, a job's `key_hash`)."""
    return key_digest(key)[:12]
