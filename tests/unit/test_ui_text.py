"""blender.ui_text without Blender: the sidebar's durations, countdown, names, error sentences and notices."""

from __future__ import annotations

import pytest

from blender import ui_text

LABELS = {"remove_bg": "Remove Background", "foreground_ratio": "Foreground Ratio", "chunk_size": "Chunk Size"}


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (6.4, "6s"), (59.6, "1m 00s"), (125, "2m 05s"), (3780, "1h 03m")]
)
def test_duration(seconds: float, text: str) -> None:
    assert ui_text.duration(seconds) == text


def test_a_reimport_does_not_move_when_the_job_ended() -> None:
    history = [["queued", 100.0], ["submitted", 101.0], ["downloaded", 106.0], ["imported", 106.2]]
    # mark_imported of a re-import 46 s later moves updated_at, never the history or downloaded_at
    assert ui_text.settled_at("imported", history, updated_at=152.0, downloaded_at=106.0) == 106.0
    assert ui_text.settled_at("imported", history, updated_at=152.0, downloaded_at=None) == 106.0
    failed = [["queued", 100.0], ["failed", 103.0]]
    assert ui_text.settled_at("failed", failed, updated_at=140.0, downloaded_at=None) == 103.0
    assert ui_text.settled_at("failed", [], updated_at=140.0, downloaded_at=None) == 140.0


def test_predicted_finish_counts_from_the_answer_that_gave_the_eta() -> None:
    assert ui_text.predicted_finish("submitted", 6.0, submitted_at=100.0, updated_at=101.0) == 106.0
    assert ui_text.predicted_finish("processing", 4.0, submitted_at=100.0, updated_at=110.0) == 114.0
    # an unrelated update (same eta) keeps the earlier prediction
    assert ui_text.predicted_finish("processing", 4.0, 100.0, updated_at=112.0, previous=114.0) == 114.0
    assert ui_text.predicted_finish("processing", None, 100.0, 110.0) == 0.0
    assert ui_text.predicted_finish("downloading", 4.0, 100.0, 110.0) == 0.0


def test_time_left_counts_down_and_the_bar_moves() -> None:
    seen = [ui_text.progress_view(100.0 + t, "processing", 0.1, 100.0, 106.0, 99.0) for t in (0, 2, 4, 5.5)]
    texts = [text for _, text in seen]
    assert texts == ["About 6s left", "About 4s left", "About 2s left", "About 1s left"], texts
    fractions = [fraction for fraction, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] < fractions[-1] <= ui_text.BAR_DUE, fractions


def test_past_the_eta_it_says_so_and_never_reaches_the_end() -> None:
    fraction, text = ui_text.progress_view(114.0, "processing", 0.1, 100.0, 106.0, 99.0)
    assert text == "Taking longer than expected"
    assert ui_text.timing_line(114.0, 100.0, 106.0, 99.0) == "Elapsed 15s, expected 6s"
    assert ui_text.timing_line(103.0, 100.0, 106.0, 99.0) == "Elapsed 4s, expected 6s"
    assert ui_text.timing_line(103.0, 0.0, 0.0, 99.0) == "Elapsed 4s"
    later, _ = ui_text.progress_view(1000.0, "processing", 0.1, 100.0, 106.0, 99.0)
    assert ui_text.BAR_DUE < fraction < later < ui_text.BAR_LATE_MAX


def test_progress_without_an_eta_and_before_the_server() -> None:
    assert ui_text.progress_view(112.0, "processing", 0.2, 100.0, 0.0, 99.0) == (0.2, "Processing, 12s so far")
    assert ui_text.progress_view(101.0, "uploading", 0.02, 0.0, 0.0, 100.0)[1] == "Uploading the image"
    assert ui_text.progress_view(101.0, "downloading", 0.9, 100.0, 106.0, 99.0) == (0.9, "Downloading the mesh")


def test_short_progress_for_the_list_row() -> None:
    assert ui_text.short_progress(101.0, "processing", 100.0, 112.0) == "11s"
    assert ui_text.short_progress(120.0, "processing", 100.0, 112.0) == "late"
    assert ui_text.short_progress(101.0, "uploading", 0.0, 0.0) == ""


def test_repeated_names_are_numbered_in_list_order() -> None:
    names = ["duck_512", "robot", "duck_512", "duck_512"]
    assert ui_text.numbered_names(names) == ["duck_512", "robot", "duck_512 (2)", "duck_512 (3)"]


def test_error_text_for_people() -> None:
    message, fix = ui_text.people_error(
        "[invalid_input] foreground_ratio must be between 0.5 and 1.0, got 0.01",
        "set foreground_ratio within the range, or turn on remove_bg",
        LABELS,
    )
    assert message == '"Foreground Ratio" must be between 0.5 and 1.0, got 0.01.', message
    assert fix == 'Set "Foreground Ratio" within the range, or turn on "Remove Background".', fix
    assert "[" not in message and "remove_bg" not in fix
    # unknown identifiers and prose stay as they are
    assert (
        ui_text.people_words("check the base_url and the resolution", LABELS) == "check the base_url and the resolution"
    )


def test_notices_for_the_status_bar() -> None:
    assert ui_text.finished_notice("duck_512", "imported", "duck_512.001", 6.2, "") == (
        "INFO",
        "ModelsLab: duck_512 imported as duck_512.001 (took 6s)",
    )
    level, text = ui_text.finished_notice("duck_512 (2)", "failed", "", 3, "the server failed the job") or ("", "")
    assert level == "WARNING" and text.startswith("ModelsLab: duck_512 (2) failed: The server failed the job.")
    assert ui_text.finished_notice("x", "processing", "", 0, "") is None


def test_clear_and_resume_texts() -> None:
    assert ui_text.cleared_text(0) == "No finished jobs to clear"
    assert ui_text.cleared_text(1).startswith("Cleared 1 finished job ")
    assert ui_text.resume_text(0) == "Nothing to resume: no unfinished jobs"
    assert ui_text.resume_text(2) == "Resuming 2 unfinished jobs"


def test_money_text() -> None:
    assert ui_text.money_text(2, 12.5, "USD") == "2 jobs may have been charged this session; balance 12.50 USD"
    assert ui_text.money_text(1, None) == "1 job may have been charged this session"


@pytest.mark.parametrize("eta", [1e300, float("inf"), 10 * 86400.0])
def test_an_absurd_eta_gives_a_short_label(eta: float) -> None:
    due = ui_text.predicted_finish("submitted", eta, submitted_at=100.0, updated_at=100.0) or float("inf")
    _, text = ui_text.progress_view(101.0, "processing", 0.1, 100.0, due, 100.0)
    assert text == "More than a day left"
    assert ui_text.short_progress(101.0, "processing", 100.0, due) == "over a day"
    assert ui_text.duration(eta) == "over a day" and ui_text.duration(float("nan")) == "0s"
