"""Colab's widgets left alone: the dependency range admits Colab's ipywidgets 7.7.1, and the Python
side of the course's widgets works on 7.x and on 8.x.

The widgets are 03's scale-factor slider (its cell, taken from the solved notebook) and the
tqdm.auto progress bars of ldm_course's samplers, encoder and training loop. Each ipywidgets
version runs in a real IPython kernel in its own throwaway venv; the test plays the browser's part
over the kernel's messages: it reads the widget models the kernel opens, moves the slider by
sending the `update` message a front end sends, and checks that the figure is redrawn. What the
browser draws is scripts/course/check_jupyterlab.py's part.
"""

import os
import re
import sys
import sysconfig
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
COLAB_IPYWIDGETS = "7.7.1"  # what Colab ships (googlecolab/colabtools#4525)
STACKS = {  # ipywidgets with its front-end packages; ipywidgets 7 predates ipykernel 7
    "7": ["ipywidgets==7.7.1", "widgetsnbextension==3.6.10", "jupyterlab_widgets==1.1.11",
          "ipython_genutils==0.2.0", "ipykernel==6.29.5"],
    "8": ["ipywidgets>=8,<9", "widgetsnbextension>=4,<5", "jupyterlab_widgets>=3,<4"],
}  # fmt: skip
MODEL_VERSION = {"7": "1.5.0", "8": "2.0.0"}  # @jupyter-widgets/controls protocol of each major


def ipywidgets_requirement(names: list[str]) -> Requirement:
    return next(r for r in map(Requirement, names) if r.name == "ipywidgets")


def test_the_dependency_range_keeps_colabs_ipywidgets():
    """pip leaves an installed 7.7.1 alone only if the range admits it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    for where, names in (
        ("pyproject.toml", project["dependencies"]),
        ("environment.yml", pip_list),
    ):
        req = ipywidgets_requirement([n for n in names if not n.startswith("-")])
        assert req.specifier.contains(COLAB_IPYWIDGETS), f"{where}: {req} upgrades Colab's 7.7.1"
        assert req.specifier.contains("8.1.5"), f"{where}: {req} excludes ipywidgets 8"


def slider_cell() -> str:
    """03's widget imports (from its imports cell) and its slider cell, as the notebook has them."""
    nb = nbformat.read(ROOT / "solutions" / "03_latent_scaling.ipynb", as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    imports = [
        line
        for line in next(s for s in code if "from ipywidgets import" in s).split("\n")
        if line.startswith(("from ipywidgets import", "from IPython.display import"))
    ]
    return "\n".join(imports) + "\n" + next(s for s in code if "FloatLogSlider(" in s)


def widget_venv(path: Path, stack: list[str]) -> Path:
    """A venv holding only `stack`; the rest (torch, IPython, tqdm...) is reached through a path
    entry after it, so its ipywidgets wins. Installed offline-capable from the configured index."""
    import subprocess

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "rest.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", *stack],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return python


