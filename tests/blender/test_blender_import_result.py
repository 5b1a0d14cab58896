"""What an import puts in the scene, compared number by number with the OBJ the server sent: positions, smooth
shading on every face, the `Color` attribute holding the file's colours in linear values, the material that shows
it, and the add-on's own colour reading (for OBJ importers that drop colours) agreeing with Blender's."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.blender import FAST_PARAMS, UserDir, run_scenario
from tests.helpers.keys import BLENDER_KEY
from tests.helpers.paths import example_image
from tests.helpers.servers import ServerProcess

DRIVER = Path(__file__).resolve().parent / "import_result_driver.py"


def test_the_object_is_the_file_smooth_shaded_with_its_colours_in_linear_values(
    user_dir: UserDir, extension_zip: Path, fresh_server: ServerProcess
) -> None:
    run = run_scenario(
        user_dir,
        extension_zip,
        "import_result",
        env={"MODELSLAB_API_KEY": BLENDER_KEY},
        prefs={"base_url": fresh_server.url},
        driver=DRIVER,
        timeout=180.0,
        kwargs={"image": str(example_image("duck_512.png")), "params": FAST_PARAMS},
    )
    result = run.result
    assert result["error"] is None, result["error"]
    assert result["result"] == ["FINISHED"], result
    assert result["mesh"] == result["file"], (result["mesh"], result["file"])
    assert result["max_position_error"] < 1e-5, result["max_position_error"]
    assert result["smooth_faces"] == result["file"]["faces"], "not every face is shaded smooth"
    assert ["Color", "POINT", "FLOAT_COLOR"] in result["color_attributes"], result["color_attributes"]
    assert result["active_color"] == "Color"
    if "render_color" in result:
        assert result["render_color"] == "Color"
    assert result["max_color_error"] < 1e-5, result["max_color_error"]
    assert result["materials"] == [{"name": "ModelsLab Vertex Color", "color_attribute_to_base_color": True}]

    # The add-on's own colour reading (for OBJ importers that drop colours) gives Blender's importer's numbers.
    fallback = result["fallback"]
    assert fallback is not None, "the add-on's OBJ colour reading found no colours in the server's file"
    assert (fallback["name"], fallback["domain"], fallback["data_type"]) == ("Color", "POINT", "FLOAT_COLOR")
    assert fallback["max_difference_from_blender"] < 1e-6, fallback
