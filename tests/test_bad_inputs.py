"""Bad inputs get one clear error, before any work: image outputs written atomically, odd image
folders and files loaded or refused, numeric settings and CLI numbers range-checked, the
reconstruct layout and slerp's conventions, missing devices, wrong dtypes and pickle files named."""

import math
import os
import pickle
from dataclasses import fields, replace

import numpy as np
import pytest
import torch
from PIL import Image
from run_helpers import TINY_VAE, vae_run

from ldm_course import config
from ldm_course.cli import args as cli_args
from ldm_course.cli.main import main
from ldm_course.course.viz import comparison_layout, image_grid, save_figure, save_grid
from ldm_course.data import image_folder, load_image
from ldm_course.infra import image_files
from ldm_course.infra.limits import RANGES, check_config
from ldm_course.latents import slerp
from ldm_course.pretrained import load_vae
from ldm_course.vae import VAE


@pytest.mark.parametrize("kind", ["grid", "figure"])
def test_image_outputs_are_written_atomically(tmp_path, monkeypatch, kind):
    path = tmp_path / "out.png"
    images = torch.zeros(4, 3, 32, 32)
    save_grid(images, path)
    before = path.read_bytes()

    def disk_full(self, fp, *args, **kwargs):
        open(fp, "wb").write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    if kind == "grid":
        monkeypatch.setattr(Image.Image, "save", disk_full)
        with pytest.raises(OSError, match="cannot write .*No space left on device"):
            save_grid(images, path)
    else:
        fig = image_grid(images)
        monkeypatch.setattr(fig, "savefig", lambda fp, **kw: disk_full(None, fp))
        with pytest.raises(OSError, match="previous out.png, is intact|is intact"):
            save_figure(fig, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["out.png"]


def _png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    _png(tmp_path / "g.png", np.full((8, 8), 32768, dtype=np.uint16))
    assert Image.open(tmp_path / "g.png").mode.startswith("I")
    x = load_image(tmp_path / "g.png", 8)
    assert x.shape == (3, 8, 8) and abs(x.mean().item()) < 0.01  # mid-grey, not white


def test_exif_orientation_is_applied(tmp_path):
    array = np.zeros((8, 16, 3), dtype=np.uint8)
    array[:, :8] = 255  # left half white
    img = Image.fromarray(array)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "r.jpg", exif=exif, quality=100)
    x = load_image(tmp_path / "r.jpg", 8, resize_to_fit=True)
    assert x[:, :2].mean() > 0.9 and x[:, -2:].mean() < -0.9  # white on top once upright


def test_hidden_and_tool_folders_are_skipped_and_reported(tmp_path, capsys):
    for rel in (
        "cats/a.png",
        "dogs/b.png",
        ".ipynb_checkpoints/a-checkpoint.png",
        "__MACOSX/c.png",
    ):
        _png(tmp_path / "imgs" / rel, np.zeros((64, 64, 3), dtype=np.uint8))
    (tmp_path / "imgs" / ".DS_Store").write_bytes(b"\0")
    data = image_folder(tmp_path / "imgs")
    assert data.class_names == ("cats", "dogs")
    assert data.skipped == (".DS_Store", ".ipynb_checkpoints/", "__MACOSX/")
    out = tmp_path / "run"
    args = ["--set", "steps=1", "--set", "batch_size=2", "--set", "vae.norm_groups=4"]
    assert main(["train-vae", "--data", str(tmp_path / "imgs"), "--run-dir", str(out), *args]) == 0
    assert (
        "2 images in 2 classes: cats (1), dogs (1); skipped hidden entries: .DS_Store"
        in capsys.readouterr().out
    )


