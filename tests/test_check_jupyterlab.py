"""The browser check's own rules, without a browser: which console errors it lets through and the
JupyterLab settings it runs under. The browser runs themselves: docs/testing.md."""

import json

from helpers import load_script

lab = load_script("scripts/course/check_jupyterlab.py")


def test_only_the_listed_console_errors_pass():
    attachment = (
        "Failed to load resource: net::ERR_UNKNOWN_URL_SCHEME (attachment:03_scale_pipeline.png)"
    )
    others = [
        "uncaught: TypeError: Cannot read properties of undefined (reading 'model')",
        "Failed to load resource: the server responded with a status of 404 (http://127.0.0.1/x.png)",
        "Error: Could not create a view for model id 1234",
    ]
    assert lab.unexpected([attachment, *others]) == others
    assert lab.unexpected([]) == []


def test_lab_settings_turn_windowing_off(tmp_path):
    folder = lab.lab_settings(tmp_path / "settings")
    tracker = folder / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    assert json.loads(tracker.read_text()) == {"windowingMode": "none"}
