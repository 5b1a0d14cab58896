"""What the client and the downloader share below the HTTP session: the connection settings, URL parts,
cancellable waits, and the translation of requests/urllib3 failures into categorised errors for people.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions

from .errors import Category, ModelsLabError

TLS_FIX = (
    "TLS certificate verification failed. Behind a corporate proxy or TLS inspection, set the CA bundle "
    "path (a PEM file with your company's root certificate) in the add-on preferences; verification is "
    "never turned off."
)
MAYBE_ACCEPTED_FIX = (
    "The job may have been accepted (and charged) by the server; it was not sent again to avoid paying "
    "twice. Check your ModelsLab dashboard or wait for the webhook before submitting again."
)


@dataclass
class ClientConfig:
    """Where and how to talk to the service. The env var MODELSLAB_BASE_URL is read by callers, not here."""

    base_url: str = "https://modelslab.com"
    flavor: str = "enterprise"  # or "standard" (/api/v6/3d/...)
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    ca_bundle: str | None = None  # path to a PEM bundle; verification is never disabled
    proxy: str | None = None  # e.g. http://proxy:3128, used for http and https
    max_download_bytes: int = 1 << 30
    max_retries: int = 4  # for idempotent calls (fetch, download, upload, wallet, system)
    backoff_base: float = 0.5  # seconds, doubles per attempt, capped by backoff_max
    backoff_max: float = 8.0
    max_retry_after: float = 120.0  # a 429's retry_after is honoured up to this; longer -> rate_limited error
    download_time_limit: float = 900.0  # seconds for a whole download: every link, retry and wait
    # False when the host application forbids network access (Blender's "Allow Online Access" off): then
    # only loopback hosts are contacted, whatever URL the server hands out; others are refused as offline.
    online_access: bool = True

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number attempt + 1 (exponential, capped)."""
        return min(self.backoff_max, self.backoff_base * (2**attempt))


def split_url(url: str) -> tuple[str, str, str]:
    """(scheme, netloc without credentials, hostname); never raises on odd URLs (e.g. 'http://[')."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname or ""
    except ValueError:
        return "", "", ""
    return parts.scheme.lower(), parts.netloc.rsplit("@", 1)[-1], hostname.lower()


def host_of(url: str) -> str:
    """host[:port] of url for messages (never the credentials of a user:password@ URL)."""
    return split_url(url)[1] or url[:80]


def is_loopback(url: str) -> bool:
    """True for a URL on this machine: the host is `localhost` or a loopback address (127.0.0.0/8, ::1)."""
    host = split_url(url)[2].rstrip(".")
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False  # a name such as 127.example.com resolves wherever its owner wants
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


OFFLINE_FIX = (
    "Allow online access in Blender (Preferences > System > Network, or start it with --online-mode), "
    "or use a local server URL such as http://127.0.0.1:8765."
)


def check_online_access(url: str, config: ClientConfig) -> None:
    """Raise ModelsLabError(offline) when url is not on this machine and config forbids network access."""
    if config.online_access or is_loopback(url):
        return
    raise ModelsLabError(
        Category.OFFLINE,
        f"Online access is disabled, so {split_url(url)[2] or host_of(url)} was not contacted.",
        OFFLINE_FIX,
    )


def cancelled(message: str = "Cancelled.") -> ModelsLabError:
    """The error of a call stopped by its cancel event."""
    return ModelsLabError(Category.CANCELLED, message)


def sleep_unless_cancelled(seconds: float, cancel: threading.Event | None) -> None:
    """Wait seconds; raise the cancelled error at once when cancel is set meanwhile."""
    if seconds <= 0:
        return
    if cancel is None:
        time.sleep(seconds)
    elif cancel.wait(seconds):
        raise cancelled()


def _reason_chain(exc: BaseException) -> list[BaseException]:
    """The exception, the urllib3 error inside requests' wrapper, its `reason`, and their causes."""
    seen: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        todo.extend(arg for arg in item.args if isinstance(arg, BaseException))
        todo.append(getattr(item, "reason", None))
        todo.append(item.__cause__)
    return seen


# urllib3 2 has NameResolutionError; 1.26 (Debian's, under Blender 3.4) reports DNS failures as a plain
# socket.gaierror in the chain, which the message test below also catches.
_NAME_RESOLUTION_ERRORS: tuple[type[BaseException], ...] = tuple(
    cls for cls in (getattr(urllib3.exceptions, "NameResolutionError", None), socket.gaierror) if cls is not None
)


def never_sent(exc: BaseException) -> bool:
    """True when the request surely did not reach the server: the connection itself was never made."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.SSLError):
        return True  # handshake failed before any byte of the request
    chain = _reason_chain(exc)
    return any(
        isinstance(item, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError)
        for item in chain
    )


def network_error(exc: BaseException, url: str, config: ClientConfig, *, maybe_accepted: bool) -> ModelsLabError:
    """Turn a requests/urllib3 exception into ModelsLabError(network) with a message for people."""
    host = host_of(url)
    chain = _reason_chain(exc)
    fix: str | None = MAYBE_ACCEPTED_FIX if maybe_accepted else None
    if isinstance(exc, requests.exceptions.SSLError) or any(
        isinstance(item, urllib3.exceptions.SSLError) for item in chain
    ):
        detail = "certificate not trusted" if "CERTIFICATE_VERIFY_FAILED" in str(exc) else "TLS handshake failed"
        return ModelsLabError(Category.NETWORK, f"Secure connection to {host} failed ({detail}).", TLS_FIX)
    if isinstance(exc, requests.exceptions.ProxyError):
        return ModelsLabError(
            Category.NETWORK,
            f"Could not go through the proxy to reach {host}.",
            "Check the proxy setting in the add-on preferences (or HTTPS_PROXY).",
        )
    if any(isinstance(item, _NAME_RESOLUTION_ERRORS) for item in chain) or any(
        "Name or service not known" in str(item) or "getaddrinfo failed" in str(item) for item in chain
    ):
        return ModelsLabError(
            Category.NETWORK,
            f"Could not resolve the host name {split_url(url)[2] or host!r} (DNS).",
            "Check the base URL and your internet connection.",
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return ModelsLabError(
            Category.NETWORK, f"Connecting to {host} timed out after {config.connect_timeout:g} s.", fix
        )
    if never_sent(exc):
        refused = any(isinstance(item, ConnectionRefusedError) for item in chain) or "refused" in str(exc).lower()
        why = "connection refused" if refused else "could not connect"
        return ModelsLabError(Category.NETWORK, f"Could not connect to {host} ({why}).", fix)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return ModelsLabError(
            Category.NETWORK, f"No answer from {host} within {config.read_timeout:g} s (read timeout).", fix
        )
    return ModelsLabError(
        Category.NETWORK, f"The connection to {host} broke before the answer was complete ({type(exc).__name__}).", fix
    )
