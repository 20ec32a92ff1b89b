import pytest
import torch

from ldm_course.data import twemoji


@pytest.fixture(autouse=True, scope="session")
def _threads():
    """Tests are small: one thread avoids oversubscription when other processes share the CPU."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def emoji_batch() -> torch.Tensor:
    """16 structured test images (real emoji) in [-1, 1], (16, 3, 64, 64)."""
    return twemoji("test").images[:16].clone()
