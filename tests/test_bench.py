"""ldm_course.bench: every benchmark runs end to end at --tiny sizes and writes JSON with the
expected keys (a smoke test, not a timing test), and the measuring tools are checked against
independent computations: FLOPs against 2 * multiply-adds, the memory tracker against known
allocations. The matched diffusers U-Net and VAE decoder are compared with ours beside the modules
they check, in test_unet.py and test_vae.py."""

import json

import pytest
import torch
from torch import nn

from ldm_course.bench.measure import (
    MIB,
    LiveTensorBytes,
    count_flops,
    interleaved_times,
    paired_ratio,
)
from ldm_course.bench.quality import pooled_pixel_frechet, quality_vs_steps, tiny_ldm
from ldm_course.bench.run import BENCHMARKS, main

MACHINE_KEYS = {"date", "torch", "device", "threads", "cpu_model", "load_average_1m_5m_15m", "note"}
TABLE_KEYS = {  # benchmark -> (table title fragment, columns every row must have)
    "latent-vs-pixel": ("latent versus pixel", {"metric", "latent", "pixel", "pixel/latent"}),
    "diffusers": ("time (", {"model", "pass", "ours_s", "diffusers_s", "ours/diffusers"}),
    "efficiency": ("compute efficiency", {"what", "GFLOP", "median_s", "GFLOP/s"}),
    "quality": ("quality versus steps", {"sampler", "steps", "distance", "seconds"}),
}


@pytest.fixture
def keep_threads():
    """--threads changes torch's process-wide setting: put it back for the other tests."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_tiny(name: str, out, *extra: str) -> dict:
    argv = ["--only", name, "--tiny", "--out", str(out), "--repeats", "1", "--warmup", "0"]
    assert main([*argv, "--threads", "1", "--note", "pytest", *extra]) == 0
    data = json.loads((out / f"{name}.json").read_text())
    assert data["benchmark"] == name and data["tiny"] is True
    assert MACHINE_KEYS <= set(data["machine"]) and data["machine"]["note"] == "pytest"
    fragment, columns = TABLE_KEYS[name]
    (title,) = [t for t in data["tables"] if fragment in t]
    assert data["tables"][title] and all(columns <= set(row) for row in data["tables"][title])
    return data


@pytest.mark.parametrize("name", BENCHMARKS)
def test_tiny_benchmark_writes_json(name, tmp_path, keep_threads, capsys):
    data = run_tiny(name, tmp_path, *(["--clock", "cpu"] if name == "efficiency" else []))
    assert name in capsys.readouterr().out  # the table was printed
    if name == "latent-vs-pixel":
        rows = {
            r["metric"]: r
            for r in data["tables"]["latent versus pixel diffusion (ratio = pixel / latent)"]
        }
        assert (
            rows["values per sample"]["pixel/latent"] == 48
        )  # 3x16x16 / 4x2x2, as 3x64x64 / 4x8x8
    if name == "diffusers":
        assert all(r["difference_%"] == 0 for r in data["tables"]["parameters"])
    if name == "efficiency":
        assert data["settings"]["clock"] == "cpu" and 0 < data["fraction_of_matmul"]
    if name == "quality":
        assert (tmp_path / "quality_vs_steps.png").stat().st_size > 0
        assert [r["steps"] for r in data["tables"]["quality versus steps"]] == [2, 5, 20]


def test_bad_arguments_are_reported(tmp_path, capsys):
    assert main(["--only", "speed", "--out", str(tmp_path)]) == 2
    assert "latent-vs-pixel" in capsys.readouterr().err  # the message names the choices
    assert main(["--only", "efficiency", "--clock", "cpu", "--out", str(tmp_path)]) == 2
    assert not list(tmp_path.iterdir())


def test_flop_count_is_two_per_multiply_add():
    layer, x = nn.Linear(32, 16), torch.randn(8, 32)
    assert count_flops(lambda: layer(x)) == 2 * 8 * 32 * 16
    conv, img = nn.Conv2d(3, 4, 3, padding=1), torch.randn(2, 3, 5, 5)
    assert count_flops(lambda: conv(img)) == 2 * (2 * 4 * 5 * 5) * (3 * 3 * 3)


def test_memory_tracker_counts_new_storage_only():
    base = torch.zeros(MIB // 4)  # 1 MiB, allocated before: not counted

    def run():
        a = torch.ones(MIB // 4)  # +1 MiB
        b = torch.ones(MIB // 2)  # +2 MiB: peak 3 MiB
        a.view(2, -1).t()  # a view: no new storage
        base.add_(1)  # in place on older storage
        del a, b
        return torch.ones(MIB // 4)  # +1 MiB after both were freed

    with LiveTensorBytes() as tracker:
        kept = run()
    assert tracker.peak == 3 * MIB and tracker.current == kept.untyped_storage().nbytes()


def test_interleaving_alternates_order_and_pairs_ratios():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times = interleaved_times(fns, repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then AB, BA, AB
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    assert paired_ratio([2.0, 9.0, 3.0], [1.0, 3.0, 1.0]) == 3.0  # median of 2, 3, 3


def test_stand_in_distance_closed_form():
    """Shifting every image by c moves the mean of the 48 pooled features by c and keeps the
    covariance, so the Frechet distance is 48 c^2."""
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert pooled_pixel_frechet(x, x) == pytest.approx(0.0, abs=1e-6)
    assert pooled_pixel_frechet(x + 0.1, x) == pytest.approx(48 * 0.01, rel=1e-4)


def test_quality_checks_its_settings():
    ldm, refs = tiny_ldm(), torch.zeros(2, 3, 16, 16)
    with pytest.raises(ValueError, match="DDPM runs all 20 steps"):
        quality_vs_steps(ldm, refs, pooled_pixel_frechet, settings=[("ddpm", 50)])
    with pytest.raises(ValueError, match="'ddim' or 'ddpm'"):
        quality_vs_steps(ldm, refs, pooled_pixel_frechet, settings=[("euler", 10)])