def test_broken_links_and_unreadable_folders_are_errors(tmp_path, monkeypatch):
    _png(tmp_path / "imgs" / "a" / "x.png", np.zeros((64, 64, 3), dtype=np.uint8))
    os.symlink("loop.png", tmp_path / "imgs" / "a" / "loop.png")
    with pytest.raises(ValueError, match="loop.png is a broken or looping link"):
        image_folder(tmp_path / "imgs")
    os.remove(tmp_path / "imgs" / "a" / "loop.png")
    real_scandir = os.scandir

    def locked(path):
        if str(path).endswith("/a"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(image_files.os, "scandir", locked)
    with pytest.raises(ValueError, match="cannot read the folder .*/a .Permission denied"):
        image_folder(tmp_path / "imgs")


def test_a_decompression_bomb_is_named(tmp_path, monkeypatch):
    _png(tmp_path / "big.png", np.zeros((64, 64, 3), dtype=np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match="big.png is too large to load safely"):
        load_image(tmp_path / "big.png", 64)


def test_float_images_are_refused(tmp_path):
    Image.fromarray(np.zeros((8, 8), dtype=np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ValueError, match="32-bit float image"):
        load_image(tmp_path / "f.tif", 8)


@pytest.mark.parametrize(
    "setting",
    ["steps=-5", "batch_size=0", "perceptual_weight=-1", "kl_weight=-1e-6", "lr=nan", "lr=inf"]
    + ["vae.base_channels=0", "vae.channel_mult=1,0", "seed=-1"],
)
def test_numeric_settings_are_range_checked_where_parsed(setting):
    with pytest.raises(ValueError, match=rf"{setting.split('=')[0]}=.* is out of range: .*(>=|in)"):
        config.override(config.vae_preset("cpu-fast"), [setting])


def test_every_numeric_setting_has_a_range_and_every_preset_is_in_it():
    classes = [config.VAETrainConfig, config.LDMTrainConfig, config.UNetConfig]
    classes += [config.VAEConfig, config.DiscriminatorConfig]
    for cls in classes:
        for f in fields(cls):
            if f.type in (int, float, "int", "float") or "int" in str(f.type):
                assert f.name in RANGES, (cls.__name__, f.name)
    for name in config.PRESETS:
        check_config(config.vae_preset(name))
        check_config(config.ldm_preset(name))


def test_a_bad_config_in_python_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="kl_weight=-1.0 is out of range"):
        vae_run(tmp_path / "r", replace(TINY_VAE, kl_weight=-1.0))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("n", [1, 3, 8, 9, 10, 17])
def test_reconstructions_sit_under_their_originals(n):
    x = torch.arange(n).float().view(n, 1, 1, 1).expand(n, 3, 2, 2)  # image i filled with i
    grid, nrow = comparison_layout(x, x + 100)
    rows = len(grid) // nrow
    for i in range(n):
        row, col = divmod(i, nrow)
        below = grid[(row + rows // 2) * nrow + col]
        assert grid[row * nrow + col][0, 0, 0] == i and below[0, 0, 0] == i + 100


def test_reconstruct_nine_through_the_cli_gives_two_rows_of_five_over_two(tmp_path):
    out = tmp_path / "r.png"
    assert main(["reconstruct", "--n", "9", "--device", "cpu", "--out", str(out)]) == 0
    assert Image.open(out).size == (5 * 66 + 2, 4 * 66 + 2)  # 64-pixel tiles, 2-pixel padding


def test_slerp_states_its_convention_for_opposite_and_zero_vectors():
    v = torch.randn(1, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="opposite vectors"):
        slerp(v, -v, 0.5)
    with pytest.raises(ValueError, match="zero vector"):
        slerp(torch.zeros_like(v), v, 0.5)
    torch.testing.assert_close(slerp(v, 2 * v, 0.5), 1.5 * v)  # parallel: the straight line
    w = torch.randn(1, 4, 2, 2, generator=torch.Generator().manual_seed(1))
    mid = slerp(v, w, 0.5)
    theta = math.acos(float((v * w).sum() / (v.norm() * w.norm())))
    torch.testing.assert_close(mid, (v + w) * math.sin(theta / 2) / math.sin(theta))


@pytest.mark.parametrize(
    "args",
    [
        ["sample", "--n", "0"],
        ["sample", "--n", "-3"],
        ["sample", "--nrow", "0"],
        ["sample", "--steps", "0"],
        ["sample", "--eta", "nan"],
        ["sample", "--seed", "-1"],
        ["sample", "--seed", str(2**64)],
        ["reconstruct", "--n", "0"],
    ],
)
def test_cli_numbers_are_range_checked(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2 and "is out of range" in capsys.readouterr().err


def test_an_n_that_cannot_fit_in_memory_is_refused_up_front(tmp_path, capsys):
    out = str(tmp_path / "s.png")
    assert main(["sample", "--n", str(10**9), "--device", "cpu", "--out", out]) == 2
    assert "GB to decode" in capsys.readouterr().err and not os.path.exists(out)


@pytest.mark.parametrize(
    "out, message",
    [
        ("{tmp}/dir/", "is a folder"),
        ("{tmp}/samples", "unknown file type"),
        ("/proc/x.png", "cannot write"),
    ],
)
def test_unusable_outputs_are_refused_before_sampling(tmp_path, capsys, out, message):
    out = out.format(tmp=tmp_path)
    assert main(["sample", "--n", "1", "--out", out]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_missing_cuda_device_is_named(capsys):
    assert main(["sample", "--n", "1", "--device", "cuda"]) == 2
    assert "CUDA is not available here" in capsys.readouterr().err
    with pytest.raises(ValueError, match="is not a device"):
        cli_args.resolve_device("gpu")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_vae_input_of_another_dtype_is_one_clear_error(dtype):
    vae = VAE(replace(TINY_VAE.vae))
    with pytest.raises(ValueError, match=f"images are {dtype} but the model's weights are"):
        vae.encode(torch.zeros(1, 3, 16, 16, dtype=dtype))
    with pytest.raises(ValueError, match=f"latents are {dtype}"):
        vae.decode(torch.zeros(1, 4, 2, 2, dtype=dtype))


def test_lpips_refuses_float64_and_accepts_half():
    from ldm_course.perceptual import LPIPS

    lpips = LPIPS()
    x = torch.zeros(1, 3, 64, 64)
    with pytest.raises(ValueError, match="x is torch.float64 but LPIPS runs in torch.float32"):
        lpips(x.double(), x)
    assert lpips(x.half(), x).item() == 0.0  # promoted exactly


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_a_pickle_checkpoint_is_named_not_called_damaged(tmp_path, writer):
    path = tmp_path / "vae.pt"
    state = {"w": torch.zeros(2)}
    if writer == "torch.save":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state, protocol=4))
    with pytest.raises(ValueError, match="not a safetensors file; ldm_course never unpickles"):
        load_vae(path)
