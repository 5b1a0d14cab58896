"""Enterprise server actions in the preferences: system details, clear queue, clear cache, restart, update.

Each asks for a confirmation first (in a window) and reports the server's answer; on the standard flavour the
client refuses them before any request (invalid_input)."""

# mypy: disable-error-code="valid-type"
import json
from typing import TYPE_CHECKING, Any

import bpy
from bpy.props import EnumProperty

from ..api import ModelsLabError
from ..blender import session
from ..blender.preferences import ADMIN_ACTION_ITEMS, admin_status
from .generate import report_error

if TYPE_CHECKING:
    from bpy.stub_internal.rna_enums import OperatorReturnItems

LABELS = {identifier: label for identifier, label, _ in ADMIN_ACTION_ITEMS}


def answer_text(answer: dict[str, Any]) -> str:
    """One line from the server's answer: its message, else its data, shortened."""
    message = answer.get("message")
    if isinstance(message, str) and message.strip():
        return message.strip()[:300]
    data = answer.get("data", answer)
    return json.dumps(data, sort_keys=True, default=str)[:300]


class MODELSLAB_OT_server_action(bpy.types.Operator):
    """Run an action on your enterprise ModelsLab server (asks first)"""

    bl_idname = "modelslab.server_action"
    bl_label = "Server Action"
    bl_options = {"REGISTER", "INTERNAL"}

    action: EnumProperty(name="Action", items=ADMIN_ACTION_ITEMS, options={"SKIP_SAVE"})

    @classmethod
    def description(cls, context: bpy.types.Context, properties: Any) -> str:
        return next((text for key, _label, text in ADMIN_ACTION_ITEMS if key == properties.action), "")

    def invoke(self, context: bpy.types.Context, event: Any) -> "set[OperatorReturnItems]":
        wm: Any = context.window_manager
        return wm.invoke_confirm(self, event)

    def execute(self, context: bpy.types.Context) -> "set[OperatorReturnItems]":
        label = LABELS[self.action]
        try:
            current = session.check_ready()
            client = session.make_client(current)
            try:
                answer = client.server_admin(self.action)
            finally:
                client.close()
        except ModelsLabError as error:
            admin_status[self.action] = f"{label}: {error.message}"
            report_error(self, error)
            return {"CANCELLED"}
        text = answer_text(answer)
        admin_status[self.action] = f"{label}: {text}"
        self.report({"INFO"}, f"ModelsLab server: {label}: {text}")
        return {"FINISHED"}
