"""modelslab.test_connection: wallet balance, or the categorised error (shown in the preferences)."""

import sys
import threading
from typing import TYPE_CHECKING, Any

import bpy

from ..api import Category, ModelsLabError
from ..blender import rows, session
from ..blender.preferences import connection_status
from .jobs import report_error

if TYPE_CHECKING:
    from bpy.stub_internal.rna_enums import OperatorReturnItems

_pending: dict[str, Any] = {}


def check_connection() -> str:
    """Ask the server for the wallet balance; returns a one-line summary or raises ModelsLabError."""
    current = session.check_ready()
    client = session.make_client(current)
    try:
        wallet = client.wallet_balance()
    finally:
        client.close()
    balance = wallet.get("balance")
    currency = wallet.get("currency") or ""
    amount = f"{balance:.2f}" if isinstance(balance, int | float) else str(balance)
    return f"Connected to {current.base_url}: balance {amount} {currency}".strip()


def _set_status(text: str, icon: str, fix: str = "") -> None:
    connection_status.clear()
    connection_status.update({"text": text, "icon": icon, "fix": fix})


def _set_error(error: ModelsLabError) -> None:
    """The preferences show the sentence and, on its own line, the fix (the category stays in the logs)."""
    from ..panels.sidebar import people_error

    message, fix = people_error(error.message, error.fix)
    _set_status(message, "ERROR", fix)
    print(f"ModelsLab: connection test: {error}", file=sys.stderr)


def _run_in_thread() -> None:
    try:
        _pending["result"] = ("ok", check_connection())
    except ModelsLabError as error:
        _pending["result"] = ("error", error)
    except Exception as exc:  # keep the UI informative whatever happened
        _pending["result"] = ("error", ModelsLabError(Category.NETWORK, f"Connection test failed: {exc}"))


def _poll_result() -> float | None:
    result = _pending.get("result")
    if result is None:
        return 0.2
    _pending.clear()
    kind, value = result
    if kind == "ok":
        _set_status(value, "CHECKMARK")
    else:
        _set_error(value)
    rows.tag_redraw()
    return None


def shutdown(timeout: float = 5.0) -> None:
    """Stop watching a running connection test and wait (bounded) for its thread: nothing left behind."""
    if bpy.app.timers.is_registered(_poll_result):
        bpy.app.timers.unregister(_poll_result)
    thread = _pending.get("thread")
    if thread is not None and thread.is_alive():
        thread.join(timeout)
    _pending.clear()


class MODELSLAB_OT_test_connection(bpy.types.Operator):
    """Check the API key and server: shows the wallet balance or what is wrong"""

    bl_idname = "modelslab.test_connection"
    bl_label = "Test Connection"
    bl_options = {"REGISTER"}

    def execute(self, context: bpy.types.Context) -> "set[OperatorReturnItems]":
        if bpy.app.background:
            try:
                text = check_connection()
            except ModelsLabError as error:
                _set_error(error)
                report_error(self, error)
                return {"CANCELLED"}
            _set_status(text, "CHECKMARK")
            self.report({"INFO"}, text)
            return {"FINISHED"}
        if _pending.get("thread") is not None and _pending["thread"].is_alive():
            self.report({"INFO"}, "A connection test is already running")
            return {"CANCELLED"}
        try:
            session.check_ready()  # no key / offline: answer at once, no request
        except ModelsLabError as error:
            _set_error(error)
            report_error(self, error)
            return {"CANCELLED"}
        _set_status("Testing the connection...", "TIME")
        thread = threading.Thread(target=_run_in_thread, name="modelslab-test-connection", daemon=True)
        _pending.clear()
        _pending["thread"] = thread
        thread.start()
        bpy.app.timers.register(_poll_result, first_interval=0.2)
        return {"FINISHED"}
