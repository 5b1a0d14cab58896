"""The add-on's operators (bl_idname `modelslab.*`)."""

from .admin import MODELSLAB_OT_server_action
from .adopt import MODELSLAB_OT_again_job, MODELSLAB_OT_import_job, MODELSLAB_OT_recall_job
from .connection import MODELSLAB_OT_test_connection
from .generate import MODELSLAB_OT_image_to_3d
from .jobs import (
    MODELSLAB_OT_cancel_job,
    MODELSLAB_OT_clear_finished_jobs,
    MODELSLAB_OT_copy_result_url,
    MODELSLAB_OT_notify,
    MODELSLAB_OT_open_job_folder,
    MODELSLAB_OT_reimport_job,
    MODELSLAB_OT_resume_jobs,
)
from .text import MODELSLAB_OT_text_to_3d

CLASSES = (
    MODELSLAB_OT_image_to_3d,
    MODELSLAB_OT_cancel_job,
    MODELSLAB_OT_reimport_job,
    MODELSLAB_OT_open_job_folder,
    MODELSLAB_OT_copy_result_url,
    MODELSLAB_OT_clear_finished_jobs,
    MODELSLAB_OT_resume_jobs,
    MODELSLAB_OT_test_connection,
    MODELSLAB_OT_notify,
    MODELSLAB_OT_text_to_3d,
    MODELSLAB_OT_import_job,
    MODELSLAB_OT_recall_job,
    MODELSLAB_OT_again_job,
    MODELSLAB_OT_server_action,
)
