"""The notebooks' GPU branches cannot rot: each notebook that has one is executed on this CPU with
LDM_COURSE_GPU_BRANCH=1 (the setup cell then takes the GPU settings) and the work shrunk through
the package (tiny widths and batches for the `gpu` presets, two training steps), injected with
sitecustomize so that the notebook itself runs unchanged. A cell that breaks fails the test.
On a real GPU, scripts/course/gpu_check.sh runs the same branches at full size."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]

SHRINK = """
    import dataclasses

    import ldm_course.config as config
    import ldm_course.training.train_ldm as train_ldm_module
    import ldm_course.training.train_vae as train_vae_module

    _vae_preset, _ldm_preset = config.vae_preset, config.ldm_preset


    def vae_preset(name):
        cfg = _vae_preset(name)
        if name != "gpu":
            return cfg
        return dataclasses.replace(cfg, batch_size=4, vae=dataclasses.replace(cfg.vae, base_channels=8, num_res_blocks=1))


    def ldm_preset(name):
        cfg = _ldm_preset(name)
        if name != "gpu":
            return cfg
        return dataclasses.replace(cfg, batch_size=8, unet=dataclasses.replace(cfg.unet, base_channels=16, num_res_blocks=1))


    def two_steps(train):
        def run(cfg, *args, **kwargs):
            cfg = dataclasses.replace(cfg, steps=2, warmup_steps=1, sample_every=2, checkpoint_every=2, log_every=1)
            if kwargs.get("watch_at"):  # snapshots of the full run's steps, shrunk with it
                kwargs["watch_at"] = tuple(sorted({min(s, 2) for s in kwargs["watch_at"]}))
            return train(cfg, *args, **kwargs)
        return run


    config.vae_preset, config.ldm_preset = vae_preset, ldm_preset
    train_vae_module.train_vae = two_steps(train_vae_module.train_vae)
    train_ldm_module.train_ldm = two_steps(train_ldm_module.train_ldm)
"""

# notebook -> text its GPU branch prints (the settings it chose before training was shrunk)
BRANCHES = {
    "01_vae": "2000 steps, batch 4, 32x32 images",
    "02_perceptual_loss": "2000 steps at 32x32",
    "04_latent_diffusion": "training 3000 steps, batch 8",
    "05_end_to_end": "measured on GPU",
}


def test_every_notebook_with_a_gpu_branch_is_covered():
    for path in sorted((ROOT / "solutions").glob("0*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        branches = [c for c in nb.cells[2:] if c.cell_type == "code" and "ON_GPU" in c.source]
        assert bool(branches) == (path.stem in BRANCHES), path.name


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BRANCHES))
def test_gpu_branch_runs(name, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent(SHRINK))
    env = {**os.environ, "LDM_COURSE_GPU_BRANCH": "1", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    env.pop("MPLBACKEND", None)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "nbconvert",
        "--to",
        "notebook",
        "--execute",
        "--ExecutePreprocessor.timeout=900",
        "--output-dir",
        str(out),
        str(ROOT / "notebooks" / f"{name}.ipynb"),
    ]
    run = subprocess.run(
        cmd, cwd=ROOT / "notebooks", env=env, capture_output=True, text=True, timeout=1800
    )
    assert run.returncode == 0, run.stderr[-4000:]
    nb = nbformat.read(out / f"{name}.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert BRANCHES[name] in text, text[-3000:]