class Kernel:
    """An IPython kernel in `python`'s environment, driven the way a front end drives it."""

    def __init__(self, python: Path, folder: Path):
        from jupyter_client import KernelManager
        from jupyter_client.kernelspec import KernelSpecManager

        spec = folder / "kernels" / "widgets"
        spec.mkdir(parents=True)
        argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (spec / "kernel.json").write_text(
            f'{{"argv": {str(argv).replace(chr(39), chr(34))}, "language": "python"}}'
        )
        specs = KernelSpecManager(kernel_dirs=[str(folder / "kernels")])
        self.km = KernelManager(kernel_name="widgets", kernel_spec_manager=specs)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MPLBACKEND": ""}
        env.pop("MPLBACKEND")
        self.km.start_kernel(env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def messages(self, msg_id: str) -> list[dict]:
        """iopub messages answering `msg_id`, up to the kernel going idle."""
        out = []
        while True:
            msg = self.kc.get_iopub_msg(timeout=120)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            out.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return out

    def run(self, code: str) -> list[dict]:
        msgs = self.messages(self.kc.execute(code))
        errors = [m["content"] for m in msgs if m["msg_type"] == "error"]
        assert not errors, "\n".join(e["ename"] + ": " + e["evalue"] for e in errors)
        return msgs

    def stdout(self, code: str) -> str:
        return "".join(
            m["content"]["text"] for m in self.run(code) if m["msg_type"] == "stream"
        )  # fmt: skip

    def move(self, comm_id: str, state: dict) -> list[dict]:
        """What a front end sends when the user moves a widget."""
        data = {"method": "update", "state": state, "buffer_paths": []}
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        self.kc.shell_channel.send(msg)
        return self.messages(msg["header"]["msg_id"])

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def opened(msgs: list[dict], model: str) -> list[dict]:
    return [
        m["content"]
        for m in msgs
        if m["msg_type"] == "comm_open" and m["content"]["data"]["state"]["_model_name"] == model
    ]


def state_updates(msgs: list[dict], comm_id: str) -> list[dict]:
    return [
        m["content"]["data"]["state"]
        for m in msgs
        if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
    ]


@pytest.mark.slow
@pytest.mark.parametrize("major", sorted(STACKS))
def test_slider_and_progress_bars_python_side(major, tmp_path):
    python = widget_venv(tmp_path / "venv", STACKS[major])
    kernel = Kernel(python, tmp_path)
    try:
        version = kernel.stdout("import ipywidgets; print(ipywidgets.__version__)").strip()
        assert version.split(".")[0] == major
        if major == "7":
            assert version == COLAB_IPYWIDGETS

        # 03's slider cell as the notebook has it; show_factors draws a small stand-in figure
        kernel.run(
            "import matplotlib.pyplot as plt\n"
            "ours, calls = 0.489, []\n"
            "def show_factors(factors):\n"
            "    calls.append(factors)\n"
            "    plt.plot([0, 1], [0, max(factors.values())])\n"
            "    plt.show()\n"
        )
        msgs = kernel.run(slider_cell())
        [slider] = opened(msgs, "FloatLogSliderModel")
        state = slider["data"]["state"]
        assert state["_model_module_version"] == MODEL_VERSION[major]
        assert (state["value"], state["continuous_update"]) == (0.489, False)
        assert opened(msgs, "OutputModel") and opened(msgs, "VBoxModel")
        moved = kernel.move(slider["comm_id"], {"value": 2.75})  # the user releases the handle
        figures = [m for m in moved if m["msg_type"] == "display_data"]
        assert len(figures) == 1 and "image/png" in figures[0]["content"]["data"]
        assert kernel.stdout("print(calls, slider.value)") == "[{'s = 2.75': 2.75}] 2.75\n"

        # the progress bars: ldm_course's modules use tqdm.auto, a widget bar in a kernel
        msgs = kernel.run(
            "import tqdm.notebook\n"
            "from ldm_course import latents, samplers\n"
            "from ldm_course.training import train\n"
            "assert samplers.tqdm is latents.tqdm is train.tqdm\n"
            "assert issubclass(samplers.tqdm, tqdm.notebook.tqdm), samplers.tqdm.__mro__\n"
            "for _ in samplers.tqdm(range(7), desc='DDIM'):\n"
            "    pass\n"
        )
        [bar] = opened(msgs, "FloatProgressModel")
        assert bar["data"]["state"]["max"] == 7
        assert bar["data"]["state"]["_model_module_version"] == MODEL_VERSION[major]
        updates = state_updates(msgs, bar["comm_id"])
        assert [u["value"] for u in updates if "value" in u][-1] == 7
        assert [u["bar_style"] for u in updates if "bar_style" in u][-1] == "success"
        labels = [m["content"]["data"]["state"] for m in msgs if m["msg_type"] == "comm_msg"]
        assert any(
            re.search(r"7/7", s.get("value", "")) for s in labels if isinstance(s.get("value"), str)
        )
    finally:
        kernel.close()
