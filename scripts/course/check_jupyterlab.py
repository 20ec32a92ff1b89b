"""Open a notebook in a real JupyterLab 4 in headless Chromium, run all its cells, and check that the
widgets render and respond: the tqdm.auto bars draw as progress widgets and, in notebook 03, moving
the scale-factor slider redraws the figure below it.

Needs a Chromium and the `playwright` Python package (its browser download is not needed):

    apt-get install chromium && python -m venv /tmp/pw && /tmp/pw/bin/pip install playwright
    /tmp/pw/bin/python scripts/course/check_jupyterlab.py notebooks/03_latent_scaling.ipynb \
        --jupyter .venv/bin/jupyter --chromium /usr/bin/chromium

The notebook is copied to a temporary folder first, so JupyterLab's autosave cannot touch the
committed outputs. Exits non-zero, naming the failed check, if anything does not render.
"""

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(jupyter: str, root: Path, port: int, token: str) -> subprocess.Popen:
    cmd = [
        jupyter, "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run commands like a user
    ]  # fmt: skip
    if os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and Colab run as root
    lab = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
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


def drag_slider(page) -> tuple[str, str]:
    """Drag the first slider's handle to the right; returns its readout before and after."""
    slider = page.locator(".widget-slider").first
    readout = slider.locator(".widget-readout")
    before = readout.text_content()
    handle = slider.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + 60, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    return before, readout.text_content()


def check_outputs(page, args) -> None:
    tracebacks = page.locator(".jp-OutputArea-output:has-text('Traceback (most recent call last)')")
    check("no cell raised", tracebacks.count() == 0)
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
    before, after = drag_slider(page)
    check("the slider moves", before != after, f"readout {before} -> {after}")
    figure.first.wait_for(timeout=120_000)  # the kernel redraws when the handle is released
    check("the figure below the slider redraws", figure.count() > 0, f"{figure.count()} image(s)")
    if args.screenshot:
        panel.screenshot(path=str(args.screenshot))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("notebook", type=Path)
    p.add_argument("--jupyter", default="jupyter")
    p.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    p.add_argument("--timeout", type=float, default=900, help="seconds for all cells to run")
    p.add_argument("--expect-progress", action="store_true", help="the notebook draws tqdm bars")
    p.add_argument("--expect-slider", action="store_true", help="drag the first slider (03)")
    p.add_argument("--screenshot", type=Path, help="save a screenshot of the slider and its figure")
    args = p.parse_args()
    if not args.notebook.is_file():
        sys.exit(
            f"{args.notebook} is not a notebook file; pass e.g. notebooks/03_latent_scaling.ipynb"
        )

    root = Path(tempfile.mkdtemp(prefix="lab-check-"))
    shutil.copytree(args.notebook.resolve().parent.parent / "images", root / "images")
    (root / "notebooks").mkdir()
    shutil.copy(args.notebook, root / "notebooks" / args.notebook.name)
    port, token = free_port(), secrets.token_hex(16)
    lab = start_lab(args.jupyter, root, port, token)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            url = f"http://127.0.0.1:{port}/lab/tree/notebooks/{args.notebook.name}?token={token}"
            try:
                seconds = run_notebook(page, url, args.timeout)
            except Exception:
                page.screenshot(path=str(root.parent / "lab-check-failure.png"))
                print(f"screenshot of the failure: {root.parent / 'lab-check-failure.png'}")
                raise
            print(f"ran all cells of {args.notebook.name} in JupyterLab in {seconds:.0f} s")
            check_outputs(page, args)
            browser.close()
    finally:
        lab.terminate()
        lab.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
