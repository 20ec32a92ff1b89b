"""A named device this machine lacks is one clear error, from the CLI and from Python alike."""

import pytest
import torch

from ldm_course.config import ldm_preset, vae_preset
from ldm_course.infra.device import check_device
from ldm_course.training.train_ldm import train_ldm
from ldm_course.training.train_vae import train_vae

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def test_check_device_accepts_what_exists():
    assert check_device("cpu") == torch.device("cpu")
    assert check_device(torch.device("cpu")) == torch.device("cpu")


@needs_no_cuda
def test_check_device_names_the_problem_and_the_fix():
    with pytest.raises(
        ValueError, match=r"device='cuda': CUDA is not available here .*; use cpu or auto"
    ):
        check_device("cuda")
    with pytest.raises(ValueError, match="is not a device"):
        check_device("gpu")
    with pytest.raises(ValueError, match=r"--device cuda:1: CUDA is not available"):
        check_device("cuda:1", what="--device cuda:1")


@needs_no_cuda
@pytest.mark.parametrize("train, preset", [(train_vae, vae_preset), (train_ldm, ldm_preset)])
def test_training_from_python_refuses_a_missing_cuda_before_writing(train, preset, tmp_path):
    run_dir = tmp_path / "run"
    args = (
        (preset("cpu-fast"), run_dir) if train is train_vae else (preset("cpu-fast"), run_dir, None)
    )
    with pytest.raises(ValueError, match="CUDA is not available here"):
        train(*args, device="cuda")
    assert not run_dir.exists()
