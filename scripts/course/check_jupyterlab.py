"""Open a notebook in a real JupyterLab 4 in headless Chromium, run all its cells, and check that the
widgets render and respond: the tqdm.auto bars draw as progress widgets and, in notebook 03, moving
the scale-factor slider redraws the figure below it.

Needs a Chromium and the `playwright` Python package (its browser download is not needed):

    apt-get install chromium && python -m venv /tmp/pw && /tmp/pw/bin/pip install playwright
    /tmp/pw/bin/python scripts/course/check_jupyterlab.py notebooks/03_latent_scaling.ipynb \
        --jupyter .venv/bin/jupyter --chromium /usr/bin/chromium --expect-slider
    /tmp/pw/bin/python scripts/course/check_jupyterlab.py notebooks/04_latent_diffusion.ipynb \
        --jupyter .venv/bin/jupyter --chromium /usr/bin/chromium --expect-progress

The notebook is copied to a temporary folder first, so JupyterLab's autosave cannot touch the
committed outputs. JupyterLab runs with its own settings folder, where the notebook's windowing
mode is "none": every cell is rendered and nothing moves while cells run (JupyterLab 4's default
windowed notebook moved the slider under the mouse: 3 of 3 runs failed). The slider is moved from
the keyboard (its handle focused, then End), which needs no coordinates. Every browser console
error and uncaught page error is recorded and printed; the run fails on any error that does not
match EXPECTED_CONSOLE_ERRORS. Exits non-zero, naming the failed check, if anything does not render.
"""

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# Console errors that a healthy run shows, each with why it is harmless; any other error fails.
EXPECTED_CONSOLE_ERRORS: dict[str, str] = {
    r"ERR_UNKNOWN_URL_SCHEME \(attachment:": "JupyterLab renders a markdown image as "
    "'attachment:<name>' before it swaps in the cell's attached data; the browser's first try at "
    "that address fails. The check 'markdown images load' proves the image is then shown.",
}


def unexpected(errors: list[str]) -> list[str]:
    return [e for e in errors if not any(re.search(p, e) for p in EXPECTED_CONSOLE_ERRORS)]


def lab_settings(folder: Path) -> Path:
    """A JupyterLab user-settings folder whose notebooks render every cell (no windowing)."""
    tracker = folder / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(jupyter: str, root: Path, port: int, token: str, settings: Path) -> subprocess.Popen:
    cmd = [
        jupyter, "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run commands like a user
    ]  # fmt: skip
    if os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and Colab run as root
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(settings),  # windowingMode "none", nothing of the user's
        "JUPYTERLAB_WORKSPACES_DIR": str(settings / "workspaces"),  # no restored layout
    }
    lab = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
            return lab
        except OSError:
            time.sleep(1)
    lab.kill()
    sys.exit("JupyterLab did not start within 2 minutes")


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'PASS' if ok else 'FAIL'}  {name}{'  ' + detail if detail else ''}", flush=True)
    if not ok:
        raise SystemExit(f"check failed: {name}")


