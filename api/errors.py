"""One error type for everything that can go wrong, with a category, a message and a fix."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .textenum import TextEnum


class Category(TextEnum):
    """The error taxonomy from design.md; the value is what scripts and the batch JSON see."""

    AUTH = "auth"
    CREDITS = "credits"
    RATE_LIMITED = "rate_limited"
    OFFLINE = "offline"
    NETWORK = "network"
    SERVER = "server"
    INVALID_INPUT = "invalid_input"
    EXPIRED = "expired"
    BAD_MESH = "bad_mesh"
    CANCELLED = "cancelled"


DEFAULT_FIXES: dict[Category, str] = {
    Category.AUTH: "Check the API key in the add-on preferences or MODELSLAB_API_KEY.",
    Category.CREDITS: "Top up your ModelsLab wallet, then try again.",
    Category.RATE_LIMITED: "Too many requests at once: wait a little or lower the number of concurrent jobs.",
    Category.OFFLINE: "Allow online access (Preferences > System > Network) or use a local server URL.",
    Category.NETWORK: "Check the network, the base URL, the proxy and the CA bundle settings.",
    Category.SERVER: "The service had a problem; try again later. Submitted jobs can be resumed.",
    Category.INVALID_INPUT: "Correct the input and try again; nothing was sent.",
    Category.EXPIRED: "Outputs are deleted after 24 hours; generate the model again.",
    Category.BAD_MESH: "The downloaded file is not a valid mesh; try re-downloading or generate again.",
    Category.CANCELLED: "Cancelled. The server may still have charged for a job it had accepted.",
}

_SECRETS: set[str] = set()
_MIN_SECRET_LEN = 4


def register_secret(secret: str | None) -> None:
    """Remember a secret (the API key) so that redact() removes it from any text."""
    if secret and len(secret) >= _MIN_SECRET_LEN:
        _SECRETS.add(secret)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace every registered (and every given) secret in text by '***'."""
    for secret in sorted({*_SECRETS, *(s for s in secrets if s)}, key=len, reverse=True):
        if secret and len(secret) >= _MIN_SECRET_LEN:
            text = text.replace(secret, "***")
    # A key that escaped registration still never leaves inside a JSON-ish "key": "..." pair.
    return re.sub(r'("key"\s*:\s*")[^"]*(")', r"\1***\2", text)


class ModelsLabError(Exception):
    """A categorised failure: `category`, a user-facing `message`, and a short `fix`."""

    def __init__(
        self,
        category: Category | str,
        message: str,
        fix: str | None = None,
        *,
        server_message: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.category = Category(category)
        self.message = redact(message)
        self.fix = redact(fix) if fix else DEFAULT_FIXES[self.category]
        self.server_message = redact(server_message) if server_message else None
        self.http_status = http_status
        self.retry_after = retry_after
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"[{self.category.value}] {self.message}"

    def __repr__(self) -> str:
        return f"ModelsLabError({self.category.value!r}, {self.message!r})"

    def __reduce__(self):  # keep pickling/copying working with keyword-only fields
        return (
            _rebuild_error,
            (self.category.value, self.message, self.fix, self.server_message, self.http_status, self.retry_after),
        )

    def to_dict(self) -> dict[str, str]:
        """The form that goes into journals, the batch JSON and the UI."""
        return {"category": self.category.value, "message": self.message, "fix": self.fix}

    @classmethod
    def from_dict(cls, data: dict) -> ModelsLabError:
        """Rebuild an error saved with to_dict()."""
        return cls(data.get("category", "server"), data.get("message", ""), data.get("fix"))


def _rebuild_error(category, message, fix, server_message, http_status, retry_after) -> ModelsLabError:
    return ModelsLabError(
        category, message, fix, server_message=server_message, http_status=http_status, retry_after=retry_after
    )


def invalid_input(message: str, fix: str | None = None) -> ModelsLabError:
    """Shortcut for the error raised before any request is made."""
    return ModelsLabError(Category.INVALID_INPUT, message, fix)
