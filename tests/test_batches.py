"""Which images each training step sees: by image (batch_indices) or by group (group_batch_indices)."""

import pytest
import torch

from ldm_course.training.train import batch_indices, group_batch_indices


def test_image_epochs_visit_every_image_once():
    seen = torch.cat([batch_indices(s, n=50, batch_size=10, seed=3) for s in range(5)])
    assert sorted(seen.tolist()) == list(range(50))
    assert torch.equal(
        batch_indices(7, n=50, batch_size=10, seed=3), batch_indices(7, n=50, batch_size=10, seed=3)
    )


def test_group_epochs_visit_every_group_once_through_one_member():
    # 12 groups: group g has g % 4 + 1 members (1 to 4 near duplicates), shuffled into 30 items
    sizes = [g % 4 + 1 for g in range(12)]
    groups = torch.tensor([g for g, k in enumerate(sizes) for _ in range(k)])
    groups = groups[torch.randperm(len(groups), generator=torch.Generator().manual_seed(0))]
    first_epoch = [group_batch_indices(s, groups=groups, batch_size=4, seed=1) for s in range(3)]
    idx = torch.cat(first_epoch)
    assert sorted(groups[idx].tolist()) == list(range(12))  # each group exactly once
    again = group_batch_indices(2, groups=groups, batch_size=4, seed=1)
    assert torch.equal(again, first_epoch[2])  # a pure function of the step: resume-exact
    # over many epochs, every member of a group is drawn, about equally often
    counts = torch.zeros(len(groups))
    for s in range(3 * 2000):
        counts[group_batch_indices(s, groups=groups, batch_size=4, seed=1)] += 1
    per_group = torch.zeros(12).index_add_(0, groups, counts)
    assert torch.all(per_group == 2000)  # one draw per group per epoch
    expected = 2000 / torch.tensor(sizes, dtype=torch.float)[groups]  # (30,) a member's share
    assert torch.all((counts - expected).abs() < 5 * expected.sqrt() + 1), (counts, expected)


def test_group_batches_refuse_bad_groups():
    with pytest.raises(ValueError, match="larger than the number of groups"):
        group_batch_indices(0, groups=torch.tensor([0, 0, 1]), batch_size=3, seed=0)
    with pytest.raises(ValueError, match="every id used"):
        group_batch_indices(0, groups=torch.tensor([0, 2, 2]), batch_size=1, seed=0)


@pytest.mark.parametrize(
    ("sample_by", "message"),
    [
        ("group", "needs a dataset with groups"),
        ("emoji", "sample_by='emoji': choose one of image, group"),
    ],
)
def test_train_ldm_refuses_group_sampling_without_groups(tmp_path, sample_by, message):
    from ldm_course.config import LDMTrainConfig, VAEConfig
    from ldm_course.data import TensorImageDataset
    from ldm_course.training.train_ldm import train_ldm
    from ldm_course.vae import VAE

    data = TensorImageDataset(torch.zeros(8, 3, 32, 32), torch.zeros(8, dtype=torch.long))
    vae = VAE(VAEConfig(base_channels=4, norm_groups=4))
    with pytest.raises(ValueError, match=message):
        train_ldm(LDMTrainConfig(sample_by=sample_by, size=32), tmp_path / "run", vae, data=data)
    assert not (tmp_path / "run").exists()  # refused before anything was written
