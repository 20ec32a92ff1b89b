import subprocess
import sys

import pytest
from PIL import Image

from ldm_course.cli.main import main
from ldm_course.data import classes_in_turn


def test_unknown_preset_is_a_clear_error(capsys, tmp_path):
    assert main(["train-vae", "--preset", "cpu-turbo", "--run-dir", str(tmp_path / "r")]) == 2
    assert "unknown preset 'cpu-turbo'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_missing_checkpoint_is_a_clear_error(capsys, tmp_path):
    assert (
        main(
            [
                "sample",
                "--ldm",
                str(tmp_path / "nothing"),
                "--n",
                "1",
                "--out",
                str(tmp_path / "s.png"),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_bad_override(capsys, tmp_path):
    assert main(["train-ldm", "--set", "unet.width=3", "--run-dir", str(tmp_path / "r")]) == 2
    assert "unknown setting 'unet.width=3'" in capsys.readouterr().err


def test_reconstruct_rejects_a_folder_with_a_non_image(capsys, tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "readme.md").write_text("#")
    assert (
        main(["reconstruct", "--input", str(tmp_path / "imgs"), "--out", str(tmp_path / "r.png")])
        == 2
    )
    assert "is not an image file" in capsys.readouterr().err


def test_sample_writes_a_grid(tmp_path):
    out = tmp_path / "grid.png"
    assert (
        main(
            [
                "sample",
                "--n",
                "4",
                "--steps",
                "3",
                "--nrow",
                "2",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    from PIL import Image

    assert Image.open(out).size == (2 * 66 + 2, 2 * 66 + 2)


@pytest.mark.slow  # a fresh interpreter imports torch
def test_module_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "ldm_course", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("train-vae", "train-ldm", "sample", "reconstruct", "evaluate", "bench"):
        assert command in out.stdout


@pytest.mark.parametrize("label", ["Flags", "9"])
def test_sample_by_category(tmp_path, label):
    assert (
        main(
            [
                "sample",
                "--n",
                "2",
                "--steps",
                "2",
                "--label",
                label,
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "g.png"),
            ]
        )
        == 0
    )


def test_an_unknown_precision_is_refused_before_anything_is_written(capsys, tmp_path):
    code = main(
        [
            "train-vae",
            "--preset",
            "gpu",
            "--device",
            "cpu",
            "--set",
            "precision=half",
            "--run-dir",
            str(tmp_path / "r"),
        ]
    )
    assert code == 2
    assert "precision='half': choose one of auto, fp32, bf16, fp16" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_subcategory_labels_on_a_folder_are_refused(capsys, tmp_path):
    (tmp_path / "imgs").mkdir()
    for i in range(2):
        Image.new("RGB", (64, 64), (40 * i, 0, 0)).save(tmp_path / "imgs" / f"{i}.png")
    args = ["train-ldm", "--data", str(tmp_path / "imgs"), "--run-dir", str(tmp_path / "r")]
    assert main([*args, "--set", "labels=subcategory"]) == 2
    assert "labels='subcategory' exists only for the built-in Twemoji" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_classes_in_turn_cover_every_class_or_spread_over_them():
    assert classes_in_turn(12, 10).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    spread = classes_in_turn(64, 99)
    assert spread[0] == 0 and spread[-1] == 98 and len(set(spread.tolist())) == 64
    assert (spread.diff() > 0).all()


def test_reconstruct_with_either_shipped_decoder(tmp_path, capsys):
    grids = {}
    for vae in ("pretrained", "pretrained-adversarial"):
        out = tmp_path / f"{vae}.png"
        assert (
            main(["reconstruct", "--vae", vae, "--n", "4", "--device", "cpu", "--out", str(out)])
            == 0
        )
        assert "mean PSNR" in capsys.readouterr().out
        grids[vae] = out.read_bytes()
    assert grids["pretrained"] != grids["pretrained-adversarial"]