def run_notebook(page, url: str, timeout_s: float) -> float:
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    page.wait_for_function(
        "() => window.jupyterapp?.shell?.currentWidget?.sessionContext?.session?.kernel"
        "?.connectionStatus === 'connected'",
        timeout=120_000,
    )
    mode = page.evaluate(
        "() => window.jupyterapp.shell.currentWidget.content.notebookConfig.windowingMode"
    )
    check("the notebook renders every cell (windowingMode none)", mode == "none", f"mode {mode!r}")
    start = time.perf_counter()
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    # every code cell gets an execution count once it has run; '*' while queued or running
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
            const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent))
                && kernel.status === 'idle';
        }""",
        timeout=timeout_s * 1000,
        polling=2000,
    )
    return time.perf_counter() - start


def move_slider(page) -> tuple[str, str]:
    """Move the first slider to its maximum from the keyboard (focus its handle, press End), as a
    keyboard user would; returns its readout before and after. No mouse coordinates are involved."""
    slider = page.locator(".widget-slider").first
    readout = slider.locator(".widget-readout")
    before = readout.text_content()
    handle = slider.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    handle.focus()
    page.keyboard.press("End")
    page.wait_for_function(
        "([el, before]) => el.textContent !== before", arg=[readout.element_handle(), before],
        timeout=30_000,
    )  # fmt: skip
    return before, readout.text_content()


def check_outputs(page, args, errors: list[str]) -> None:
    tracebacks = page.locator(".jp-OutputArea-output:has-text('Traceback (most recent call last)')")
    check("no cell raised", tracebacks.count() == 0)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-MarkdownOutput img')].every(i => i.complete)",
        timeout=60_000,
    )
    images = page.evaluate(
        "() => [...document.querySelectorAll('.jp-MarkdownOutput img')].map(i => i.naturalWidth)"
    )
    check("markdown images load", all(w > 0 for w in images), f"{len(images)} image(s)")
    views = page.locator(".jupyter-widgets").count()
    loading = page.locator(".jp-OutputArea-output:has-text('Loading widget')").count()
    expected = args.expect_progress or args.expect_slider
    check("widget views render", loading == 0 and (views > 0 or not expected), f"{views} views")
    if args.expect_progress:
        # ipywidgets 8: a FloatProgress is .widget-hprogress; tqdm styles a finished bar 'success'
        bars = page.locator(".widget-hprogress").count()
        done = page.locator(".widget-hprogress .progress-bar-success").count()
        check("tqdm.auto bars render and finish", bars > 0 and done == bars, f"{done}/{bars} bars")
    if not args.expect_slider:
        return
    slider = page.locator(".widget-slider").first
    panel = slider.locator("xpath=ancestor::div[contains(@class,'widget-vbox')][1]")
    figure = panel.locator(".widget-output img")
    check("the figure is empty before the slider moves", figure.count() == 0)
    before, after = move_slider(page)
    check("the slider moves", before != after, f"readout {before} -> {after}")
    figure.first.wait_for(timeout=120_000)  # the kernel redraws when the handle is released
    check("the figure below the slider redraws", figure.count() > 0, f"{figure.count()} image(s)")
    if args.screenshot:
        panel.screenshot(path=str(args.screenshot))


def check_console(errors: list[str]) -> None:
    for error in errors:
        print(f"console error: {error}")
    bad = unexpected(errors)
    check(
        "no unexpected browser console errors",
        not bad,
        f"{len(errors)} recorded, {len(bad)} unexpected",
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("notebook", type=Path)
    p.add_argument("--jupyter", default="jupyter")
    p.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    p.add_argument("--timeout", type=float, default=900, help="seconds for all cells to run")
    p.add_argument("--expect-progress", action="store_true", help="the notebook draws tqdm bars")
    p.add_argument(
        "--expect-slider", action="store_true", help="move the first slider from the keyboard (03)"
    )
    p.add_argument("--screenshot", type=Path, help="save a screenshot of the slider and its figure")
    args = p.parse_args()
    if not args.notebook.is_file():
        sys.exit(
            f"{args.notebook} is not a notebook file; pass e.g. notebooks/03_latent_scaling.ipynb"
        )

    from playwright.sync_api import sync_playwright  # here: the helpers above import without it

    root = Path(tempfile.mkdtemp(prefix="lab-check-"))
    settings = lab_settings(Path(tempfile.mkdtemp(prefix="lab-settings-")))
    shutil.copytree(args.notebook.resolve().parent.parent / "images", root / "images")
    (root / "notebooks").mkdir()
    shutil.copy(args.notebook, root / "notebooks" / args.notebook.name)
    port, token = free_port(), secrets.token_hex(16)
    lab = start_lab(args.jupyter, root, port, token, settings)
    errors: list[str] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on(
                "console",
                lambda m: (
                    m.type == "error" and errors.append(f"{m.text} ({m.location.get('url', '')})")
                ),
            )
            page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
            url = f"http://127.0.0.1:{port}/lab/tree/notebooks/{args.notebook.name}?token={token}"
            try:
                seconds = run_notebook(page, url, args.timeout)
            except Exception:
                page.screenshot(path=str(root.parent / "lab-check-failure.png"))
                print(f"screenshot of the failure: {root.parent / 'lab-check-failure.png'}")
                raise
            print(f"ran all cells of {args.notebook.name} in JupyterLab in {seconds:.0f} s")
            check_outputs(page, args, errors)
            page.wait_for_timeout(2000)  # late errors from the redraw
            check_console(errors)
            browser.close()
    finally:
        lab.terminate()
        lab.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(settings, ignore_errors=True)


if __name__ == "__main__":
    main()
